"""Run a planned job: the micro-batch loop, watermarks, window firing and checkpoints.

Each pipeline polls its source, evaluates computed columns and every stateless step with
DuckDB on the whole Arrow batch (one connection per pipeline, SQL built at plan time),
feeds window operators, advances the watermark (the minimum over the source's splits,
never decreasing) and writes the windows it fires to the sink. Work is per micro-batch,
never per row.

Checkpoints (every ``execution.checkpointing.interval``, 10 s by default) give
exactly-once output: between two poll rounds the job writes every operator's state, the
source positions, the watermarks and the rows emitted since the previous checkpoint (the
*outbox*) to ``<data_dir>/stream/<job>/checkpoints/<id>`` (:mod:`.checkpoint`: durable and
atomic), and only then hands each outbox to its sink and commits the sink with that id.
``from_checkpoint=True`` loads the newest checkpoint, redoes its commit (sinks skip ids
they have committed) and resumes after its positions. A status file
(:mod:`.status`) is rewritten about every second.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import PipelineError
from fluvial.stream.checkpoint import Checkpoint, CheckpointStore, PipelineState, now_ms
from fluvial.stream.connectors.base import ConnectorContext, Sink, Source
from fluvial.stream.ops import SessionAggregate, WatermarkTracker, WindowAggregate
from fluvial.stream.ops.dedup import Deduplicate
from fluvial.stream.ops.group import GroupAggregate
from fluvial.stream.ops.keyed import OP, ROW_ID, ROW_WATERMARK
from fluvial.stream.ops.window_buffer import WindowBuffer as WindowBufferOp
from fluvial.stream.plan.build import parse_duration_ms
from fluvial.stream.plan.nodes import (
    BATCH,
    Calc,
    Dedup,
    GroupAgg,
    Job,
    Join,
    LookupJoin,
    Pipeline,
    PyStep,
    PyWindow,
    Scan,
    SinkNode,
    Step,
    TopN,
    Union,
    WindowAgg,
    WindowBuffer,
)
from fluvial.stream.sql.ast import CreateTable
from fluvial.stream.status import StatusWriter

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = [
    "PAUSE_ENV",
    "CheckpointStore",
    "JobResult",
    "PipelineStats",
    "conform",
    "job_dir",
    "latest_checkpoint",
    "run_job",
]

#: the watermark before any row, and at the end of a bounded input (flush everything)
MIN_WATERMARK = -(2**63)
MAX_WATERMARK = 2**63 - 1
DEFAULT_CHECKPOINT_MS = 10_000
CHECKPOINT_KEY = "execution.checkpointing.interval"
#: Flink's mini-batch size bounds the rows of one poll round here
MINI_BATCH_KEY = "table.exec.mini-batch.size"
DEFAULT_MAX_ROWS = 65_536
PAUSE_ENV = "FLUVIAL_STREAM_PAUSE"


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


PARALLELISM_KEY = "parallelism.default"


def _connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    # TIMESTAMP_LTZ values are shown and cast in UTC, as Flink's default session zone does
    con.execute("SET TimeZone = 'UTC'")
    if threads is not None:  # Flink's parallelism.default: the threads a step may use
        con.execute(f"SET threads = {threads}")
    return con


def _parallelism(job: Job) -> int | None:
    value = job.settings.get(PARALLELISM_KEY)
    if value is None:
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise PipelineError(f"'{PARALLELISM_KEY}' must be a positive integer, found {value!r}")
    return int(value)


def _ms_timestamps(table: pa.Table) -> pa.Table:
    """DuckDB computes timestamps in microseconds; the engine's type is TIMESTAMP(3)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type) and f.type.unit != "ms":
            ms = pa.timestamp("ms", tz=f.type.tz)
            table = table.set_column(i, f.name, pc.cast(table[i], ms, safe=False))
    return table


def conform(table: pa.Table, node: SinkNode, schema: pa.Schema) -> pa.Table:
    """Rows for the sink: query columns by position onto the sink's columns, cast to its
    types (as Flink's INSERT does); unnamed sink columns are NULL. An updating result
    keeps its row kinds as a last ``_op`` column."""
    if OP in table.column_names:
        ops = table.column(OP)
        rows = conform(table.drop_columns([OP]), node, schema)
        return rows.append_column(OP, ops)
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


