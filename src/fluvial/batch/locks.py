"""One build of a model at a time: a file lock per model under ``<data_dir>/batch/locks``.

The lock is an ``flock`` on ``<model>.lock``: the operating system releases it when its
process dies, so a crashed run never leaves a model locked.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fluvial.errors import BatchError

__all__ = ["model_lock"]


@contextmanager
def model_lock(locks_dir: Path, model: str, *, timeout: float, run_id: str = "") -> Iterator[None]:
    """Hold *model*'s lock for the duration of the block, waiting up to *timeout* seconds.

    Raises:
        BatchError: another run still holds it after *timeout* seconds.
    """
    locks_dir.mkdir(parents=True, exist_ok=True)
    path = locks_dir / f"{model}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = path.read_text(encoding="utf-8").strip() or "another run"
                    raise BatchError(
                        f"{model} is being built by {holder}; waited {timeout:g} s"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"run {run_id} (pid {os.getpid()})".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
