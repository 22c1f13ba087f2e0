"""The archiver (our Kinesis Data Firehose): every record of the log's topics, into the lake.

Each :class:`Route` moves one topic into one raw-zone table (``events`` ->
``raw.events``, ``events_failed`` -> ``raw.events_failed``). Records are buffered as
Arrow tables and committed when the buffer reaches ``[lake] buffer_records`` or
``buffer_bytes``, or when its oldest record has waited ``buffer_seconds``.

Exactly once, by design: every Iceberg commit carries in its snapshot summary the topic
and, per partition, the offsets it covers::

    fluvial.archive.topic = events
    fluvial.archive.from  = {"0": 1000, "1": 980}     first offset of each range
    fluvial.archive.to    = {"0": 2000, "1": 1950}    next offset to read (exclusive)

On start the archiver reads ``to`` from the newest snapshot in the table's ancestry that
has it (:func:`committed_offsets`) and resumes there: the data and the offsets commit
atomically, so a restart after any crash neither loses nor repeats a record. Consumer
group offsets are not used: they could be ahead of or behind the table. When expiry has
removed every archive snapshot, :func:`offsets_from_rows` recovers the position from the
rows' own ``_partition`` and ``_offset`` columns.

Vectorized: tables go from the log's reads to Parquet with Arrow kernels only.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

from fluvial.errors import LogError
from fluvial.lake.write import append

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from fluvial.config import Settings
    from fluvial.lake.catalog import Lake
    from fluvial.log.base import EventLog
    from fluvial.log.consumer import Consumer

__all__ = [
    "FROM_KEY",
    "TOPIC_KEY",
    "TO_KEY",
    "ArchiveStats",
    "Archiver",
    "Route",
    "committed_offsets",
    "default_routes",
    "offsets_from_rows",
]

log = logging.getLogger(__name__)

TOPIC_KEY = "fluvial.archive.topic"
FROM_KEY = "fluvial.archive.from"
TO_KEY = "fluvial.archive.to"


@dataclass(frozen=True)
class Route:
    """One topic archived into one lake table, partitioned by *time_column*."""

    topic: str
    table: str
    time_column: str


def default_routes(settings: Settings) -> list[Route]:
    """The valid and the failed events topics, into ``raw.events`` and ``raw.events_failed``."""
    return [
        Route(settings.log.events_topic, "raw.events", "event_time"),
        Route(settings.log.failed_topic, "raw.events_failed", "received_at"),
    ]


def _offsets_json(offsets: Mapping[int, int]) -> str:
    return json.dumps({str(p): int(o) for p, o in sorted(offsets.items())}, separators=(",", ":"))


def committed_offsets(table: Table, topic: str) -> dict[int, int] | None:
    """The next offset to archive per partition of *topic*, from *table*'s snapshots.

    Walks back from the current snapshot to the newest one whose summary records an
    archive of *topic*; None when there is none (nothing archived yet).

    >>> committed_offsets.__name__
    'committed_offsets'
    """
    from pyiceberg.table.snapshots import ancestors_of

    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        summary = snapshot.summary
        if summary is None or summary[TOPIC_KEY] != topic or summary[TO_KEY] is None:
            continue
        raw = json.loads(str(summary[TO_KEY]))
        return {int(p): int(o) for p, o in raw.items()}
    return None


def offsets_from_rows(table: Table) -> dict[int, int]:
    """The next offset per partition after the ``_partition``/``_offset`` columns' maxima.

    The fallback when no snapshot in the ancestry records offsets (expiry removed them):
    archived rows keep their log position, so the table itself says where it stopped.
    """
    names = set(table.schema().column_names)
    if not {"_partition", "_offset"} <= names:
        raise LogError(
            f"table '{'.'.join(table.name())}' records no archive offsets and has no "
            "_partition/_offset columns: cannot tell where archiving stopped"
        )
    rows = table.scan(selected_fields=("_partition", "_offset")).to_arrow()
    if rows.num_rows == 0:
        return {}
    maxima = rows.group_by("_partition").aggregate([("_offset", "max")])
    parts = maxima.column("_partition").to_pylist()
    ends = maxima.column("_offset_max").to_pylist()
    return {int(p): int(o) + 1 for p, o in zip(parts, ends, strict=True) if p is not None}


@dataclass
class ArchiveStats:
    """What an archiver has done so far, per topic and in total."""

    records: dict[str, int] = field(default_factory=dict)
    commits: dict[str, int] = field(default_factory=dict)
    lag: dict[str, int] = field(default_factory=dict)
    #: records retention deleted from the log before they were archived
    lost: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def total_records(self) -> int:
        return sum(self.records.values())

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly summary."""
        return {
            "records": dict(self.records),
            "commits": dict(self.commits),
            "lag": dict(self.lag),
            "lost": dict(self.lost),
            "conflicts": self.conflicts,
            "seconds": round(self.elapsed, 3),
        }


