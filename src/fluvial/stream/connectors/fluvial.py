"""``'connector' = 'fluvial'``: a topic of the project's event log as a source or a sink.

Options (Flink's Kafka connector names where they exist)::

    'topic'                          the topic (required)
    'scan.startup.mode'              earliest-offset | latest-offset | timestamp
                                     (default: the run's start, earliest unless told)
    'scan.startup.timestamp-millis'  with mode 'timestamp': the first log-append time read
    'key.fields'                     sink: the columns rows are routed by ('a;b')
    'sink.transactional-id-prefix'   sink: names its commit state (two jobs writing one
                                     topic need different prefixes)

The source reads Arrow batches straight from the log (one split per partition,
``"<topic>/<p>"``; a position is the next offset) and fits them to the table by column
name (:mod:`~fluvial.stream.connectors.conform`); a declared ``_partition``, ``_offset``
or ``_timestamp`` column exposes the log's system column.

The sink is exactly-once per checkpoint id. ``commit(id)`` (1) writes the staged rows,
already routed to partitions, to a *pending* Arrow file with the id and each partition's
end offset before the append (fsynced), (2) appends each partition's rows, (3) records the
id in ``stream/sinks/<topic>.json`` (atomically) and removes the pending file. A crash
between (2) and (3) — the at-least-once window of a plain "append, then record" sink —
is closed at the next ``open``: for each partition of a pending file it looks for the
staged rows as a contiguous run after the recorded end offset (comparing row hashes of
the data columns, vectorized) and appends only the partitions whose rows are not there.
So a commit is all-or-nothing even when other writers append to the topic meanwhile.
What remains: the row hashes are Polars' (stable within one installation, which is what a
restart uses), and a partition append torn by the backend itself is not repaired.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import LogError, PipelineError, TopicNotFoundError
from fluvial.log.base import with_system_columns
from fluvial.log.partitioner import partition_for
from fluvial.stream.connectors.base import ConnectorContext, Sink, Source, SourceBatch
from fluvial.stream.connectors.conform import ColumnMismatch, conform
from fluvial.stream.connectors.options import Options

if TYPE_CHECKING:
    from fluvial.log.base import EventLog, TopicInfo
    from fluvial.stream.sql.ast import CreateTable

__all__ = ["LogSink", "LogSource", "find_run"]

REQUIRED = ("topic",)
OPTIONAL = (
    "scan.startup.mode",
    "scan.startup.timestamp-millis",
    "key.fields",
    "sink.transactional-id-prefix",
)
STARTUP_MODES = ("earliest-offset", "latest-offset", "timestamp")
_PARTITION_COLUMN = "__fluvial_partition"  # only in the sink's private pending file


def _open_log(options: Options, context: ConnectorContext) -> EventLog:
    if context.project is None:
        raise options.error("the 'fluvial' connector needs a project (its event log)")
    return context.project.open_log()


class LogSource(Source):
    """Reads a log topic; unbounded (with ``until_idle``: up to the end seen at open)."""

    bounded: ClassVar[bool] = False
    required_options: ClassVar[tuple[str, ...]] = REQUIRED
    optional_options: ClassVar[tuple[str, ...]] = OPTIONAL

    def __init__(
        self, table: CreateTable, options: Mapping[str, str], context: ConnectorContext
    ) -> None:
        super().__init__(table, options, context)
        self.opts = Options(table, options)
        self.topic = self.opts.require("topic")
        default = "latest-offset" if context.start == "latest" else "earliest-offset"
        self.mode = self.opts.choice("scan.startup.mode", STARTUP_MODES, default)
        self.start_ms = self.opts.integer("scan.startup.timestamp-millis")
        if self.mode == "timestamp" and self.start_ms is None:
            raise self.opts.error(
                "'scan.startup.mode' = 'timestamp' needs 'scan.startup.timestamp-millis'"
            )
        self.log: EventLog | None = None
        self._next: dict[int, int] = {}
        self._ends: dict[int, int] | None = None
        self._turn = 0

    def _split(self, partition: int) -> str:
        return f"{self.topic}/{partition}"

    def open(self, positions: Mapping[str, Any] | None = None) -> None:
        self.log = log = _open_log(self.opts, self.context)
        try:
            info = log.topic(self.topic)
        except TopicNotFoundError as exc:
            raise self.opts.error(str(exc)) from exc
        self._check_columns(info)
        positions = positions or {}
        for part in info.partitions:
            split = self._split(part.partition)
            if split in positions:
                self._next[part.partition] = int(positions[split])
            elif self.mode == "earliest-offset":
                self._next[part.partition] = part.start_offset
            elif self.mode == "latest-offset":
                self._next[part.partition] = part.end_offset
            else:
                assert self.start_ms is not None
                self._next[part.partition] = log.offset_for_time(
                    self.topic, part.partition, self.start_ms
                )
        if self.context.until_idle:
            self._ends = dict(info.end_offsets)

    def _check_columns(self, info: TopicInfo) -> None:
        if info.schema is None:  # nothing appended yet: checked on the first batch
            return
        try:
            conform(
                with_system_columns(info.schema).empty_table(),
                self.schema,
                what=f"topic '{self.topic}'",
            )
        except ColumnMismatch as exc:
            raise self.opts.error(exc.detail) from exc

    def splits(self) -> list[str]:
        return [self._split(p) for p in sorted(self._next)]

    def positions(self) -> dict[str, Any]:
        return {self._split(p): off for p, off in sorted(self._next.items())}

    def _want(self, partition: int) -> int | None:
        """How far this partition may be read (None: no limit)."""
        return None if self._ends is None else self._ends.get(partition, 0)

    def poll(self, max_rows: int = 65_536, timeout: float = 0.0) -> list[SourceBatch]:
        batches = self._read(max_rows)
        if not batches and timeout > 0 and not self.finished():
            assert self.log is not None
            if self.log.wait_for_data(self.topic, dict(self._next), timeout):
                batches = self._read(max_rows)
        return batches

    def _read(self, max_rows: int) -> list[SourceBatch]:
        assert self.log is not None, "open() the source first"
        parts = sorted(self._next)
        if not parts:
            return []
        # rotate the starting partition so a busy partition cannot starve the others
        self._turn = (self._turn + 1) % len(parts)
        budget = max_rows
        out = []
        for p in parts[self._turn :] + parts[: self._turn]:
            if budget <= 0:
                break
            offset = self._next[p]
            limit = self._want(p)
            want = budget if limit is None else min(budget, limit - offset)
            if want <= 0:
                continue
            data = self.log.read(self.topic, p, offset, want)
            if data.num_rows == 0:
                continue
            self._next[p] = int(data["_offset"][-1].as_py()) + 1
            budget -= data.num_rows
            try:
                rows = conform(data, self.schema, what=f"topic '{self.topic}'")
            except ColumnMismatch as exc:
                raise self.opts.error(exc.detail) from exc
            out.append(SourceBatch(self._split(p), rows, self._next[p]))
        return out

    def finished(self) -> bool:
        if self._ends is None:
            return False
        return all(self._next.get(p, 0) >= end for p, end in self._ends.items())

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None


def _row_hashes(table: pa.Table) -> np.ndarray:
    import polars as pl

    if table.num_rows == 0:
        return np.empty(0, dtype=np.uint64)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.hash_rows(seed=0).to_numpy()


def find_run(haystack: pa.Table, needle: pa.Table) -> int | None:
    """The first row index of *haystack* where *needle*'s rows appear in order, or None."""
    if needle.num_rows == 0:
        return 0
    big, small = _row_hashes(haystack), _row_hashes(needle)
    n = len(small)
    if len(big) < n:
        return None
    windows = np.lib.stride_tricks.sliding_window_view(big, n)
    candidates = np.flatnonzero(big[: len(big) - n + 1] == small[0])
    for start in candidates:  # few: only where the first row matches
        if np.array_equal(windows[start], small):
            return int(start)
    return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LogSink(Sink):
    """Appends to a log topic, once per checkpoint id (see the module docstring)."""

    required_options: ClassVar[tuple[str, ...]] = REQUIRED
    optional_options: ClassVar[tuple[str, ...]] = OPTIONAL

    def __init__(
        self, table: CreateTable, options: Mapping[str, str], context: ConnectorContext
    ) -> None:
        super().__init__(table, options, context)
        self.opts = Options(table, options)
        self.topic = self.opts.require("topic")
        keys = self.opts.get("key.fields")
        self.key_fields = [k.strip() for k in keys.split(";") if k.strip()] if keys else []
        for key in self.key_fields:
            if key not in self.schema.names:
                raise self.opts.error(
                    f"'key.fields' names '{key}', which is not a column; "
                    f"expected one of {', '.join(self.schema.names)}"
                )
        prefix = self.opts.get("sink.transactional-id-prefix")
        self.state_name = f"{self.topic}.{prefix}" if prefix else self.topic
        self.log: EventLog | None = None
        self.topic_schema: pa.Schema = self.schema
        self.partitions = 1
        self.last_committed: int | None = None
        self._staged: list[pa.Table] = []

    # -- state files ----------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        assert self.context.project is not None
        path = self.context.project.data_dir / "stream" / "sinks"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def state_path(self) -> Path:
        return self.state_dir / f"{self.state_name}.json"

    @property
    def pending_path(self) -> Path:
        return self.state_dir / f"{self.state_name}.pending.arrow"

    def _read_state(self) -> int | None:
        try:
            value = json.loads(self.state_path.read_text(encoding="utf-8"))["checkpoint_id"]
        except FileNotFoundError:
            return None
        except (ValueError, KeyError) as exc:
            raise PipelineError(f"{self.state_path}: unreadable sink state ({exc})") from exc
        return int(value)

    def _write_state(self, checkpoint_id: int) -> None:
        tmp = self.state_path.with_suffix(".json.tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump({"topic": self.topic, "checkpoint_id": checkpoint_id}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)
        _fsync_dir(self.state_dir)
        self.last_committed = checkpoint_id

    # -- lifecycle ------------------------------------------------------------------------

    def open(self, last_committed: int | None = None) -> None:
        self.log = log = _open_log(self.opts, self.context)
        try:
            info = log.create_topic(self.topic, schema=self.schema, exist_ok=True)
        except LogError as exc:
            raise self.opts.error(str(exc)) from exc
        self.partitions = info.num_partitions
        self.topic_schema = info.schema if info.schema is not None else self.schema
        self._check_fits()
        self.last_committed = self._read_state()
        self._recover()

    def _check_fits(self) -> None:
        """Every non-nullable topic column is one of the table's columns."""
        for field in self.topic_schema:
            if field.name not in self.schema.names and not field.nullable:
                raise self.opts.error(
                    f"topic '{self.topic}' has the required column '{field.name}', which the "
                    f"table does not declare; its columns are {', '.join(self.topic_schema.names)}"
                )

    def _to_topic(self, table: pa.Table) -> pa.Table:
        """The rows as the topic stores them: its columns, by name, missing ones null."""
        columns = [
            table[f.name] if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
            for f in self.topic_schema
        ]
        full = pa.Table.from_arrays(columns, names=self.topic_schema.names)
        try:
            return conform(full, self.topic_schema, what=f"rows for topic '{self.topic}'")
        except ColumnMismatch as exc:
            raise self.opts.error(exc.detail) from exc

    def _recover(self) -> None:
        """Finish a commit that a crash interrupted (see the module docstring)."""
        import pyarrow.ipc as ipc

        if not self.pending_path.exists():
            return
        with ipc.open_file(self.pending_path) as reader:
            staged = reader.read_all()
            meta = json.loads(reader.schema.metadata[b"fluvial"])
        checkpoint_id = int(meta["checkpoint_id"])
        if self.last_committed is None or checkpoint_id > self.last_committed:
            self._append_missing(staged, {int(p): o for p, o in meta["ends_before"].items()})
            self._write_state(checkpoint_id)
        self.pending_path.unlink()
        _fsync_dir(self.state_dir)

    def _append_missing(self, staged: pa.Table, ends_before: dict[int, int]) -> None:
        assert self.log is not None
        parts = staged[_PARTITION_COLUMN].to_numpy()
        rows = staged.drop_columns([_PARTITION_COLUMN])
        ends = self.log.topic(self.topic).end_offsets
        for p in np.unique(parts):
            mine = rows.filter(pa.array(parts == p))
            start = ends_before.get(int(p), 0)
            tail = self.log.read(self.topic, int(p), start, max(0, ends.get(int(p), 0) - start))
            tail = tail.select(self.topic_schema.names)
            if find_run(tail, mine) is None:
                self.log.append(self.topic, mine, partition=int(p))

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._staged.append(table)

    def _route(self, rows: pa.Table, checkpoint_id: int) -> np.ndarray:
        if not self.key_fields:  # like the log's unkeyed appends: one partition per commit
            return np.full(rows.num_rows, checkpoint_id % self.partitions, dtype=np.int32)
        keys = [pc.cast(rows[k], pa.string()) for k in self.key_fields]
        key = keys[0] if len(keys) == 1 else pc.binary_join_element_wise(*keys, "\x1f")
        return partition_for(key, self.partitions)

    def commit(self, checkpoint_id: int) -> None:
        import pyarrow.ipc as ipc

        assert self.log is not None, "open() the sink first"
        staged, self._staged = self._staged, []
        if self.last_committed is not None and checkpoint_id <= self.last_committed:
            return  # a replayed commit: its rows are already in the topic
        if staged:
            rows = self._to_topic(pa.concat_tables(staged))
            parts = self._route(rows, checkpoint_id)
            pending = rows.append_column(_PARTITION_COLUMN, pa.array(parts))
            ends = self.log.topic(self.topic).end_offsets
            meta = {"checkpoint_id": checkpoint_id, "ends_before": ends}
            pending = pending.replace_schema_metadata({"fluvial": json.dumps(meta)})
            with (
                open(self.pending_path, "wb") as fh,
                ipc.new_file(fh, pending.schema) as writer,
            ):
                writer.write_table(pending)
                writer.close()
                fh.flush()
                os.fsync(fh.fileno())
            _fsync_dir(self.state_dir)
            for p in np.unique(parts):
                self.log.append(self.topic, rows.filter(pa.array(parts == p)), partition=int(p))
        self._write_state(checkpoint_id)
        if staged:
            self.pending_path.unlink()

    def close(self) -> None:
        self._staged = []
        if self.log is not None:
            self.log.close()
            self.log = None
