"""The event log interface: partitioned, durable, replayable topics of Arrow rows.

A topic has N partitions; each partition is an ordered sequence of records numbered by
offset from 0. Records are rows of an Arrow schema fixed when the topic is created (or by
its first append). Rows are routed to partitions by a stable hash of a key column (see
:mod:`fluvial.log.partitioner`), so one user's events stay in order. Reads return Arrow
tables with three system columns added at the end:

=============  =========================  ==============================================
``_partition``  int32                      the partition the row was read from
``_offset``     int64                      its offset within the partition
``_timestamp``  timestamp[ms, tz=UTC]      when the log appended it (log-append time)
=============  =========================  ==============================================

Backends (embedded, kafka) subclass :class:`EventLog`, implement its abstract methods and
pass the one behaviour suite in ``tests/log/``. Every method raises
:class:`~fluvial.errors.LogError` subclasses, never a library's own exception.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from fluvial.errors import TopicNotFoundError, did_you_mean

if TYPE_CHECKING:
    from pathlib import Path

    from fluvial.config import Settings
    from fluvial.log.consumer import Consumer, StartAt

__all__ = [
    "SYSTEM_COLUMNS",
    "AppendResult",
    "EventLog",
    "GroupInfo",
    "PartitionInfo",
    "TopicInfo",
    "with_system_columns",
]

SYSTEM_COLUMNS: tuple[pa.Field, ...] = (
    pa.field("_partition", pa.int32(), nullable=False),
    pa.field("_offset", pa.int64(), nullable=False),
    pa.field("_timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
)


def with_system_columns(schema: pa.Schema) -> pa.Schema:
    """The schema of what :meth:`EventLog.read` returns for a topic of *schema*."""
    return pa.schema([*schema, *SYSTEM_COLUMNS], metadata=schema.metadata)


@dataclass(frozen=True)
class PartitionInfo:
    """One partition: its retained offset range ``[start_offset, end_offset)`` and size."""

    partition: int
    start_offset: int
    end_offset: int
    bytes: int = 0

    @property
    def records(self) -> int:
        return self.end_offset - self.start_offset


@dataclass(frozen=True)
class TopicInfo:
    """A topic's partitions and schema (``None`` until the first append defines it)."""

    name: str
    partitions: tuple[PartitionInfo, ...]
    schema: pa.Schema | None = None

    @property
    def num_partitions(self) -> int:
        return len(self.partitions)

    @property
    def end_offsets(self) -> dict[int, int]:
        return {p.partition: p.end_offset for p in self.partitions}

    @property
    def start_offsets(self) -> dict[int, int]:
        return {p.partition: p.start_offset for p in self.partitions}

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.partitions)


@dataclass(frozen=True)
class AppendResult:
    """Where an append's rows went: ``(partition, first_offset, count)`` per partition."""

    ranges: tuple[tuple[int, int, int], ...] = ()

    @property
    def count(self) -> int:
        return sum(count for _, _, count in self.ranges)


@dataclass(frozen=True)
class GroupInfo:
    """A consumer group's committed offsets on one topic, and its lag behind the end."""

    group: str
    topic: str
    committed: Mapping[int, int] = field(default_factory=dict)
    lag: int = 0