class _Lane:
    """One route's consumer, buffer and committed position."""

    def __init__(self, archiver: Archiver, route: Route) -> None:
        self.archiver = archiver
        self.route = route
        self.consumer: Consumer | None = None
        self.table: Table | None = None
        self.buffer: list[pa.Table] = []
        self.buffered_rows = 0
        self.buffered_bytes = 0
        self.first_buffered = 0.0
        self.committed: dict[int, int] = {}

    # -- positions ----------------------------------------------------------------------

    def open(self) -> bool:
        """Start at the table's committed offsets; False while the topic does not exist."""
        from fluvial.errors import TopicNotFoundError

        elog, lake, stats = self.archiver.log, self.archiver.lake, self.archiver.stats
        try:
            info = elog.topic(self.route.topic)
        except TopicNotFoundError:
            return False
        self.table = lake.table(self.route.table) if lake.exists(self.route.table) else None
        done = committed_offsets(self.table, self.route.topic) if self.table is not None else None
        if done is None and self.table is not None and self.table.current_snapshot() is not None:
            done = offsets_from_rows(self.table)
            log.warning(
                "no archive snapshot left in '%s' (expired?); resuming from its rows' offsets",
                self.route.table,
            )
        positions = dict(info.start_offsets)
        lost = 0
        for part in info.partitions:
            at = (done or {}).get(part.partition, 0)
            if at > part.end_offset:
                raise LogError(
                    f"table '{self.route.table}' has archived topic '{self.route.topic}' "
                    f"partition {part.partition} up to offset {at}, but the log ends at "
                    f"{part.end_offset}: was the topic deleted and created again?"
                )
            lost += max(0, part.start_offset - at)
            positions[part.partition] = max(at, part.start_offset)
        if lost:
            log.warning(
                "%d record(s) of '%s' left the log (retention) before they were archived",
                lost,
                self.route.topic,
            )
        stats.lost[self.route.topic] = stats.lost.get(self.route.topic, 0) + lost
        self.committed = positions
        consumer = elog.consumer(self.route.topic, start="earliest")
        for partition, offset in positions.items():
            consumer.seek(partition, offset)
        self.consumer = consumer
        self._clear()
        return True

    def _clear(self) -> None:
        self.buffer, self.buffered_rows, self.buffered_bytes = [], 0, 0

    def lag(self) -> int:
        if self.consumer is None:
            return 0
        ends = self.archiver.log.topic(self.route.topic).end_offsets
        positions = self.consumer.positions
        return sum(max(0, end - positions.get(p, 0)) for p, end in ends.items())

    # -- buffering ----------------------------------------------------------------------

    def poll(self) -> int:
        """Read what is there (without waiting) into the buffer; return the row count."""
        if self.consumer is None and not self.open():
            return 0
        assert self.consumer is not None
        room = max(1, self.archiver.buffer_records - self.buffered_rows)
        data = self.consumer.poll(timeout=0.0, max_records=min(room, self.archiver.poll_records))
        if data is None or data.num_rows == 0:
            return 0
        if not self.buffer:
            self.first_buffered = time.monotonic()
        self.buffer.append(data)
        self.buffered_rows += data.num_rows
        self.buffered_bytes += data.nbytes
        return data.num_rows

    def due(self, now: float) -> bool:
        a = self.archiver
        return bool(self.buffer) and (
            self.buffered_rows >= a.buffer_records
            or self.buffered_bytes >= a.buffer_bytes
            or now - self.first_buffered >= a.buffer_seconds
        )

    # -- committing ---------------------------------------------------------------------

    def flush(self) -> int:
        """Commit the buffer with the offsets it covers; return the rows committed."""
        from pyiceberg.exceptions import CommitFailedException

        if not self.buffer or self.consumer is None:
            return 0
        data = pa.concat_tables(self.buffer, promote_options="permissive")
        covered_to = self.consumer.positions
        properties = {
            TOPIC_KEY: self.route.topic,
            FROM_KEY: _offsets_json(self.committed),
            TO_KEY: _offsets_json(covered_to),
        }
        lake, stats = self.archiver.lake, self.archiver.stats
        for _attempt in range(3):
            if self.table is None:
                self.table = lake.create_table(
                    self.route.table, data.schema, time_column=self.route.time_column
                )
            try:
                append(self.table, data, properties=properties, exclusive=True)
                break
            except CommitFailedException:
                stats.conflicts += 1
                self.table = lake.table(self.route.table)
                if committed_offsets(self.table, self.route.topic) != self.committed:
                    # another archiver committed records of ours: re-read from its offsets
                    log.warning("another archiver wrote '%s'; resuming from it", self.route.table)
                    self.open()
                    return 0
        else:
            raise LogError(f"could not commit to '{self.route.table}' after 3 attempts")
        rows = self.buffered_rows
        self.committed = covered_to
        self._clear()
        topic = self.route.topic
        stats.records[topic] = stats.records.get(topic, 0) + rows
        stats.commits[topic] = stats.commits.get(topic, 0) + 1
        return rows