def _make_op(step: Step) -> Any:
    """The operator of a stateful step (None for a stateless one)."""
    if isinstance(step, WindowAgg):
        if step.spec.kind == "session":
            return SessionAggregate(step.spec, step.time_col, step.keys, step.aggs)
        return WindowAggregate(
            step.spec,
            step.time_col,
            step.keys,
            step.aggs,
            allowed_lateness_ms=step.allowed_lateness_ms,
        )
    if isinstance(step, GroupAgg):
        return GroupAggregate(step.keys, step.aggs, ttl_ms=step.ttl_ms, retract=step.retract)
    if isinstance(step, Dedup):
        return Deduplicate(step.keys, step.time_col, keep_last=step.keep_last)
    if isinstance(step, WindowBuffer):
        return WindowBufferOp(step.spec, step.time_col)
    if isinstance(step, TopN):
        from fluvial.stream.ops.topn import TopN as TopNOp

        return TopNOp(step.keys, step.order, step.n, step.rank_col)
    if isinstance(step, PyWindow):  # the dataflow API's user aggregates, MATCH_RECOGNIZE
        return step.make_operator()
    return None


class _Chain:
    """A chain of steps and their operators; what comes out goes to ``emit``.

    Operators are numbered for checkpoints by chain and step: chain 0 (the pipeline's root)
    uses the step index, so a single-source pipeline's checkpoints look as they always did.
    """

    def __init__(
        self, run: _PipelineRun, cid: int, steps: tuple[Step, ...], emit: Callable[[pa.Table], None]
    ) -> None:
        self.run = run
        self.cid = cid
        self.steps = steps
        self.emit = emit
        self.ops: dict[int, Any] = {}
        for i, step in enumerate(steps):
            op = _make_op(step)
            if op is not None:
                self.ops[i] = op
        self.op_wm = dict.fromkeys(self.ops, MIN_WATERMARK)
        #: this chain's input watermark (set when the plan tree is built)
        self.watermark: Callable[[], int] = lambda: MIN_WATERMARK

    def op_id(self, i: int) -> int:
        return i if self.cid == 0 else self.cid * 1000 + i

    def push(self, table: pa.Table, start: int) -> None:
        """Run *table* through the steps from *start* until an operator takes it."""
        run = self.run
        steps = self.steps
        for i in range(start, len(steps)):
            if table.num_rows == 0:
                return
            step = steps[i]
            if isinstance(step, Calc):
                table = run.sql(step.sql, table)
                continue
            if isinstance(step, PyStep):  # a whole batch per call
                table = _py_step(run.p.name, step, table)
                continue
            if isinstance(step, LookupJoin):
                table = run.lookup(step).join(table)
                continue
            if isinstance(step, WindowAgg | GroupAgg):
                prepared = run.sql(step.pre.sql, table)
            else:
                prepared = table
            wm = self.op_wm[i] if self.op_wm[i] > MIN_WATERMARK else None
            if isinstance(step, WindowAgg) and step.proctime:
                wm = None  # a row's processing time is never behind the clock
            late = int(self.ops[i].process(prepared, wm) or 0)
            run.stats.late_rows += late
            if late and run.batch is not None and ROW_ID in prepared.column_names:
                run.side_output(self.ops[i])
            return
        if table.num_rows:
            self.emit(table)

    def advance(self, watermark: int) -> None:
        """Fire what the watermark has passed, in plan order (so a downstream operator
        sees its input before its own watermark moves)."""
        for i, op in self.ops.items():
            step = self.steps[i]
            at = watermark
            if isinstance(step, WindowAgg) and step.proctime:  # the wall clock
                at = now_ms()
                fired = op.advance(at)
                self.op_wm[i] = max(at, self.op_wm[i])
                if fired is not None and fired.num_rows:
                    self.push(self.run.sql(step.post.sql, fired), i + 1)
                continue
            if at <= self.op_wm[i] and not getattr(op, "eager", False):
                continue
            fired = op.flush() if at == MAX_WATERMARK else op.advance(at)
            self.op_wm[i] = max(at, self.op_wm[i])
            if fired is not None and fired.num_rows:
                if isinstance(step, WindowAgg | GroupAgg):
                    fired = self.run.sql(step.post.sql, fired)
                self.push(fired, i + 1)


