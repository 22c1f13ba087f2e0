"""When appended bytes reach the disk: the fsync policy, group commit, directory fsync.

With ``batch`` (the default) concurrent appenders to one partition share fsyncs: each
writes its frame under the partition's write lock, then waits in :meth:`GroupCommit.wait`
until an fsync that started after its write has finished. The first waiter becomes the
leader and runs one fsync covering every write that precedes it; the others wait for it
and, if their write came later, one of them leads the next round. So N concurrent appends
cost about two fsyncs, not N, and none returns before its frame is on disk.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from fluvial.errors import ConfigError

__all__ = ["FsyncPolicy", "GroupCommit", "fsync_dir"]


class FsyncPolicy(StrEnum):
    """``[log] fsync``: when an append is made durable."""

    BATCH = "batch"  # group commit: fsync before acknowledging, shared by concurrent appends
    ALWAYS = "always"  # one fsync per append
    NEVER = "never"  # leave it to the OS: survives a process crash, not a power loss

    @classmethod
    def parse(cls, value: str) -> FsyncPolicy:
        try:
            return cls(value.lower())
        except ValueError as exc:
            choices = " | ".join(p.value for p in cls)
            raise ConfigError(f"log.fsync: expected {choices}, found {value!r}") from exc


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (new, renamed or deleted files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class GroupCommit:
    """Leader/follower fsync sharing for one append-only file sequence.

    Marks are a monotonic count of bytes written (across segment rolls). *snapshot* is
    called under no lock of ours; it must return ``(fd, mark)``: a private file
    descriptor of the active file (closed after the fsync) and the mark of the last write
    to it that has completed, taken atomically under the writer's lock.
    """

    def __init__(self, snapshot: Callable[[], tuple[int, int]]) -> None:
        self._snapshot = snapshot
        self._cond = threading.Condition()
        self._synced = 0
        self._syncing = False
        self.fsyncs = 0  # how many fsyncs ran (tests and metrics)

    def mark_synced(self, mark: int) -> None:
        """Record that everything up to *mark* is durable (e.g. fsynced at a segment roll)."""
        with self._cond:
            if mark > self._synced:
                self._synced = mark
                self._cond.notify_all()

    def wait(self, mark: int) -> None:
        """Return once an fsync covering *mark* has completed."""
        with self._cond:
            while self._synced < mark:
                if self._syncing:
                    self._cond.wait()
                    continue
                self._syncing = True
                covered = 0
                self._cond.release()
                try:
                    fd, upto = self._snapshot()
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    covered = upto  # only once the fsync succeeded
                    self.fsyncs += 1
                finally:
                    self._cond.acquire()
                    self._syncing = False
                    self._synced = max(self._synced, covered)
                    self._cond.notify_all()
