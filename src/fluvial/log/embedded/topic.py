"""One topic: its ``topic.json``, its partitions, and its single-writer lock.

Layout under ``<data_dir>/log/<topic>/``: ``topic.json`` (partition count and the Arrow
schema), ``writer.lock`` (``flock``-ed by the one process that appends), and one folder
per partition (``0/``, ``1/``, …) of segment files.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import itertools
import json
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa

from fluvial.errors import CorruptLogError, LogError, TopicExistsError
from fluvial.log.base import AppendResult, PartitionInfo, TopicInfo, with_system_columns
from fluvial.log.embedded.durability import FsyncPolicy, fsync_dir
from fluvial.log.embedded.partition import Partition
from fluvial.log.embedded.segment import Frame
from fluvial.log.partitioner import partition_for
from fluvial.log.routing import conform, prepare_append, split

__all__ = ["Topic", "TopicMeta", "WriterLock", "write_atomic"]

META_FILE = "topic.json"
LOCK_FILE = "writer.lock"
#: an append is cut into frames of about this size (a frame's body length is a u32)
MAX_FRAME_BYTES = 64 * 1024 * 1024


def write_atomic(path: Path, data: bytes, *, durable: bool) -> None:
    """Replace *path* with *data* all at once: temp file, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


@dataclass(frozen=True)
class TopicMeta:
    """What ``topic.json`` holds."""

    name: str
    partitions: int
    schema: pa.Schema | None = None
    created_ms: int = 0
    #: unique per creation, like Kafka's topic IDs: tells a re-created topic from the old one
    topic_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> bytes:
        schema = None
        if self.schema is not None:
            schema = base64.b64encode(self.schema.serialize().to_pybytes()).decode("ascii")
        doc = {
            "format": 1,
            "name": self.name,
            "partitions": self.partitions,
            "created_ms": self.created_ms,
            "id": self.topic_id,
            "schema": schema,
        }
        return json.dumps(doc, indent=2).encode()

    @classmethod
    def read(cls, directory: Path) -> TopicMeta:
        path = directory / META_FILE
        try:
            doc = json.loads(path.read_bytes())
            schema = None
            if doc.get("schema"):
                schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(doc["schema"])))
            return cls(
                doc["name"],
                int(doc["partitions"]),
                schema,
                int(doc.get("created_ms", 0)),
                str(doc.get("id", "")),
            )
        except FileNotFoundError:
            raise
        except (ValueError, KeyError, TypeError, pa.ArrowInvalid) as exc:
            raise CorruptLogError(f"{path} is not a valid topic file: {exc}") from exc


