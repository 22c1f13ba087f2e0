"""The operator plan of a stream job: plain, frozen data that the runtime executes.

A :class:`Job` is a statement set: one :class:`Pipeline` per ``INSERT INTO``. A pipeline
is a linear chain (no joins yet): a :class:`Scan` of one source table, then
:class:`Calc` and :class:`WindowAgg` steps, then a :class:`SinkNode`. Every expression is
already DuckDB SQL text over a relation named ``batch`` (built once, at plan time), so
running a step is one query per micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from fluvial.stream.ops.spec import AggSpec, WindowSpec
from fluvial.stream.sql.ast import CreateTable

__all__ = [
    "BATCH",
    "Aggregate",
    "Calc",
    "Chain",
    "Dedup",
    "GroupAgg",
    "Job",
    "Join",
    "JoinSpec",
    "LookupJoin",
    "Pipeline",
    "PyStep",
    "PyWindow",
    "Scan",
    "SinkNode",
    "Source",
    "Step",
    "TopN",
    "Union",
    "WindowAgg",
    "WindowBuffer",
    "is_updating",
    "map_chains",
]

#: the name every step's SQL reads its input as
BATCH = "batch"


@dataclass(frozen=True)
class Scan:
    """Read a source table; add its computed columns and compute its watermark.

    ``computed_sql`` adds the computed columns (None when there are none);
    ``watermark_sql`` selects the per-row watermark candidate when the watermark is not
    the plain ``rowtime - delay`` (then ``watermark_delay_ms`` is used, vectorized).
    """

    table: CreateTable
    columns: tuple[str, ...]
    computed_sql: str | None = None
    rowtime: str | None = None
    watermark_delay_ms: int | None = None
    watermark_sql: str | None = None
    idle_timeout_ms: int | None = None
    #: ``pipeline.auto-watermark-interval`` = 0: every row is judged against the watermark
    #: of the rows before it (Flink's per-record watermarks), not the batch's
    row_watermarks: bool = False
    #: each row's watermark candidate (a ``wm`` column, before ``- delay``) when the rowtime
    #: is not a column of the raw batch (computed, or a custom WATERMARK expression)
    row_watermark_sql: str | None = None
    #: table option ``'fluvial.allowed-lateness'``: fired windows update on late rows
    allowed_lateness_ms: int = 0
    #: table option ``'fluvial.late-events.topic'``: rows dropped as late go there
    late_topic: str | None = None


@dataclass(frozen=True)
class Calc:
    """A stateless projection and filter: ``SELECT … FROM batch WHERE …``."""

    sql: str
    columns: tuple[str, ...]
    what: str = "Calc"  # a label for EXPLAIN
    detail: str = ""


@dataclass(frozen=True)
class WindowAgg:
    """An event-time window aggregation.

    ``pre`` computes, per input row, the time column, the group keys and the aggregate
    arguments / FILTER predicates (``_a0``, ``_f0``…); the operator groups by window and
    keys; ``post`` (the outer SELECT and HAVING) runs on the windows it emits.
    """

    spec: WindowSpec
    time_col: str
    keys: tuple[str, ...]
    aggs: tuple[AggSpec, ...]
    pre: Calc
    post: Calc
    #: with allowed lateness the output is a changelog (an ``_op`` column)
    allowed_lateness_ms: int = 0
    #: a processing-time window: it fires by the wall clock (and, as in Flink, windows
    #: still open when a bounded input ends are not emitted)
    proctime: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return self.post.columns


@dataclass(frozen=True)
class PyStep:
    """A stateless Python step of the dataflow API: ``fn`` maps a whole batch to a batch."""

    fn: Callable[[pa.Table], pa.Table]
    name: str = "PyStep"


@dataclass(frozen=True)
class PyWindow:
    """A window operator written in Python (the dataflow API's user aggregates).

    ``make_operator()`` returns a fresh operator with the window operators' interface
    (``process(table, watermark) -> late rows``, ``advance(watermark)``, ``flush()``,
    ``snapshot() -> bytes``, ``restore(bytes)``); its output goes on to the next step.
    """

    make_operator: Callable[[], Any]
    name: str = "PyWindow"


@dataclass(frozen=True)
class GroupAgg:
    """An unbounded GROUP BY (no window): an updating result (a changelog with ``_op``).

    ``pre`` computes the keys and aggregate arguments per row, ``post`` the outer SELECT
    and HAVING on the changed results; ``ttl_ms`` is ``table.exec.state.ttl``.
    """

    keys: tuple[str, ...]
    aggs: tuple[AggSpec, ...]
    pre: Calc
    post: Calc
    ttl_ms: int = 0
    #: the input is itself updating: retractions subtract (COUNT, SUM, AVG)
    retract: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return self.post.columns


@dataclass(frozen=True)
class Dedup:
    """Keep the first (or, ``keep_last``, the last) row per key by event time: updating."""

    keys: tuple[str, ...]
    time_col: str
    keep_last: bool


@dataclass(frozen=True)
class TopN:
    """The first *n* rows per key by ``order`` ((column, descending, nulls first)…), with
    their rank in ``rank_col``: updating (a rank's row changes as rows arrive)."""

    keys: tuple[str, ...]
    order: tuple[tuple[str, bool, bool], ...]
    n: int
    rank_col: str


@dataclass(frozen=True)
class WindowBuffer:
    """Hold a window TVF's rows (with their window columns) until their window fires."""

    spec: WindowSpec
    time_col: str
    #: the input columns (the TVF's, window columns included)
    columns: tuple[str, ...]


@dataclass(frozen=True)
class LookupJoin:
    """``JOIN dim FOR SYSTEM_TIME AS OF s.proc_time``: each batch joined with the
    dimension table as it is when the batch is processed (a file, a store or a lake
    table); stateless, append-only."""

    dim: CreateTable
    how: str  # "inner" | "left"
    #: the condition over ``l`` (the stream's rows) and ``r`` (the dimension's)
    on_sql: str
    select_sql: str
    columns: tuple[str, ...]
    #: (stream column, dimension column) equality pairs (point lookups in a store)
    keys: tuple[tuple[str, str], ...]
    detail: str = ""


#: steps with a ``pre`` and a ``post`` query around a stateful aggregate
Aggregate = WindowAgg | GroupAgg
Step = Calc | WindowAgg | GroupAgg | Dedup | TopN | WindowBuffer | LookupJoin | PyStep | PyWindow


def map_chains(source: Source, fn: Callable[[Chain], Chain]) -> Source:
    """*source* with *fn* applied to every chain below it (joins' and unions' inputs),
    deepest first."""
    if isinstance(source, Join):
        left = fn(Chain(map_chains(source.left.source, fn), source.left.steps))
        right = fn(Chain(map_chains(source.right.source, fn), source.right.steps))
        return Join(left, right, source.spec)
    if isinstance(source, Union):
        inputs = tuple(fn(Chain(map_chains(c.source, fn), c.steps)) for c in source.inputs)
        return Union(inputs, source.columns)
    return source


def is_updating(step: object) -> bool:
    """Whether *step* emits updates (a changelog) rather than appends only."""
    if isinstance(step, GroupAgg | Dedup | TopN):
        return True
    return isinstance(step, WindowAgg) and step.allowed_lateness_ms > 0


@dataclass(frozen=True)
class Chain:
    """A sub-plan: a source (a table scan, a join or a union) and the steps after it."""

    source: Scan | Join | Union
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True)
class JoinSpec:
    """How a join matches and what it outputs (SQL over ``l`` and ``r``, for DuckDB)."""

    kind: str  # "window" | "interval" | "regular"
    how: str  # "inner" | "left" | "right" | "full"
    #: the ON condition over ``l."col"`` and ``r."col"``
    on_sql: str
    #: the output projection: ``l."a" AS "a", r."a" AS "a0"``…
    select_sql: str
    columns: tuple[str, ...]
    #: window join: each side's window_end column
    window_end: tuple[str, str] = ("window_end", "window_end")
    #: interval join: each side's time column, and ``lower <= l.t - r.t <= upper`` (ms)
    left_time: str | None = None
    right_time: str | None = None
    lower_ms: int = 0
    upper_ms: int = 0
    #: regular join: ``table.exec.state.ttl``
    ttl_ms: int = 0
    detail: str = ""
    #: the two inputs' column names (an outer join pads a side it has not seen yet)
    input_columns: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())