class _Feed:
    """A source table: its splits, their watermarks, and the chains it feeds.

    A table scanned twice with the same options (a self-join, or both sides of Nexmark's
    ``bid`` ⋈ ``auction`` over one ``nexmark`` table) is read and decoded once and each
    batch is pushed into every chain that scans it, as Flink's
    ``table.optimizer.reuse-source-enabled`` does.
    """

    def __init__(
        self, run: _PipelineRun, fid: int, scan: Scan, chain: _Chain, context: ConnectorContext
    ) -> None:
        from fluvial.stream.connectors import create_source

        self.run = run
        self.fid = fid
        self.scan = scan
        self.chains = [chain]
        self.source: Source = create_source(scan.table, context)
        self.tracker: Any = None
        self.splits: set[str] = set()
        self.floor = MIN_WATERMARK  # a restored watermark: never go back below it
        #: hidden columns (only the root chain of a single-source pipeline carries them)
        self.carry = run.p.carry if fid == 0 and chain.cid == 0 else ()

    def key(self, split: str) -> str:
        """A split's name in checkpoints (feeds after the first are prefixed)."""
        return split if self.fid == 0 else f"s{self.fid}/{split}"

    def own(self, mapping: Mapping[str, Any]) -> dict[str, Any]:
        if self.fid == 0:
            return {k: v for k, v in mapping.items() if not _FEED_KEY.match(k)}
        prefix = f"s{self.fid}/"
        return {k[len(prefix) :]: v for k, v in mapping.items() if k.startswith(prefix)}

    def open(self, state: PipelineState | None) -> None:
        self.source.open(self.own(state.positions) if state else None)
        self.splits = set(self.source.splits())
        self.tracker = WatermarkTracker(sorted(self.splits), self.scan.idle_timeout_ms or 0)
        if state is None:
            return
        if self.fid == 0:
            self.floor = state.watermark
        else:
            self.floor = int(state.feed_watermarks.get(str(self.fid), MIN_WATERMARK))
        if self.floor == MAX_WATERMARK:
            # a drained run (end of input): resume from the event time its splits reached;
            # the windows the drain fired are empty, and their operators know they fired
            self.floor = MIN_WATERMARK
        for split, wm in self.own(state.split_watermarks).items():
            self.splits.add(split)
            self.tracker.add_split(split)
            if wm is not None:
                self.tracker.observe(split, wm)

    def watermark(self) -> int:
        current = self.tracker.current_ms if self.tracker is not None else None
        return self.floor if current is None else max(self.floor, int(current))

    def poll(self, max_rows: int, timeout: float) -> int:
        """Read one round of batches and push them into the chain; returns rows read."""
        run = self.run
        rows = 0
        scan = self.scan
        for b in self.source.poll(max_rows, timeout):
            table = b.table
            if table.num_rows == 0:
                continue
            rows += table.num_rows
            if scan.computed_sql is not None:
                table = run.sql(scan.computed_sql, table)
            if b.split not in self.splits:
                self.splits.add(b.split)
                self.tracker.add_split(b.split)
            if self.carry:
                table, candidate = self.hidden_columns(table, b.split)
            else:
                candidate = self.candidate(table)
            if candidate is not None:
                self.tracker.observe(b.split, candidate)
            run.batch = table if ROW_ID in self.carry else None
            for chain in self.chains:
                chain.push(table, 0)
            run.batch = None
        return rows

    def candidate(self, table: pa.Table) -> int | None:
        """This batch's watermark candidate: the max of the watermark expression."""
        scan = self.scan
        if scan.rowtime is None:
            return None
        if scan.watermark_sql is not None:
            value = self.run.sql(scan.watermark_sql, table).column(0)[0]
        else:
            value = pc.max(table[scan.rowtime])
        if not value.is_valid:
            return None
        ms = value.cast(pa.int64()).as_py() if pa.types.is_timestamp(value.type) else None
        if ms is None:
            raise PipelineError(
                f"{self.run.p.name}: the watermark of '{scan.table.name}' must be a "
                f"timestamp, found {value.type}"
            )
        return int(ms) - (scan.watermark_delay_ms or 0)

    def hidden_columns(self, table: pa.Table, split: str) -> tuple[pa.Table, int | None]:
        """Add the columns the plan carries to its first window: ``__wm``, each row's own
        watermark (that of the rows before it: Flink's per-record watermarks), and
        ``__rid``, its index in the batch. Returns the table and the batch's candidate."""
        n = table.num_rows
        candidate = None
        if ROW_WATERMARK in self.carry:
            rows = self.row_candidates(table)
            valid = rows[rows > MIN_WATERMARK]
            candidate = int(valid.max()) if len(valid) else None
            own = self.tracker.splits.get(split)
            before = np.maximum.accumulate(rows)
            previous = np.concatenate(([MIN_WATERMARK], before[:-1]))
            if own is not None:
                previous = np.maximum(previous, own)
            others = self.tracker.others_ms(split)
            now = self.watermark()
            if others is None:
                row_wm = np.full(n, now, dtype=np.int64)
            else:
                row_wm = np.maximum(np.minimum(previous, others), now)
            table = table.append_column(ROW_WATERMARK, pa.array(row_wm, pa.int64()))
        else:
            candidate = self.candidate(table)
        if ROW_ID in self.carry:
            table = table.append_column(ROW_ID, pa.array(np.arange(n, dtype=np.int64)))
        return table, candidate

    def row_candidates(self, table: pa.Table) -> np.ndarray:
        """Each row's watermark candidate (epoch ms; the minimum long for a NULL rowtime)."""
        scan = self.scan
        assert scan.rowtime is not None
        if scan.row_watermark_sql is not None:
            column = self.run.sql(scan.row_watermark_sql, table).column(0)
        else:
            column = table.column(scan.rowtime)
        if not pa.types.is_timestamp(column.type):
            raise PipelineError(
                f"{self.run.p.name}: the watermark of '{scan.table.name}' must be a "
                f"timestamp, found {column.type}"
            )
        ms = pc.cast(column, pa.timestamp("ms", tz=column.type.tz), safe=False)
        values = pc.fill_null(pc.cast(ms, pa.int64()), MIN_WATERMARK).to_numpy()
        delay = scan.watermark_delay_ms or 0
        return np.where(values > MIN_WATERMARK + delay, values - delay, MIN_WATERMARK)


