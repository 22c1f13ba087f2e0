"""Run a planned job: the micro-batch loop, watermarks, window firing and checkpoints.

Each pipeline polls its source, evaluates computed columns and every stateless step with
DuckDB on the whole Arrow batch (one connection per pipeline, SQL built at plan time),
feeds window operators, advances the watermark (the minimum over the source's splits,
never decreasing) and writes the windows it fires to the sink. Work is per micro-batch,
never per row.

Checkpoints (every ``execution.checkpointing.interval``, 10 s by default) store operator
states, source positions and watermarks under
``<data_dir>/stream/<job>/checkpoints/<id>`` — written to a temporary folder and renamed,
so a checkpoint exists completely or not at all — and only then commit the sinks with
that id. ``from_checkpoint=True`` resumes from the newest one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import PipelineError
from fluvial.stream.connectors.base import ConnectorContext, Sink, Source
from fluvial.stream.ops import SessionAggregate, WatermarkTracker, WindowAggregate
from fluvial.stream.plan.build import parse_duration_ms
from fluvial.stream.plan.nodes import BATCH, Calc, Job, Pipeline, SinkNode, WindowAgg

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = ["JobResult", "PipelineStats", "conform", "run_job"]

#: the watermark before any row, and at the end of a bounded input (flush everything)
MIN_WATERMARK = -(2**63)
MAX_WATERMARK = 2**63 - 1
DEFAULT_CHECKPOINT_MS = 10_000
CHECKPOINT_KEY = "execution.checkpointing.interval"


@dataclass
class PipelineStats:
    """What a pipeline has done so far (for status lines and tests)."""

    name: str
    sink: str
    rows_in: int = 0
    rows_out: int = 0
    late_rows: int = 0
    watermark_ms: int | None = None

    def line(self) -> str:
        wm = "-"
        if self.watermark_ms is not None and MIN_WATERMARK < self.watermark_ms < MAX_WATERMARK:
            wm = (
                pa.scalar(self.watermark_ms, pa.timestamp("ms"))
                .as_py()
                .isoformat(timespec="milliseconds")
            )
        elif self.watermark_ms == MAX_WATERMARK:
            wm = "end"
        return (
            f"{self.name} -> {self.sink}: in {self.rows_in:,} rows, out {self.rows_out:,}, "
            f"late {self.late_rows:,}, watermark {wm}"
        )


@dataclass(frozen=True)
class JobResult:
    """The outcome of :func:`run_job`: per-pipeline statistics and the last checkpoint id."""

    pipelines: tuple[PipelineStats, ...]
    checkpoint_id: int | None


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    # TIMESTAMP_LTZ values are shown and cast in UTC, as Flink's default session zone does
    con.execute("SET TimeZone = 'UTC'")
    return con


def _ms_timestamps(table: pa.Table) -> pa.Table:
    """DuckDB computes timestamps in microseconds; the engine's type is TIMESTAMP(3)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type) and f.type.unit != "ms":
            ms = pa.timestamp("ms", tz=f.type.tz)
            table = table.set_column(i, f.name, pc.cast(table[i], ms, safe=False))
    return table