class WriterLock:
    """An exclusive ``flock`` naming the process that holds it (one writer per topic)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, what: str) -> None:
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LogError(f"cannot lock {self.path}: {exc}") from exc
            raise LogError(
                f"{what} is being written by another process (pid {holder}); the embedded "
                "log allows one writing process per topic: stop it, or append through it"
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


class Topic:
    """A topic directory: append (routing, schema), read, info; thread-safe."""

    def __init__(self, directory: Path, *, fsync: FsyncPolicy, segment_bytes: int) -> None:
        self.directory = directory
        self._meta_signature = self._signature()  # taken before reading: a change re-checks
        self.fsync = fsync
        self.meta = TopicMeta.read(directory)
        self.name = self.meta.name
        self.partitions = [
            Partition(directory / str(i), i, fsync=fsync, segment_bytes=segment_bytes)
            for i in range(self.meta.partitions)
        ]
        self.lock = WriterLock(directory / LOCK_FILE)
        self._mutex = threading.Lock()
        self._writer_ready = False
        self._round_robin = itertools.count()

    @staticmethod
    def create(root: Path, meta: TopicMeta, *, durable: bool) -> None:
        """Write a topic directory; atomically, so a racing creator gets TopicExistsError."""
        final = root / meta.name
        if final.exists():
            raise TopicExistsError(f"topic '{meta.name}' already exists")
        tmp = root / f".create-{meta.name}-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            for i in range(meta.partitions):
                Partition.create(tmp / str(i), durable=durable)
            write_atomic(tmp / META_FILE, meta.to_json(), durable=durable)
            try:
                os.rename(tmp, final)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise TopicExistsError(f"topic '{meta.name}' already exists") from exc
                raise
            if durable:
                fsync_dir(root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- writing ------------------------------------------------------------------------

    def ensure_writer(self) -> None:
        """Take the writer lock and recover every partition's tail (once per process)."""
        # ready only once every partition is open: the lock alone is taken first, and a
        # concurrent appender must not see "held" while partitions are still recovering
        if self._writer_ready:
            return
        with self._mutex:
            if self._writer_ready:
                return
            self.lock.acquire(f"topic '{self.name}'")
            try:
                self.meta = TopicMeta.read(self.directory)
                for p in self.partitions:
                    p.open_for_write()
            except BaseException:
                for p in self.partitions:
                    p.close()
                self.lock.release()
                raise
            self._writer_ready = True

    def _schema_for(self, table: pa.Table) -> pa.Schema:
        if self.meta.schema is not None:
            return self.meta.schema
        with self._mutex:
            if self.meta.schema is None:
                meta = replace(self.meta, schema=table.schema)
                write_atomic(
                    self.directory / META_FILE,
                    meta.to_json(),
                    durable=self.fsync is not FsyncPolicy.NEVER,
                )
                self.meta = meta
            assert self.meta.schema is not None
            return self.meta.schema

    def append(
        self,
        data: pa.Table | pa.RecordBatch,
        *,
        key: str | pa.Array | pa.ChunkedArray | None,
        partition: int | None,
    ) -> AppendResult:
        n = len(self.partitions)
        table, keys = prepare_append(
            data, topic=self.name, partitions=n, key=key, partition=partition
        )
        self.ensure_writer()
        table = conform(table, self._schema_for(table), self.name)
        if table.num_rows == 0:
            return AppendResult(())
        if partition is not None:
            routed = [(partition, table)]
        elif keys is not None:
            routed = list(split(table, partition_for(keys, n), n))
        else:
            routed = [(next(self._round_robin) % n, table)]
        # encode outside the partition locks: serialization does not depend on offsets
        encoded = [(p, _frames(rows)) for p, rows in routed]
        written = [(p, *self.partitions[p].write(frames)) for p, frames in encoded]
        for p, _, _, mark in written:
            self.partitions[p].wait_durable(mark)
        return AppendResult(tuple((p, first, count) for p, first, count, _ in written))

    # -- reading ------------------------------------------------------------------------

    def schema(self) -> pa.Schema | None:
        if self.meta.schema is None and not self.lock.held:
            with contextlib.suppress(FileNotFoundError):
                self.meta = TopicMeta.read(self.directory)  # another process may have set it
        return self.meta.schema

    def partition(self, number: int) -> Partition:
        if not isinstance(number, int) or not 0 <= number < len(self.partitions):
            raise LogError(
                f"topic '{self.name}' has partitions 0-{len(self.partitions) - 1}, "
                f"found partition {number!r}"
            )
        return self.partitions[number]

    def read(self, partition: int, offset: int, max_records: int) -> pa.Table:
        part = self.partition(partition)
        if max_records < 0:
            raise LogError(f"max_records must be at least 0, found {max_records}")
        schema = self.schema()
        if schema is None and part.refresh():
            schema = self.schema()
        out_schema = with_system_columns(schema if schema is not None else pa.schema([]))
        batches = part.read(offset, max_records, out_schema)
        return pa.Table.from_batches(batches, schema=out_schema)

    def info(self) -> TopicInfo:
        infos = []
        for p in self.partitions:
            p.refresh()
            infos.append(PartitionInfo(p.number, p.start_offset, p.end_offset, p.bytes))
        return TopicInfo(self.name, tuple(infos), self.schema())

    # -- housekeeping -------------------------------------------------------------------

    def apply_retention(self, *, retention_hours: float, retention_bytes: int) -> int:
        """Delete old segments; a process that is not this topic's writer takes the writer
        lock only for the time it takes (so a pipeline writing the topic elsewhere is
        never locked out for longer than one retention pass)."""
        borrowed = not self._writer_ready
        self.ensure_writer()
        try:
            older_than = None
            if retention_hours > 0:
                older_than = int(time.time() * 1000 - retention_hours * 3_600_000)
            return sum(
                p.apply_retention(older_than_ms=older_than, max_bytes=retention_bytes)
                for p in self.partitions
            )
        finally:
            if borrowed:
                self.close()

    def _signature(self) -> tuple[int, int]:
        st = (self.directory / META_FILE).stat()
        return st.st_ino, st.st_mtime_ns

    def replaced(self) -> bool:
        """Whether another process deleted (and maybe re-created) this topic.

        One ``stat`` when nothing changed; ``topic.json`` is re-read only when it did
        (its schema is also set there by the writer's first append).
        """
        if self.lock.held:
            return False  # this process writes it: nobody else can delete it
        try:
            signature = self._signature()
            if signature == self._meta_signature:
                return False
            current = TopicMeta.read(self.directory)
        except FileNotFoundError:
            return True
        if current.topic_id != self.meta.topic_id:
            return True
        self._meta_signature = signature
        return False

    def close(self) -> None:
        with self._mutex:
            self._writer_ready = False
            for p in self.partitions:
                p.close()
            self.lock.release()


def _frames(rows: pa.Table) -> list[Frame]:
    """Cut one partition's rows into frames of at most about MAX_FRAME_BYTES each."""
    n = rows.num_rows
    per_row = max(1, rows.nbytes // max(1, n))
    step = max(1, MAX_FRAME_BYTES // per_row)
    frames = []
    for start in range(0, n, step):  # a loop over frames, not rows
        chunk = rows.slice(start, step)
        batches = chunk.to_batches()
        batch = batches[0] if len(batches) == 1 else chunk.combine_chunks().to_batches()[0]
        frames.append(Frame.encode(batch))
    return frames