class _JoinRun:
    """A join operator between two chains; its output goes into ``out``."""

    def __init__(self, jid: int, op: Any, out: _Chain) -> None:
        self.jid = jid
        self.op = op
        self.out = out
        self.inputs: list[_Chain] = []
        self.wm = MIN_WATERMARK

    def op_id(self) -> int:
        return -(self.jid + 1)

    def push(self, side: int, table: pa.Table, run: _PipelineRun) -> None:
        wm = self.wm if self.wm > MIN_WATERMARK else None
        run.stats.late_rows += int(self.op.process(table, side, wm) or 0)

    def watermark(self) -> int:
        return min(chain.watermark() for chain in self.inputs)

    def advance(self, watermark: int) -> None:
        fired = self.op.flush() if watermark == MAX_WATERMARK else self.op.advance(watermark)
        self.wm = max(self.wm, watermark)
        if fired is not None and fired.num_rows:
            self.out.push(fired, 0)


_FEED_KEY = re.compile(r"^s\d+/")


class _PipelineRun:
    """One pipeline: its sources, chains of operators, joins, and sink; the loop body."""

    def __init__(
        self, pipeline: Pipeline, context: ConnectorContext, threads: int | None = None
    ) -> None:
        # connectors import their formats' libraries; load them only when a job runs
        from fluvial.stream.connectors import create_sink

        self.p = pipeline
        self.con = _connect(threads)
        self.context = context
        self.sink: Sink = create_sink(pipeline.sink.table, context)
        # transactional sinks get their rows at commit time, from the checkpoint's outbox
        self.transactional = self.sink.transactional
        self.outbox: list[pa.Table] = []
        self.stats = PipelineStats(pipeline.name, pipeline.sink.table.name)
        self.state_bytes = 0
        self.feeds: list[_Feed] = []
        self._lookups: dict[int, Any] = {}
        self.chains: list[_Chain] = []
        self.joins: list[_JoinRun] = []
        #: the nodes in the order their watermarks advance: inputs before what reads them
        self.order: list[_Chain | _JoinRun] = []
        self.root = self._build(pipeline.scan, pipeline.steps, self.write)
        # the late-events side output: a topic sink of the source's physical columns
        self.late_sink: Sink | None = None
        self.late_outbox: list[pa.Table] = []
        self.batch: pa.Table | None = None  # the source batch being pushed (for late rows)
        if isinstance(pipeline.scan, Scan) and pipeline.scan.late_topic:
            self.late_sink = create_sink(late_table(pipeline), context)

    def _build(
        self, source: Scan | Join | Union, steps: tuple[Step, ...], emit: Callable[[pa.Table], None]
    ) -> _Chain:
        """The chain reading *source*; sub-plans first (so they advance first)."""
        chain = _Chain(self, len(self.chains), steps, emit)
        self.chains.append(chain)
        if isinstance(source, Scan):
            shared = next((f for f in self.feeds if f.scan == source and not f.carry), None)
            if shared is not None:  # the same table scanned again: read it once
                shared.chains.append(chain)
                chain.watermark = shared.watermark
            else:
                feed = _Feed(self, len(self.feeds), source, chain, self.context)
                self.feeds.append(feed)
                chain.watermark = feed.watermark
        elif isinstance(source, Join):
            from fluvial.stream.ops.join import make_join

            join = _JoinRun(len(self.joins), make_join(source.spec), chain)
            self.joins.append(join)
            for side, sub in enumerate((source.left, source.right)):
                join.inputs.append(
                    self._build(
                        sub.source,
                        sub.steps,
                        lambda t, side=side, join=join: join.push(side, t, self),  # type: ignore[misc]
                    )
                )
            self.order.append(join)
            chain.watermark = join.watermark
        else:  # UNION ALL: rows go straight on; the watermark is the inputs' minimum
            inputs = [
                self._build(sub.source, sub.steps, lambda t: chain.push(t, 0))
                for sub in source.inputs
            ]
            chain.watermark = lambda: min(c.watermark() for c in inputs)
        self.order.append(chain)
        return chain

    def write(self, table: pa.Table) -> None:
        """The root chain's output: to the sink (via the outbox when transactional)."""
        out = conform(table, self.p.sink, self.sink.schema)
        if self.transactional:
            self.outbox.append(out)  # durable in the next checkpoint, then committed
        else:
            self.sink.write(out)
        self.stats.rows_out += out.num_rows

    # lifecycle ---------------------------------------------------------------
    def open(self, state: PipelineState | None, checkpoint_id: int | None) -> None:
        for feed in self.feeds:
            feed.open(state)
        self.sink.open(checkpoint_id)
        if self.late_sink is not None:
            self.late_sink.open(checkpoint_id)
        if state is None:
            return
        for chain in self.chains:
            for i, op in chain.ops.items():
                snap = state.operators.get(chain.op_id(i))
                if snap is not None:
                    op.restore(snap)
                wm = state.operator_watermarks.get(chain.op_id(i))
                if wm is not None and wm != MAX_WATERMARK:  # not the +∞ of a drain
                    chain.op_wm[i] = wm
        for join in self.joins:
            snap = state.operators.get(join.op_id())
            if snap is not None:
                join.op.restore(snap)
            join.wm = state.operator_watermarks.get(join.op_id(), MIN_WATERMARK)
            if join.wm == MAX_WATERMARK:
                join.wm = MIN_WATERMARK
        self.stats.rows_in = state.counters.get("rows_in", 0)
        self.stats.rows_out = state.counters.get("rows_out", 0)
        self.stats.late_rows = state.counters.get("late_rows", 0)
        wm = self.root.watermark()
        self.stats.watermark_ms = wm if wm > MIN_WATERMARK else None
        self.state_bytes = state.state_bytes

    def snapshot(self, operators: bool = True) -> PipelineState:
        """The pipeline's state between two poll rounds; takes the outboxes.

        Without *operators* (a job that keeps no checkpoints: nothing would ever be
        restored) only the outboxes and positions are taken, not every operator's state.
        """
        outbox = late = None
        if self.outbox:
            outbox = pa.concat_tables(self.outbox).combine_chunks()
            self.outbox = []
        if self.late_outbox:
            late = pa.concat_tables(self.late_outbox).combine_chunks()
            self.late_outbox = []
        positions: dict[str, Any] = {}
        splits: dict[str, int | None] = {}
        for feed in self.feeds:
            positions.update({feed.key(k): v for k, v in feed.source.positions().items()})
            tracked = feed.tracker.splits if feed.tracker is not None else {}
            splits.update({feed.key(k): v for k, v in tracked.items()})
        states: dict[int, bytes] = {}
        watermarks: dict[int, int] = {}
        for chain in self.chains:
            for i, op in chain.ops.items():
                if operators:
                    states[chain.op_id(i)] = op.snapshot()
                watermarks[chain.op_id(i)] = chain.op_wm[i]
        for join in self.joins:
            if operators:
                states[join.op_id()] = join.op.snapshot()
            watermarks[join.op_id()] = join.wm
        state = PipelineState(
            positions=positions,
            watermark=self.feeds[0].watermark() if self.feeds else MIN_WATERMARK,
            split_watermarks=splits,
            operator_watermarks=watermarks,
            operators=states,
            outbox=outbox,
            late_outbox=late,
            counters={
                "rows_in": self.stats.rows_in,
                "rows_out": self.stats.rows_out,
                "late_rows": self.stats.late_rows,
            },
            feed_watermarks={str(f.fid): f.watermark() for f in self.feeds[1:]},
        )
        if operators:
            self.state_bytes = state.state_bytes
        return state

    def commit(self, checkpoint_id: int, state: PipelineState | None, pause: _Pauses) -> None:
        """Hand a checkpoint's outboxes to the sinks and commit them under its id (a sink
        skips an id it has committed before, so this also redoes an interrupted commit)."""
        outbox = state.outbox if state is not None else None
        if outbox is not None and outbox.num_rows:
            self.sink.write(outbox)
        pause("committing", checkpoint_id)
        self.sink.commit(checkpoint_id)
        if self.late_sink is not None:
            late = state.late_outbox if state is not None else None
            if late is not None and late.num_rows:
                self.late_sink.write(late)
            self.late_sink.commit(checkpoint_id)

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {
            "name": s.name,
            "sink": s.sink,
            "rows_in": s.rows_in,
            "rows_out": s.rows_out,
            "late_rows": s.late_rows,
            "watermark_ms": s.watermark_ms,
            "state_bytes": self.state_bytes,
        }

    def close(self) -> None:
        try:
            for feed in self.feeds:
                feed.source.close()
        finally:
            try:
                self.sink.close()
                if self.late_sink is not None:
                    self.late_sink.close()
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

    def lookup(self, step: LookupJoin) -> Any:
        """The dimension reader of a lookup join step (one per step, made on first use)."""
        found = self._lookups.get(id(step))
        if found is None:
            from fluvial.stream.ops.lookup import Lookup

            found = self._lookups[id(step)] = Lookup(step, self.context)
        return found

    def finished(self) -> bool:
        """Every source has produced everything (bounded sources, or ``until_idle``)."""
        return all(feed.source.finished() for feed in self.feeds)

    def poll(self, max_rows: int, timeout: float) -> int:
        """Read, process and emit one round of source batches; returns rows read."""
        rows = sum(feed.poll(max_rows, timeout) for feed in self.feeds)
        self.stats.rows_in += rows
        self.advance()
        return rows

    def side_output(self, op: Any) -> None:
        """The source rows *op* just dropped as late, to the late-events topic."""
        ids = getattr(op, "dropped_ids", None)
        if ids is None or self.batch is None or self.late_sink is None:
            return
        rows = self.batch.take(pa.array(ids, pa.int64()))
        physical = self.late_sink.schema
        self.late_outbox.append(rows.select(physical.names).cast(physical))

    def advance(self) -> None:
        """Move every watermark: inputs first, then the joins and chains reading them."""
        for node in self.order:
            wm = node.watermark()
            if isinstance(node, _JoinRun):
                if wm > node.wm or getattr(node.op, "eager", True):
                    node.advance(wm)
            else:
                node.advance(wm)
        wm = self.root.watermark()
        self.stats.watermark_ms = wm if wm > MIN_WATERMARK else None

    def finish(self) -> None:
        """End of bounded input: the watermark goes to +infinity; everything fires."""
        for feed in self.feeds:
            feed.floor = MAX_WATERMARK
        self.advance()


