"""A consumer: read every partition of a topic from a position, fairly, as Arrow tables.

Works with any :class:`~fluvial.log.base.EventLog` backend through its interface only.
Where a consumer starts (:data:`StartAt`): ``"earliest"`` (the retained start),
``"latest"`` (only new records), an offset (the same in every partition, clamped into the
retained range), a :class:`~datetime.datetime` or an ISO-8601 string (the first record
appended at or after it). A consumer group's committed offsets win over *start*.

>>> import tempfile, pyarrow as pa
>>> from fluvial.log.embedded import EmbeddedLog
>>> with EmbeddedLog(tempfile.mkdtemp(), fsync="never") as log:
...     _ = log.create_topic("t", 2)
...     _ = log.append("t", pa.table({"x": [1, 2]}), partition=0)
...     _ = log.append("t", pa.table({"x": [3]}), partition=1)
...     consumer = log.consumer("t", group="g")
...     sorted(consumer.poll(timeout=0).column("x").to_pylist()), consumer.positions
([1, 2, 3], {0: 2, 1: 1})
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from fluvial.errors import LogError, OffsetOutOfRangeError, UsageError

if TYPE_CHECKING:
    from fluvial.log.base import EventLog, TopicInfo

__all__ = ["Consumer", "StartAt", "parse_start", "resolve_start"]

StartAt = Literal["earliest", "latest"] | int | datetime | str


def parse_start(start: StartAt) -> Literal["earliest", "latest"] | int | datetime:
    """Normalize a start position; strings may be a keyword, an offset or an ISO time.

    >>> parse_start("42"), parse_start(" latest ")
    (42, 'latest')
    >>> parse_start("2026-01-02T03:04:05Z")
    datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    """
    if isinstance(start, bool):
        raise UsageError(f"expected a start position, found {start!r}")
    if isinstance(start, int | datetime):
        return start
    if not isinstance(start, str):
        raise UsageError(f"expected a start position, found {type(start).__name__}")
    text = start.strip()
    if text in ("earliest", "latest"):
        return text  # type: ignore[return-value]
    if text.isdigit():
        return int(text)
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            "expected 'earliest', 'latest', an offset or an ISO-8601 time "
            f"(e.g. 2026-01-02T03:04:05Z), found {start!r}"
        ) from None


def resolve_start(log: EventLog, info: TopicInfo, start: StartAt) -> dict[int, int]:
    """The offset to start at in each partition of the topic."""
    where = parse_start(start)
    if where == "earliest":
        return dict(info.start_offsets)
    if where == "latest":
        return dict(info.end_offsets)
    if isinstance(where, datetime):
        moment = where if where.tzinfo is not None else where.replace(tzinfo=UTC)
        ms = int(moment.timestamp() * 1000)
        return {
            p.partition: log.offset_for_time(info.name, p.partition, ms) for p in info.partitions
        }
    assert isinstance(where, int)
    if where < 0:
        raise UsageError(f"expected an offset >= 0, found {where}")
    return {p.partition: min(max(where, p.start_offset), p.end_offset) for p in info.partitions}


class Consumer:
    """Reads all partitions of *topic* from per-partition positions. Not thread-safe.

    ``poll`` returns up to *max_records* rows (with ``_partition``, ``_offset``,
    ``_timestamp``), shared fairly between partitions that have data, or ``None`` when
    nothing arrived within *timeout*. Iterating follows the topic until :meth:`close`.
    """

    def __init__(
        self,
        log: EventLog,
        topic: str,
        group: str | None = None,
        start: StartAt = "earliest",
    ) -> None:
        self.log = log
        self.topic = topic
        self.group = group
        info = log.topic(topic)
        self._positions = resolve_start(log, info, start)
        if group is not None:
            committed = log.committed(group, topic)
            self._positions.update({p: off for p, off in committed.items() if p in self._positions})
        self._rotation = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"Consumer(topic={self.topic!r}, group={self.group!r}, positions={self._positions})"

    @property
    def positions(self) -> dict[int, int]:
        """The next offset to read in each partition."""
        return dict(self._positions)

    def seek(self, partition: int, offset: int) -> None:
        """Read *partition* from *offset* next."""
        if partition not in self._positions:
            raise LogError(
                f"topic '{self.topic}' has partitions {sorted(self._positions)}, "
                f"found partition {partition!r}"
            )
        if not isinstance(offset, int) or offset < 0:
            raise LogError(f"expected an offset >= 0, found {offset!r}")
        self._positions[partition] = offset

    def commit(self) -> None:
        """Store the current positions as the group's committed offsets."""
        if self.group is None:
            raise LogError(f"this consumer of '{self.topic}' has no group to commit for")
        self.log.commit(self.group, self.topic, self._positions)

    def close(self) -> None:
        """Stop iteration (positions are not committed implicitly)."""
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> Iterator[pa.Table]:
        while not self._closed:
            table = self.poll(timeout=0.5)
            if table is not None:
                yield table

    def poll(self, timeout: float = 1.0, max_records: int = 10_000) -> pa.Table | None:
        """Up to *max_records* new rows from all partitions, waiting up to *timeout* s."""
        if max_records < 1:
            raise LogError(f"max_records must be at least 1, found {max_records}")
        deadline = time.monotonic() + timeout
        while True:
            table = self._read_once(max_records)
            if table is not None:
                return table
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                return None
            self.log.wait_for_data(self.topic, self._positions, remaining)

    def _read(self, partition: int, budget: int) -> pa.Table:
        offset = self._positions[partition]
        try:
            return self.log.read(self.topic, partition, offset, budget)
        except OffsetOutOfRangeError:
            # retention passed us by (or the topic was recreated): resume at the nearest
            # retained offset, like Kafka's auto.offset.reset=earliest
            part = self.log.topic(self.topic).partitions[partition]
            offset = min(max(offset, part.start_offset), part.end_offset)
            self._positions[partition] = offset
            return self.log.read(self.topic, partition, offset, budget)

    def _read_once(self, max_records: int) -> pa.Table | None:
        order = sorted(self._positions)
        if not order:
            return None
        k = self._rotation % len(order)
        order = order[k:] + order[:k]  # who goes first rotates, so no partition starves
        self._rotation += 1
        tables: list[pa.Table] = []
        left = max_records
        share = max(1, max_records // len(order))
        hungry = order
        while left > 0 and hungry:
            full = []
            for p in hungry:
                budget = min(share, left)
                if budget <= 0:
                    break
                table = self._read(p, budget)
                if table.num_rows:
                    tables.append(table)
                    self._positions[p] += table.num_rows
                    left -= table.num_rows
                if table.num_rows == budget:
                    full.append(p)  # it may have more
            hungry = full
            share = max(1, left // max(1, len(full)))
        if not tables:
            return None
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)
