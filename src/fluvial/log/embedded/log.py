"""``EmbeddedLog``: Fluvial's default event log, in files on one machine.

Every :class:`EmbeddedLog` opened on the same directory in one process shares one set of
open topics (so the collector, the stream engine and the archiver of ``fluvial up`` can each
call ``project.open_log()``); across processes, each topic has one writing process (an
``flock``) and any number of readers, which follow the files without a lock.

>>> import tempfile, pyarrow as pa
>>> with EmbeddedLog(tempfile.mkdtemp(), fsync="never") as log:
...     _ = log.create_topic("clicks", 2)
...     result = log.append("clicks", pa.table({"user": ["alice", "bob", "alice"]}), key="user")
...     print(result.ranges)
...     log.read("clicks", 1, 0).column("user").to_pylist()
((0, 0, 1), (1, 0, 2))
['alice', 'alice']
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from fluvial.config import Settings
from fluvial.errors import LogError, TopicExistsError, TopicNotFoundError, did_you_mean
from fluvial.log.base import AppendResult, EventLog, GroupInfo, TopicInfo
from fluvial.log.embedded.durability import FsyncPolicy
from fluvial.log.embedded.groups import GROUPS_DIR, GroupStore
from fluvial.log.embedded.topic import META_FILE, Topic, TopicMeta
from fluvial.log.routing import check_name

__all__ = ["EmbeddedLog"]

#: how often wait_for_data looks at the files of partitions written by another process
POLL_SECONDS = 0.003


class _Store:
    """The open topics of one log directory, shared by this process's EmbeddedLogs."""

    def __init__(self, root: Path, fsync: FsyncPolicy, segment_bytes: int) -> None:
        self.root = root
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self.groups = GroupStore(root, durable=fsync is not FsyncPolicy.NEVER)
        self.topics: dict[str, Topic] = {}
        self.lock = threading.RLock()
        self.appended = threading.Condition()  # notified after every append in this process
        self.refs = 0

    def names(self) -> list[str]:
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.name[0] not in "._" and (p / META_FILE).is_file()
        )

    def get(self, name: str) -> Topic:
        with self.lock:
            topic = self.topics.get(name)
            if topic is not None and topic.replaced():
                topic.close()  # deleted, maybe re-created, by another process
                del self.topics[name]
                topic = None
            if topic is None:
                directory = self.root / name
                if (
                    not isinstance(name, str)
                    or name[:1] in ("", ".", "_")
                    or not (directory / META_FILE).is_file()
                ):
                    raise TopicNotFoundError(
                        f"topic '{name}' does not exist{did_you_mean(str(name), self.names())}"
                    )
                topic = Topic(directory, fsync=self.fsync, segment_bytes=self.segment_bytes)
                self.topics[name] = topic
            return topic

    def close(self) -> None:
        with self.lock:
            for topic in self.topics.values():
                topic.close()
            self.topics.clear()


_STORES: dict[Path, _Store] = {}
_STORES_LOCK = threading.Lock()