@dataclass(frozen=True)
class Join:
    """Two inputs joined (see :mod:`fluvial.stream.ops.join`)."""

    left: Chain
    right: Chain
    spec: JoinSpec


@dataclass(frozen=True)
class Union:
    """``UNION ALL``: the inputs' rows, in arrival order; the watermark is their minimum."""

    inputs: tuple[Chain, ...]
    columns: tuple[str, ...]


Source = Scan | Join | Union


@dataclass(frozen=True)
class SinkNode:
    """Write to a sink table: output columns map to the table's columns by position."""

    table: CreateTable
    #: the sink's physical columns written, in the order of the query's output columns
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Pipeline:
    """One ``INSERT INTO``: a source, its steps, a sink."""

    name: str
    #: the root chain's source: a table scan, or a join / union of sub-plans
    scan: Source
    steps: tuple[Step, ...]
    sink: SinkNode
    line: int | None = None
    #: hidden columns the scan adds and the steps carry to the first window operator
    #: (``__wm`` per-row watermarks, ``__rid`` row ids for the late-events side output)
    carry: tuple[str, ...] = ()
    #: the pipeline emits updates (an ``_op`` changelog column), not appends only
    updating: bool = False


@dataclass(frozen=True)
class Job:
    """A pipeline file, planned: its pipelines and its ``SET`` options."""

    name: str
    pipelines: tuple[Pipeline, ...]
    settings: dict[str, str] = field(default_factory=dict)