class Archiver:
    """Moves topics into the lake's raw zone, exactly once (see the module docstring).

    Args:
        lake: the lake to write.
        log: the event log to read.
        routes: topics and their tables (default: :func:`default_routes` of *settings*).
        settings: a project's settings, for the routes and ``[lake]`` buffer sizes.
        buffer_records, buffer_bytes, buffer_seconds: override ``[lake] buffer_*``.
        poll_records: the most rows one read of the log returns.
    """

    def __init__(
        self,
        lake: Lake,
        log: EventLog,
        *,
        settings: Settings | None = None,
        routes: Iterable[Route] | None = None,
        buffer_records: int | None = None,
        buffer_bytes: int | None = None,
        buffer_seconds: float | None = None,
        poll_records: int = 200_000,
    ) -> None:
        from fluvial.config import Settings

        settings = settings or Settings()
        self.lake = lake
        self.log = log
        self.routes = list(routes) if routes is not None else default_routes(settings)
        self.buffer_records = buffer_records or settings.lake.buffer_records
        self.buffer_bytes = buffer_bytes or settings.lake.buffer_bytes
        self.buffer_seconds = (
            settings.lake.buffer_seconds if buffer_seconds is None else buffer_seconds
        )
        self.poll_records = poll_records
        self.stats = ArchiveStats()
        self._lanes = [_Lane(self, route) for route in self.routes]

    def flush(self) -> int:
        """Commit every buffer now; return the rows committed."""
        return sum(lane.flush() for lane in self._lanes)

    def lag(self) -> dict[str, int]:
        """Records in the log not yet read, per topic."""
        self.stats.lag = {lane.route.topic: lane.lag() for lane in self._lanes}
        return dict(self.stats.lag)

    def run(
        self,
        *,
        until_idle: bool = False,
        stop: threading.Event | None = None,
        on_progress: Callable[[ArchiveStats], None] | None = None,
        idle_wait: float = 0.2,
    ) -> ArchiveStats:
        """Archive until *stop* is set (then flush), or with *until_idle* until caught up.

        *on_progress* is called after every commit and about once a second otherwise.
        """
        stop = stop or threading.Event()
        last_report = 0.0
        while not stop.is_set():
            read = sum(lane.poll() for lane in self._lanes)
            now = time.monotonic()
            committed = sum(lane.flush() for lane in self._lanes if lane.due(now))
            if read == 0:
                if until_idle:
                    break
                stop.wait(idle_wait)
            if on_progress is not None and (committed or now - last_report >= 1.0):
                self.lag()
                on_progress(self.stats)
                last_report = now
        self.flush()
        self.lag()
        if on_progress is not None:
            on_progress(self.stats)
        return self.stats