class EmbeddedLog(EventLog):
    """Topics of Arrow frames in segment files under *root* (``<data_dir>/log``).

    Args:
        root: the log directory (created if missing).
        partitions: default partition count of new topics.
        fsync: ``batch`` (group commit), ``always`` or ``never``; see ``[log] fsync``.
        segment_bytes: roll to a new segment file past this size.
        retention_hours, retention_bytes: limits that :meth:`apply_retention` enforces.
    """

    name: ClassVar[str] = "embedded"

    def __init__(
        self,
        root: Path | str,
        *,
        partitions: int = 4,
        fsync: str = "batch",
        segment_bytes: int = 64 * 1024 * 1024,
        retention_hours: float = 168.0,
        retention_bytes: int = 0,
    ) -> None:
        if partitions < 1:
            raise LogError(f"partitions must be at least 1, found {partitions}")
        if segment_bytes < 1024:
            raise LogError(f"segment_bytes must be at least 1024, found {segment_bytes}")
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.default_partitions = partitions
        self.retention_hours = retention_hours
        self.retention_bytes = retention_bytes
        policy = FsyncPolicy.parse(fsync)
        with _STORES_LOCK:
            store = _STORES.get(self.root)
            if store is None:
                store = _STORES[self.root] = _Store(self.root, policy, segment_bytes)
            store.refs += 1
        self._store: _Store | None = store

    @classmethod
    def from_settings(cls, settings: Settings, data_dir: Path) -> EmbeddedLog:
        log = settings.log
        return cls(
            Path(data_dir) / "log",
            partitions=log.partitions,
            fsync=log.fsync,
            segment_bytes=log.segment_bytes,
            retention_hours=log.retention_hours,
            retention_bytes=log.retention_bytes,
        )

    @property
    def store(self) -> _Store:
        if self._store is None:
            raise LogError(f"the event log at {self.root} is closed")
        return self._store

    @property
    def fsync(self) -> FsyncPolicy:
        return self.store.fsync

    def close(self) -> None:
        store, self._store = self._store, None
        if store is None:
            return
        with _STORES_LOCK:
            store.refs -= 1
            if store.refs == 0:
                _STORES.pop(self.root, None)
                store.close()

    def __repr__(self) -> str:
        return f"EmbeddedLog({str(self.root)!r})"

    def __enter__(self) -> EmbeddedLog:
        return self

    # -- topics -------------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        partitions: int | None = None,
        *,
        schema: pa.Schema | None = None,
        exist_ok: bool = False,
    ) -> TopicInfo:
        check_name(name)
        count = self.default_partitions if partitions is None else partitions
        if not isinstance(count, int) or count < 1:
            raise LogError(f"a topic needs at least 1 partition, found {count!r}")
        store = self.store
        meta = TopicMeta(name, count, schema, int(time.time() * 1000))
        try:
            Topic.create(self.root, meta, durable=store.fsync is not FsyncPolicy.NEVER)
        except TopicExistsError:
            if not exist_ok:
                raise
        return self.topic(name)

    def delete_topic(self, name: str) -> None:
        store = self.store
        with store.lock:
            topic = store.get(name)
            topic.ensure_writer()  # refuses while another process writes it
            graveyard = self.root / f".deleted-{name}-{os.getpid()}-{time.time_ns()}"
            os.rename(topic.directory, graveyard)  # the topic disappears atomically
            topic.close()
            store.topics.pop(name, None)
            shutil.rmtree(graveyard, ignore_errors=True)
            store.groups.forget_topic(name)

    def list_topics(self) -> list[TopicInfo]:
        store = self.store
        infos = []
        for name in store.names():
            try:
                infos.append(store.get(name).info())
            except TopicNotFoundError:  # deleted meanwhile
                continue
        return infos

    def topic(self, name: str) -> TopicInfo:
        return self.store.get(name).info()

    # -- writing ------------------------------------------------------------------------

    def append(
        self,
        topic: str,
        data: pa.Table | pa.RecordBatch,
        *,
        key: str | pa.Array | pa.ChunkedArray | None = None,
        partition: int | None = None,
    ) -> AppendResult:
        store = self.store
        result = store.get(topic).append(data, key=key, partition=partition)
        with store.appended:
            store.appended.notify_all()
        return result

    # -- reading ------------------------------------------------------------------------

    def read(self, topic: str, partition: int, offset: int, max_records: int = 10_000) -> pa.Table:
        return self.store.get(topic).read(partition, offset, max_records)

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        return self.store.get(topic).partition(partition).offset_for_time(timestamp_ms)

    def wait_for_data(self, topic: str, positions: Mapping[int, int], timeout: float) -> bool:
        """Wake on an append in this process, or poll file sizes every few milliseconds."""
        store = self.store
        parts = [(store.get(topic).partition(p), off) for p, off in positions.items()]
        deadline = time.monotonic() + timeout
        while True:
            for part, off in parts:
                part.refresh()
                if part.end_offset > off:
                    return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with store.appended:
                store.appended.wait(min(POLL_SECONDS, remaining))

    # -- consumer groups ----------------------------------------------------------------

    def commit(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        store = self.store
        store.get(topic)  # the topic must exist
        store.groups.commit(group, topic, offsets)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        return self.store.groups.committed(group, topic)

    def list_groups(self) -> list[GroupInfo]:
        store = self.store
        groups = []
        for group, topic in store.groups.entries():
            committed = store.groups.committed(group, topic)
            try:
                info = store.get(topic).info()
            except TopicNotFoundError:
                continue
            lag = sum(
                max(0, p.end_offset - max(committed.get(p.partition, 0), p.start_offset))
                for p in info.partitions
            )
            groups.append(GroupInfo(group, topic, committed, lag))
        return groups

    # -- housekeeping -------------------------------------------------------------------

    def apply_retention(self) -> int:
        """Delete whole old segments past ``retention_hours`` / ``retention_bytes``.

        Topics written by another process are left to that process; they are named in the
        :class:`LogError` raised after every other topic has been handled.
        """
        store = self.store
        removed, refused = 0, []
        for name in store.names():
            try:
                removed += store.get(name).apply_retention(
                    retention_hours=self.retention_hours, retention_bytes=self.retention_bytes
                )
            except TopicNotFoundError:
                continue
            except LogError as exc:
                refused.append(str(exc))
        if refused:
            raise LogError(
                f"retention removed {removed} records but skipped: " + "; ".join(refused)
            )
        return removed

    def verify(self, topic: str | None = None) -> list[str]:
        """Check every frame's CRC32 (all topics, or one); return the problems found."""
        store = self.store
        names = [topic] if topic is not None else store.names()
        return [
            problem
            for name in names
            for part in store.get(name).partitions
            for problem in part.verify()
        ]


# keep the groups folder name out of the topic namespace
assert GROUPS_DIR.startswith("_")