def conform(table: pa.Table, node: SinkNode, schema: pa.Schema) -> pa.Table:
    """Rows for the sink: query columns by position onto the sink's columns, cast to its
    types (as Flink's INSERT does); unnamed sink columns are NULL."""
    if table.num_columns != len(node.targets):
        raise PipelineError(
            f"INSERT INTO {node.table.name}: the query produces {table.num_columns} columns "
            f"but the sink expects {len(node.targets)} ({', '.join(node.targets)})"
        )
    by_target = dict(zip(node.targets, range(table.num_columns), strict=True))
    arrays = []
    for f in schema:
        i = by_target.get(f.name)
        if i is None:
            arrays.append(pa.nulls(table.num_rows, f.type))
            continue
        col = table.column(i)
        if col.type == f.type:
            arrays.append(col)
            continue
        try:
            arrays.append(pc.cast(col, f.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise PipelineError(
                f"INSERT INTO {node.table.name}: cannot write query column "
                f"'{table.schema.names[i]}' ({col.type}) into column '{f.name}' ({f.type}): "
                f"{exc}"
            ) from exc
    return pa.Table.from_arrays(arrays, schema=schema)


class _PipelineRun:
    """One pipeline's source, operators and sink, and the loop body that drives them."""

    def __init__(self, pipeline: Pipeline, context: ConnectorContext) -> None:
        # connectors import their formats' libraries; load them only when a job runs
        from fluvial.stream.connectors import create_sink, create_source

        self.p = pipeline
        self.con = _connect()
        self.source: Source = create_source(pipeline.scan.table, context)
        self.sink: Sink = create_sink(pipeline.sink.table, context)
        self.ops: dict[int, Any] = {}
        for i, step in enumerate(pipeline.steps):
            if isinstance(step, WindowAgg):
                cls = SessionAggregate if step.spec.kind == "session" else WindowAggregate
                self.ops[i] = cls(step.spec, step.time_col, step.keys, step.aggs)
        self.op_wm = dict.fromkeys(self.ops, MIN_WATERMARK)
        self.tracker: Any = None
        self.splits: set[str] = set()
        self.floor = MIN_WATERMARK  # a restored watermark: never go back below it
        self.stats = PipelineStats(pipeline.name, pipeline.sink.table.name)

    # lifecycle ---------------------------------------------------------------
    def open(self, state: dict[str, Any] | None, checkpoint_id: int | None) -> None:
        positions = state["positions"] if state else None
        self.source.open(positions)
        self.sink.open(checkpoint_id)
        scan = self.p.scan
        self.splits = set(self.source.splits())
        self.tracker = WatermarkTracker(sorted(self.splits), scan.idle_timeout_ms or 0)
        if state:
            self.floor = state["watermark"]
            self.stats.watermark_ms = self.floor
            for i, snap in state["operators"].items():
                self.ops[int(i)].restore(snap)
                self.op_wm[int(i)] = self.floor

    def snapshot(self) -> dict[str, Any]:
        return {
            "positions": self.source.positions(),
            "watermark": self.watermark(),
            "operators": {str(i): op.snapshot() for i, op in self.ops.items()},
        }

    def close(self) -> None:
        try:
            self.source.close()
        finally:
            try:
                self.sink.close()
            finally:
                self.con.close()

    # the loop body -----------------------------------------------------------
    def sql(self, sql: str, table: pa.Table) -> pa.Table:
        self.con.register(BATCH, table)
        try:
            return _ms_timestamps(self.con.sql(sql).to_arrow_table())
        except duckdb.Error as exc:
            raise PipelineError(f"{self.p.name}: evaluating {sql!r} failed: {exc}") from exc
        finally:
            self.con.unregister(BATCH)

    def watermark(self) -> int:
        current = self.tracker.current_ms if self.tracker is not None else None
        wm = self.floor if current is None else max(self.floor, int(current))
        return wm

    def poll(self, max_rows: int, timeout: float) -> int:
        """Read, process and emit one round of source batches; returns rows read."""
        batches = self.source.poll(max_rows, timeout)
        rows = 0
        scan = self.p.scan
        for b in batches:
            table = b.table
            if table.num_rows == 0:
                continue
            rows += table.num_rows
            if scan.computed_sql is not None:
                table = self.sql(scan.computed_sql, table)
            candidate = self.candidate(table)
            if candidate is not None:
                if b.split not in self.splits:
                    self.splits.add(b.split)
                    self.tracker.add_split(b.split)
                self.tracker.observe(b.split, candidate)
            self.push(table, 0)
        self.stats.rows_in += rows
        self.advance(self.watermark())
        return rows

    def candidate(self, table: pa.Table) -> int | None:
        """This batch's watermark candidate: the max of the watermark expression."""
        scan = self.p.scan
        if scan.rowtime is None:
            return None
        if scan.watermark_sql is not None:
            value = self.sql(scan.watermark_sql, table).column(0)[0]
        else:
            value = pc.max(table[scan.rowtime])
        if not value.is_valid:
            return None
        ms = value.cast(pa.int64()).as_py() if pa.types.is_timestamp(value.type) else None
        if ms is None:
            raise PipelineError(
                f"{self.p.name}: the watermark of '{scan.table.name}' must be a timestamp, "
                f"found {value.type}"
            )
        return int(ms) - (scan.watermark_delay_ms or 0)

    def push(self, table: pa.Table, start: int) -> None:
        """Run *table* through the steps from *start* until a window operator takes it."""
        steps = self.p.steps
        for i in range(start, len(steps)):
            if table.num_rows == 0:
                return
            step = steps[i]
            if isinstance(step, Calc):
                table = self.sql(step.sql, table)
                continue
            prepared = self.sql(step.pre.sql, table)
            wm = self.op_wm[i] if self.op_wm[i] > MIN_WATERMARK else None
            self.stats.late_rows += int(self.ops[i].process(prepared, wm) or 0)
            return
        if table.num_rows:
            out = conform(table, self.p.sink, self.sink.schema)
            self.sink.write(out)
            self.stats.rows_out += out.num_rows

    def advance(self, watermark: int) -> None:
        """Fire the windows the watermark has passed, in plan order (so a downstream
        window sees its input before its own watermark moves)."""
        self.stats.watermark_ms = watermark if watermark > MIN_WATERMARK else None
        for i, op in self.ops.items():
            if watermark <= self.op_wm[i]:
                continue
            fired = op.flush() if watermark == MAX_WATERMARK else op.advance(watermark)
            self.op_wm[i] = watermark
            step = self.p.steps[i]
            assert isinstance(step, WindowAgg)
            if fired is not None and fired.num_rows:
                self.push(self.sql(step.post.sql, fired), i + 1)

    def finish(self) -> None:
        """End of a bounded input: the watermark goes to +infinity; every window fires."""
        self.floor = MAX_WATERMARK
        self.advance(MAX_WATERMARK)


# --------------------------------------------------------------------------- checkpoints


class CheckpointStore:
    """Checkpoints of one job: ``<root>/<id>/`` holding ``state.pickle`` and ``meta.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def latest(self) -> int | None:
        if not self.root.is_dir():
            return None
        ids = [int(p.name) for p in self.root.iterdir() if p.name.isdigit()]
        return max(ids) if ids else None

    def write(self, checkpoint_id: int, states: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{checkpoint_id}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        with open(tmp / "state.pickle", "wb") as f:
            # operator states are Arrow tables and plain values; pickle keeps them exact
            pickle.dump(states, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        meta = {"id": checkpoint_id, "time_ms": int(time.time() * 1000), "pipelines": list(states)}
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        os.replace(tmp, self.root / str(checkpoint_id))
        for old in sorted(int(p.name) for p in self.root.iterdir() if p.name.isdigit())[:-3]:
            shutil.rmtree(self.root / str(old), ignore_errors=True)  # keep the last three

    def read(self, checkpoint_id: int) -> dict[str, Any]:
        with open(self.root / str(checkpoint_id) / "state.pickle", "rb") as f:
            states: dict[str, Any] = pickle.load(f)
        return states


def _context(project: Project | None, start: str, until_idle: bool) -> ConnectorContext:
    names = {f.name for f in dataclasses.fields(ConnectorContext)}
    kwargs: dict[str, Any] = {"project": project, "start": start}
    if "until_idle" in names:
        kwargs["until_idle"] = until_idle
    return ConnectorContext(**kwargs)


def run_job(
    job: Job,
    *,
    project: Project | None = None,
    start: str = "earliest",
    until_idle: bool = False,
    from_checkpoint: bool = False,
    checkpoint_dir: Path | None = None,
    stop: threading.Event | None = None,
    on_progress: Callable[[list[PipelineStats]], None] | None = None,
    progress_interval: float = 1.0,
    max_rows: int = 65_536,
    poll_timeout: float = 0.05,
) -> JobResult:
    """Run *job* until every source is finished (``until_idle``) or *stop* is set.

    *start* is where sources without a checkpoint begin ("earliest" | "latest").
    Checkpoints go to *checkpoint_dir* (default ``<data_dir>/stream/<job>/checkpoints``
    when there is a project; none otherwise).
    """
    if start not in ("earliest", "latest"):
        raise PipelineError(f"start must be 'earliest' or 'latest', found {start!r}")
    if checkpoint_dir is None and project is not None:
        checkpoint_dir = project.data_dir / "stream" / job.name / "checkpoints"
    store = CheckpointStore(checkpoint_dir) if checkpoint_dir is not None else None
    interval_ms = parse_duration_ms(job.settings.get(CHECKPOINT_KEY, str(DEFAULT_CHECKPOINT_MS)))
    restored: dict[str, Any] = {}
    last_id: int | None = None
    if from_checkpoint:
        last_id = store.latest() if store else None
        if last_id is None or store is None:
            raise PipelineError(
                f"no checkpoint to resume job '{job.name}' from"
                + (f" in {checkpoint_dir}" if checkpoint_dir else " (no project)")
            )
        restored = store.read(last_id)
    context = _context(project, start, until_idle)
    runs: list[_PipelineRun] = []
    try:
        for p in job.pipelines:
            runs.append(_PipelineRun(p, context))
        for run in runs:
            run.open(restored.get(run.p.name), last_id)
        next_id = (last_id or 0) + 1
        last_checkpoint = last_progress = time.monotonic()

        def checkpoint() -> None:
            nonlocal next_id, last_id
            if store is not None:
                store.write(next_id, {r.p.name: r.snapshot() for r in runs})
            for r in runs:
                r.sink.commit(next_id)
            last_id, next_id = next_id, next_id + 1

        done = [False] * len(runs)
        while not all(done):
            if stop is not None and stop.is_set():
                break
            for k, run in enumerate(runs):
                if done[k]:
                    continue
                rows = run.poll(max_rows, poll_timeout)
                if until_idle and rows == 0 and run.source.finished():
                    run.finish()
                    done[k] = True
            now = time.monotonic()
            if interval_ms > 0 and (now - last_checkpoint) * 1000 >= interval_ms:
                checkpoint()
                last_checkpoint = now
            if on_progress is not None and now - last_progress >= progress_interval:
                on_progress([r.stats for r in runs])
                last_progress = now
        checkpoint()  # the end of the input, or a graceful stop: commit what was produced
        if on_progress is not None:
            on_progress([r.stats for r in runs])
        return JobResult(tuple(r.stats for r in runs), last_id)
    finally:
        for run in runs:
            run.close()