def late_table(pipeline: Pipeline) -> CreateTable:
    """The side output of a pipeline's late rows: the source's physical columns, in a topic
    (``'fluvial.late-events.topic'``), committed per checkpoint under its own state name."""
    assert isinstance(pipeline.scan, Scan) and pipeline.scan.late_topic
    source = pipeline.scan.table
    options = {
        "connector": "fluvial",
        "topic": pipeline.scan.late_topic,
        "sink.transactional-id-prefix": f"{pipeline.name}.late",
    }
    return CreateTable(f"{source.name}__late", source.physical, options)


def _py_step(pipeline: str, step: PyStep, table: pa.Table) -> pa.Table:
    """Run a dataflow API step; a wrong result type is an error naming the step."""
    out = step.fn(table)
    if isinstance(out, pa.RecordBatch):
        out = pa.Table.from_batches([out])
    if not isinstance(out, pa.Table):
        raise PipelineError(
            f"{pipeline}: step {step.name!r} must return a pyarrow.Table, "
            f"found {type(out).__name__}"
        )
    return out


# --------------------------------------------------------------------------- checkpoints


class _Pauses:
    """A test hook: ``FLUVIAL_STREAM_PAUSE="step=seconds,…"`` makes the runtime announce
    ``[pause] <step> <id>`` on stderr and sleep at that step, so kill-and-restart tests
    can hit a precise moment. Steps: ``poll`` (after a poll round), ``checkpointed``
    (checkpoint durable, sinks not committed), ``committing`` (a sink has its rows, its
    commit not yet called). Unset, a call is one dict lookup."""

    def __init__(self, spec: str) -> None:
        self.delays: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            step, _, seconds = item.partition("=")
            try:
                self.delays[step.strip()] = float(seconds)
            except ValueError as exc:
                raise PipelineError(
                    f"{PAUSE_ENV}: expected 'step=seconds,…', found {item!r}"
                ) from exc

    def __call__(self, step: str, checkpoint_id: int | None = None) -> None:
        delay = self.delays.get(step)
        if delay is None:
            return
        sys.stderr.write(f"[pause] {step} {checkpoint_id}\n")
        sys.stderr.flush()
        time.sleep(delay)