class EventLog(ABC):
    """A partitioned, durable, replayable log of Arrow rows.

    Use as a context manager, or call :meth:`close`.
    """

    #: the backend's registry name (``fluvial.toml``: ``[log] backend``)
    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings, data_dir: Path) -> EventLog:
        """Open the backend as configured for a project."""

    # -- topics -------------------------------------------------------------------------

    @abstractmethod
    def create_topic(
        self,
        name: str,
        partitions: int | None = None,
        *,
        schema: pa.Schema | None = None,
        exist_ok: bool = False,
    ) -> TopicInfo:
        """Create a topic (default partition count from settings).

        Raises:
            TopicExistsError: it exists and ``exist_ok`` is false.
            LogError: the name is invalid (letters, digits, ``._-`` only).
        """

    @abstractmethod
    def delete_topic(self, name: str) -> None:
        """Delete a topic and its data. Raises TopicNotFoundError."""

    @abstractmethod
    def list_topics(self) -> list[TopicInfo]:
        """Every user topic, sorted by name."""

    def topic(self, name: str) -> TopicInfo:
        """One topic's info. Raises TopicNotFoundError (with a suggestion)."""
        topics = {t.name: t for t in self.list_topics()}
        if name not in topics:
            raise TopicNotFoundError(f"topic '{name}' does not exist{did_you_mean(name, topics)}")
        return topics[name]

    # -- writing ------------------------------------------------------------------------

    @abstractmethod
    def append(
        self,
        topic: str,
        data: pa.Table | pa.RecordBatch,
        *,
        key: str | pa.Array | pa.ChunkedArray | None = None,
        partition: int | None = None,
    ) -> AppendResult:
        """Append rows; when this returns they are durable (per the fsync policy).

        Rows go to ``partition`` if given, else are routed by the hash of their key:
        ``key`` names a column, or is an array of one key per row (kept as the Kafka
        message key, not stored as a column)
        (:func:`~fluvial.log.partitioner.partition_for`; a null key hashes like an empty
        one). With neither, the whole append goes to one partition, round-robin per call.
        Order is kept within each partition. The data must match the topic's schema
        (columns are cast when safe); the first append to a schemaless topic sets it.

        Raises:
            TopicNotFoundError: the topic does not exist.
            LogError: the data does not match the topic's schema.
        """

    # -- reading ------------------------------------------------------------------------

    @abstractmethod
    def read(self, topic: str, partition: int, offset: int, max_records: int = 10_000) -> pa.Table:
        """Up to *max_records* rows from *offset* on, with the system columns.

        Returns an empty table (with the full schema) at the end of the partition.

        Raises:
            TopicNotFoundError, OffsetOutOfRangeError (offset before the retained start
            or after the end).
        """

    @abstractmethod
    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        """The first offset whose ``_timestamp`` is at or after *timestamp_ms*, else the end."""

    def snapshot(self, topic: str, *, batch_records: int = 100_000) -> pa.Table:
        """Every retained row of *topic* up to its end offsets now, partition by partition.

        A bounded read for tools and tests; streaming readers use :meth:`consumer`.
        """
        info = self.topic(topic)
        tables = []
        for part in info.partitions:
            offset = part.start_offset
            while offset < part.end_offset:
                chunk = self.read(
                    topic, part.partition, offset, min(batch_records, part.end_offset - offset)
                )
                if chunk.num_rows == 0:
                    break
                tables.append(chunk)
                offset += chunk.num_rows
        if not tables:
            schema = info.schema if info.schema is not None else pa.schema([])
            return with_system_columns(schema).empty_table()
        return pa.concat_tables(tables)

    def wait_for_data(self, topic: str, positions: Mapping[int, int], timeout: float) -> bool:
        """Block up to *timeout* seconds until some partition has data past *positions*.

        The default polls :meth:`list_topics`; backends override it with something cheaper.
        """
        deadline = time.monotonic() + timeout
        while True:
            ends = self.topic(topic).end_offsets
            if any(ends.get(p, 0) > off for p, off in positions.items()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))

    def consumer(
        self, topic: str, *, group: str | None = None, start: StartAt = "earliest"
    ) -> Consumer:
        """A reader over every partition of *topic* (see :class:`~fluvial.log.consumer.Consumer`)."""
        from fluvial.log.consumer import Consumer

        return Consumer(self, topic, group=group, start=start)

    # -- consumer groups ----------------------------------------------------------------

    @abstractmethod
    def commit(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Record *offsets* (the next offset to read, per partition) for *group*; durable."""

    @abstractmethod
    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offsets on *topic* (empty if none)."""

    @abstractmethod
    def list_groups(self) -> list[GroupInfo]:
        """Every (group, topic) with committed offsets, with its lag."""

    # -- housekeeping -------------------------------------------------------------------

    def apply_retention(self) -> int:
        """Delete data past the retention limits; return the number of records removed.

        Backends whose servers enforce retention themselves return 0.
        """
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files, threads and connections."""

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