def _context(project: Project | None, start: str, until_idle: bool) -> ConnectorContext:
    names = {f.name for f in dataclasses.fields(ConnectorContext)}
    kwargs: dict[str, Any] = {"project": project, "start": start}
    if "until_idle" in names:
        kwargs["until_idle"] = until_idle
    return ConnectorContext(**kwargs)


def job_dir(project: Project, job_name: str) -> Path:
    """Where a job keeps its checkpoints and status: ``<data_dir>/stream/<job>``."""
    return project.data_dir / "stream" / job_name


def latest_checkpoint(project: Project, job_name: str) -> tuple[int, int] | None:
    """The newest checkpoint of a job: (id, epoch ms written), or None."""
    store = CheckpointStore(job_dir(project, job_name) / "checkpoints")
    latest = store.latest()
    if latest is None:
        return None
    return latest, int(store.meta(latest)["time_ms"])


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
    max_rows: int | None = None,
    poll_timeout: float = 0.05,
) -> JobResult:
    """Run *job* until every source is finished (``until_idle``) or *stop* is set.

    *start* is where sources without a checkpoint begin ("earliest" | "latest").
    Checkpoints go to *checkpoint_dir* (default ``<data_dir>/stream/<job>/checkpoints``
    when there is a project; none otherwise); ``from_checkpoint`` resumes from the newest.
    *max_rows* bounds a poll round (default ``'table.exec.mini-batch.size'`` or 65,536).

    Exactly-once: rows a pipeline emits wait in its *outbox*. A checkpoint (1) snapshots,
    between two poll rounds, every operator, source position, watermark and the outbox,
    durably and atomically, then (2) hands each outbox to its sink and commits the sink
    under the checkpoint's id. A restore loads the newest checkpoint and redoes (2) —
    sinks skip ids they committed — before processing resumes after its positions.
    """
    if start not in ("earliest", "latest"):
        raise PipelineError(f"start must be 'earliest' or 'latest', found {start!r}")
    if checkpoint_dir is None and project is not None:
        checkpoint_dir = job_dir(project, job.name) / "checkpoints"
    store = CheckpointStore(checkpoint_dir) if checkpoint_dir is not None else None
    status = StatusWriter(checkpoint_dir.parent, job.name) if checkpoint_dir is not None else None
    interval_ms = parse_duration_ms(job.settings.get(CHECKPOINT_KEY, str(DEFAULT_CHECKPOINT_MS)))
    if max_rows is None:
        max_rows = _mini_batch_size(job)
    pause = _Pauses(os.environ.get(PAUSE_ENV, ""))
    restored: Checkpoint | None = None
    if from_checkpoint:
        latest = store.latest() if store else None
        if latest is None or store is None:
            raise PipelineError(
                f"no checkpoint to resume job '{job.name}' from"
                + (f" in {checkpoint_dir}" if checkpoint_dir else " (no project)")
            )
        restored = store.read(latest)
    last_id = restored.id if restored is not None else None
    last_time = restored.time_ms if restored is not None else None
    context = _context(project, start, until_idle)
    runs: list[_PipelineRun] = []
    state = "failed"

    def report(now_state: str) -> None:
        if status is not None:
            checkpoint = None if last_id is None else {"id": last_id, "time_ms": last_time}
            status.write(now_state, [r.status() for r in runs], checkpoint)

    try:
        for p in job.pipelines:
            runs.append(_PipelineRun(p, context, _parallelism(job)))
        for run in runs:
            run.open(restored.pipelines.get(run.p.name) if restored else None, last_id)
        if restored is not None:
            # the newest checkpoint's commit may have been cut short: redo it (idempotent)
            for run in runs:
                saved = restored.pipelines.get(run.p.name)
                run.commit(restored.id, saved, pause)
        # ids keep increasing across runs of the job, so a sink never skips new rows as an
        # id it committed in an earlier run
        used = [last_id or 0, (store.latest() or 0) if store else 0]
        used += [int(getattr(r.sink, "last_committed", None) or 0) for r in runs]
        next_id = max(used) + 1
        last_checkpoint = last_progress = time.monotonic()
        report("running")

        def checkpoint() -> None:
            nonlocal next_id, last_id, last_time
            states = {r.p.name: r.snapshot(operators=store is not None) for r in runs}
            snapshot = Checkpoint(next_id, now_ms(), states)
            if store is not None:
                store.write(snapshot)
                pause("checkpointed", next_id)
                # the sinks get the rows as read back from the checkpoint, so a redo after
                # a crash hands them exactly the same tables (and files roll identically)
                snapshot = store.read(next_id)
            for r in runs:
                r.commit(next_id, snapshot.pipelines[r.p.name], pause)
            last_id, last_time, next_id = next_id, snapshot.time_ms, next_id + 1

        done = [False] * len(runs)
        while not all(done):
            if stop is not None and stop.is_set():
                break
            for k, run in enumerate(runs):
                if done[k]:
                    continue
                rows = run.poll(max_rows, poll_timeout)
                if until_idle and rows == 0 and run.finished():
                    run.finish()
                    done[k] = True
            pause("poll")
            now = time.monotonic()
            if interval_ms > 0 and (now - last_checkpoint) * 1000 >= interval_ms:
                checkpoint()
                last_checkpoint = now
                report("running")
            if now - last_progress >= progress_interval:
                if on_progress is not None:
                    on_progress([r.stats for r in runs])
                report("running")
                last_progress = now
        checkpoint()  # the end of the input, or a graceful stop: commit what was produced
        state = "finished" if all(done) else "stopped"
        if on_progress is not None:
            on_progress([r.stats for r in runs])
        return JobResult(tuple(r.stats for r in runs), last_id)
    finally:
        try:
            report(state)
        finally:
            for run in runs:
                run.close()


def _mini_batch_size(job: Job) -> int:
    value = job.settings.get(MINI_BATCH_KEY)
    if value is None:
        return DEFAULT_MAX_ROWS
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size <= 0:
        raise PipelineError(
            f"SET '{MINI_BATCH_KEY}': expected a positive row count, found {value!r}"
        )
    return size
