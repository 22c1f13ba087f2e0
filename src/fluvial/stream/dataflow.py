"""The Python dataflow API: stream pipelines for what SQL cannot say.

A :class:`Stream` is an immutable description of a pipeline over Arrow micro-batches;
every method returns a new Stream. Functions see whole batches (``pa.Table``), never
single events. ``run()`` plans a :class:`~fluvial.stream.plan.nodes.Job` and hands it to
:func:`~fluvial.stream.runtime.run_job`, so watermarks, windows, checkpoints and
exactly-once sinks are exactly those of SQL pipelines.

>>> import pyarrow.compute as pc
>>> s = Stream.from_sql(
...     "CREATE TABLE clicks (page STRING, amount INT, ts TIMESTAMP(3), "
...     "WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) "
...     "WITH ('connector' = 'filesystem', 'path' = 'in', 'format' = 'json')"
... )
>>> agg = (
...     s.where("amount > 0")
...     .filter(lambda t: pc.starts_with(t["page"], "/p"))
...     .key_by("page")
...     .window(WindowSpec.tumble(60_000))
...     .aggregate(n=count(), total=sum_("amount"))
... )
>>> agg.columns
('window_start', 'window_end', 'window_time', 'page', 'n', 'total')

User aggregates implement :class:`UserAggregate` (``initialize`` / ``accumulate`` /
``merge`` / ``result``); ``accumulate`` gets all rows of one (window slice, key) group of
a batch at once. Their state is pickled into checkpoints (user state only; the engine's
own operators snapshot Arrow IPC), so it must be picklable and a checkpoint is only as
portable as the classes it names.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import polars as pl
import pyarrow as pa

from fluvial.errors import PipelineError, UsageError
from fluvial.stream.ops.assign import epoch_ms, last_window_end, slice_size, validate_spec
from fluvial.stream.ops.assign import window_columns as _window_columns
from fluvial.stream.ops.spec import AggFunc, AggSpec, WindowSpec
from fluvial.stream.plan.nodes import (
    BATCH,
    Calc,
    Job,
    Pipeline,
    PyStep,
    PyWindow,
    Scan,
    SinkNode,
    Step,
    WindowAgg,
)
from fluvial.stream.sql import parse_query, parse_script, to_duckdb
from fluvial.stream.sql.ast import CreateTable

if TYPE_CHECKING:
    from pathlib import Path
    from threading import Event

    from fluvial.project import Project
    from fluvial.stream.runtime import JobResult

__all__ = [
    "Agg",
    "Dataflow",
    "KeyedStream",
    "Stream",
    "UserAggregate",
    "UserWindowOperator",
    "WindowSpec",
    "WindowedStream",
    "avg",
    "count",
    "count_distinct",
    "max_",
    "min_",
    "sum_",
]

WINDOW_COLUMNS = ("window_start", "window_end", "window_time")


# --------------------------------------------------------------------------- aggregates


@dataclass(frozen=True)
class Agg:
    """A built-in aggregate of :meth:`WindowedStream.aggregate`: a function and its
    argument (a column name or a Flink SQL expression; None for ``count()``)."""

    func: AggFunc
    arg: str | None = None


def count(arg: str | None = None) -> Agg:
    """``COUNT(*)`` without an argument, ``COUNT(arg)`` (non-NULL values) with one."""
    return Agg("count_star") if arg is None else Agg("count", arg)


def count_distinct(arg: str) -> Agg:
    """``COUNT(DISTINCT arg)``."""
    return Agg("count_distinct", arg)


def sum_(arg: str) -> Agg:
    """``SUM(arg)``."""
    return Agg("sum", arg)


def min_(arg: str) -> Agg:
    """``MIN(arg)``."""
    return Agg("min", arg)


def max_(arg: str) -> Agg:
    """``MAX(arg)``."""
    return Agg("max", arg)


def avg(arg: str) -> Agg:
    """``AVG(arg)``."""
    return Agg("avg", arg)


@runtime_checkable
class UserAggregate(Protocol):
    """A user aggregate function (vectorized: ``accumulate`` gets many rows at once).

    ``merge(a, b)`` may modify and return ``a`` but must not modify ``b`` (a slice's
    state is merged into every HOP/CUMULATE window containing it). ``result`` returns a
    scalar (one column named after the aggregate) or a dict (one column per key).
    """

    def initialize(self) -> Any: ...

    def accumulate(self, state: Any, batch: pa.Table) -> Any: ...

    def merge(self, a: Any, b: Any) -> Any: ...

    def result(self, state: Any) -> Any: ...


# --------------------------------------------------------------------------- SQL helpers


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _expressions(texts: Sequence[str], where: str | None = None) -> tuple[str, tuple[str, ...]]:
    """Flink SQL select items (and a filter) as DuckDB SQL over ``batch``, and the output
    names — built by the SQL planner's own helpers, so they match a SQL ``SELECT``."""
    from fluvial.stream.plan.build import output_name, select_sql

    query = f"SELECT {', '.join(texts)} FROM {BATCH}"
    if where is not None:
        query += f" WHERE {where}"
    tree = parse_query(query)
    items = list(tree.expressions)
    names = tuple(output_name(e, i) for i, e in enumerate(items))
    if len(set(names)) != len(names):
        raise UsageError(f"select: duplicate output columns {list(names)}; give them aliases")
    cond = tree.args.get("where")
    return select_sql(items, names, cond.this if cond is not None else None), names


def _flink_quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _one_table(ddl: str | CreateTable, what: str) -> CreateTable:
    if isinstance(ddl, CreateTable):
        return ddl
    tables = list(parse_script(ddl, source=f"<{what}>").tables.values())
    if len(tables) != 1:
        raise UsageError(f"{what}: expected one CREATE TABLE statement, found {len(tables)}")
    return tables[0]


def _scan(table: CreateTable) -> Scan:
    """Plan a source table exactly as the SQL planner does (computed columns, watermark)."""
    # the planner's scan step is the one place computed columns and watermarks are
    # translated; going through it keeps the two APIs' sources identical
    from fluvial.stream.plan.build import plan_scan

    return plan_scan(table)


def _flink_type(t: pa.DataType) -> str:
    simple = {
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.int32(): "INT",
        pa.int64(): "BIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.string(): "STRING",
        pa.large_string(): "STRING",
        pa.bool_(): "BOOLEAN",
        pa.date32(): "DATE",
        pa.binary(): "BYTES",
    }
    if t in simple:
        return simple[t]
    if pa.types.is_timestamp(t):
        return "TIMESTAMP_LTZ(3)" if t.tz else "TIMESTAMP(3)"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision}, {t.scale})"
    raise UsageError(f"Stream.from_topic: no Flink SQL type for a column of Arrow type {t}")


# --------------------------------------------------------------------------- streams


@dataclass(frozen=True)
class Stream:
    """A pipeline under construction: a source, then steps; methods return new Streams.

    ``columns`` is the output columns when known (None after a Python ``map``);
    ``rowtime`` is the event-time column windows use by default.
    """

    source: Scan
    steps: tuple[Step, ...] = ()
    columns: tuple[str, ...] | None = None
    rowtime: str | None = None
    settings: Mapping[str, str] | None = None

    # sources -----------------------------------------------------------------------------
    @classmethod
    def from_sql(cls, ddl: str | CreateTable) -> Stream:
        """A stream reading the table of a Flink SQL ``CREATE TABLE`` statement (its
        ``SET`` statements, if any, become job settings)."""
        settings: dict[str, str] = {}
        if isinstance(ddl, str):
            script = parse_script(ddl, source="<Stream.from_sql>")
            settings = dict(script.settings)
            table = _one_table(ddl, "Stream.from_sql")
        else:
            table = ddl
        scan = _scan(table)
        return cls(scan, (), scan.columns, scan.rowtime, settings)

    @classmethod
    def from_topic(
        cls,
        project: Project,
        topic: str,
        time_col: str,
        watermark_delay_ms: int = 0,
        startup: str = "earliest-offset",
    ) -> Stream:
        """A stream over a Fluvial topic, its columns from the topic's schema."""
        with project.open_log() as log:
            info = log.topic(topic)
        if info.schema is None:
            raise UsageError(f"topic '{topic}' has no schema yet (nothing was appended)")
        if time_col not in info.schema.names:
            raise UsageError(
                f"topic '{topic}' has no time column '{time_col}'; found {info.schema.names}"
            )
        q = _flink_quote
        cols = [f"{q(f.name)} {_flink_type(f.type)}" for f in info.schema]
        delay = f"INTERVAL '{watermark_delay_ms / 1000:g}' SECOND"
        ddl = (
            f"CREATE TABLE {q(topic)} ({', '.join(cols)}, "
            f"WATERMARK FOR {q(time_col)} AS {q(time_col)} - {delay}) "
            f"WITH ('connector' = 'fluvial', 'topic' = '{topic}', "
            f"'scan.startup.mode' = '{startup}')"
        )
        return cls.from_sql(ddl)

    # stateless steps ---------------------------------------------------------------------
    def _then(self, step: Step, columns: tuple[str, ...] | None, rowtime: str | None) -> Stream:
        return replace(self, steps=(*self.steps, step), columns=columns, rowtime=rowtime)

    def map(self, fn: Callable[[pa.Table], pa.Table], name: str | None = None) -> Stream:
        """Apply ``fn`` to every micro-batch (a ``pa.Table`` in, a ``pa.Table`` out).

        The event-time column is assumed to keep its name; pass ``time_col`` to
        :meth:`window` otherwise.
        """
        return self._then(
            PyStep(fn, name or str(getattr(fn, "__name__", "map"))), None, self.rowtime
        )

    def filter(
        self, fn: Callable[[pa.Table], pa.Array | pa.ChunkedArray], name: str | None = None
    ) -> Stream:
        """Keep the rows where ``fn(batch)`` (a boolean array, one value per row) is true
        (NULL counts as false, as in SQL)."""
        label = name or str(getattr(fn, "__name__", "filter"))

        def keep(table: pa.Table) -> pa.Table:
            mask = fn(table)
            if not isinstance(mask, pa.Array | pa.ChunkedArray) or not pa.types.is_boolean(
                mask.type
            ):
                found = getattr(mask, "type", type(mask).__name__)
                raise PipelineError(f"filter {label!r} must return a boolean array, found {found}")
            if len(mask) != table.num_rows:
                raise PipelineError(
                    f"filter {label!r} returned {len(mask)} values for {table.num_rows} rows"
                )
            return table.filter(mask, null_selection_behavior="drop")

        return self._then(PyStep(keep, label), self.columns, self.rowtime)

    def select(self, *expressions: str) -> Stream:
        """Project with Flink SQL expressions (``"UPPER(page) AS page"``), run by DuckDB."""
        if not expressions:
            raise UsageError("select: expected at least one expression")
        sql, names = _expressions(expressions)
        rowtime = self.rowtime if self.rowtime in names else None
        calc = Calc(sql, names, "Calc", f"select=[{', '.join(expressions)}]")
        return self._then(calc, names, rowtime)

    def where(self, condition: str) -> Stream:
        """Keep rows matching a Flink SQL condition (``"amount > 10"``), run by DuckDB."""
        tree = parse_query(f"SELECT * FROM {BATCH} WHERE {condition}")
        sql = f"SELECT * FROM {BATCH} WHERE {to_duckdb(tree.args['where'].this)}"
        calc = Calc(sql, self.columns or (), "Calc", f"where=[{condition}]")
        return self._then(calc, self.columns, self.rowtime)

    # windows -----------------------------------------------------------------------------
    def key_by(self, *columns: str) -> KeyedStream:
        """Group by these columns in the window that follows."""
        if self.columns is not None:
            missing = [c for c in columns if c not in self.columns]
            if missing:
                raise UsageError(f"key_by: no columns {missing}; found {list(self.columns)}")
        if len(set(columns)) != len(columns):
            raise UsageError(f"key_by: keys must be distinct, found {list(columns)}")
        return KeyedStream(self, tuple(columns))

    def window(self, spec: WindowSpec, time_col: str | None = None) -> WindowedStream:
        """Window the whole stream (no keys); see :meth:`KeyedStream.window`."""
        return KeyedStream(self, ()).window(spec, time_col)

    # sinks and running -------------------------------------------------------------------
    def to(self, sink: str | CreateTable) -> Dataflow:
        """Write to a sink table (DDL or a parsed ``CreateTable``), columns by position."""
        table = _one_table(sink, "Stream.to")
        targets = tuple(c.name for c in table.physical)
        if self.columns is not None and len(self.columns) != len(targets):
            raise UsageError(
                f"Stream.to({table.name}): the stream has {len(self.columns)} columns "
                f"({', '.join(self.columns)}) but the sink expects {len(targets)} "
                f"({', '.join(targets)})"
            )
        return Dataflow(self, SinkNode(table, targets))


@dataclass(frozen=True)
class KeyedStream:
    """A stream with group keys, waiting for its window."""

    stream: Stream
    keys: tuple[str, ...]

    def window(self, spec: WindowSpec, time_col: str | None = None) -> WindowedStream:
        """Event-time windows over ``time_col`` (default: the source's rowtime)."""
        validate_spec(spec)
        time_col = time_col or self.stream.rowtime
        if time_col is None:
            raise UsageError(
                "window: the stream has no event-time column; declare a WATERMARK in the "
                "source table or pass time_col="
            )
        if spec.kind == "session" and not spec.partition_by:
            spec = replace(spec, partition_by=self.keys)
        return WindowedStream(self.stream, self.keys, spec, time_col)


@dataclass(frozen=True)
class WindowedStream:
    """Keyed windows, waiting for their aggregation; output columns are
    ``window_start, window_end, window_time, *keys, *aggregates``."""

    stream: Stream
    keys: tuple[str, ...]
    spec: WindowSpec
    time_col: str

    def _out(self, names: Sequence[str]) -> tuple[str, ...]:
        out = (*WINDOW_COLUMNS, *self.keys, *names)
        dup = sorted({c for c in out if out.count(c) > 1})
        if dup:
            raise UsageError(f"aggregate: output columns {dup} clash with window columns or keys")
        return out

    def aggregate(self, **aggs: Agg) -> Stream:
        """Built-in aggregates (``n=count(), total=sum_("amount")``), the same operator
        as SQL's windowed GROUP BY."""
        if not aggs:
            raise UsageError("aggregate: expected at least one name=aggregate")
        specs: list[AggSpec] = []
        items = [_flink_quote(self.time_col), *(_flink_quote(k) for k in self.keys)]
        for i, (name, agg) in enumerate(aggs.items()):
            if not isinstance(agg, Agg):
                raise UsageError(
                    f"aggregate: {name}= expected count()/sum_()/…, found {type(agg).__name__}"
                )
            arg = None
            if agg.arg is not None:
                arg = f"__a{i}"
                items.append(f"{agg.arg} AS {_flink_quote(arg)}")
            specs.append(AggSpec(name, agg.func, arg))
        out = self._out(list(aggs))
        pre_sql, pre_names = _expressions(items)
        pre = Calc(pre_sql, pre_names, "Calc", "dataflow pre-aggregation")
        post_sql = f"SELECT {', '.join(_quote(c) for c in out)} FROM {BATCH}"
        post = Calc(post_sql, out, "Calc", "dataflow window output")
        step = WindowAgg(self.spec, self.time_col, self.keys, tuple(specs), pre, post)
        return self.stream._then(step, out, "window_time")

    def reduce(self, aggregate: UserAggregate, name: str = "value") -> Stream:
        """A user aggregate per (window, keys): ``result`` gives column ``name`` (a scalar)
        or one column per key of the dict it returns."""
        if not isinstance(aggregate, UserAggregate):
            raise UsageError(
                "reduce: expected an object with initialize/accumulate/merge/result, "
                f"found {type(aggregate).__name__}"
            )
        if self.spec.kind == "session":
            raise UsageError("reduce: SESSION windows are not supported for user aggregates yet")
        spec, time_col, keys = self.spec, self.time_col, self.keys

        def make() -> UserWindowOperator:
            return UserWindowOperator(spec, time_col, keys, aggregate, name)

        label = f"{type(aggregate).__name__} over {spec.kind}"
        return self.stream._then(PyWindow(make, label), None, "window_time")


@dataclass(frozen=True)
class Dataflow:
    """A complete pipeline: a stream and its sink; :meth:`run` runs it."""

    stream: Stream
    node: SinkNode

    def job(self, name: str = "dataflow", settings: Mapping[str, str] | None = None) -> Job:
        """The plan :func:`~fluvial.stream.runtime.run_job` runs."""
        s = self.stream
        merged = {**(s.settings or {}), **(settings or {})}
        pipeline = Pipeline(f"{name}.0", s.source, s.steps, self.node)
        return Job(name, (pipeline,), merged)

    def run(
        self,
        project: Project | None = None,
        *,
        name: str = "dataflow",
        until_idle: bool = True,
        from_checkpoint: bool = False,
        checkpoint_dir: Path | None = None,
        settings: Mapping[str, str] | None = None,
        stop: Event | None = None,
        max_rows: int | None = None,
    ) -> JobResult:
        """Run the pipeline with the SQL runtime (same watermarks, checkpoints, sinks)."""
        from fluvial.stream.runtime import run_job

        return run_job(
            self.job(name, settings),
            project=project,
            until_idle=until_idle,
            from_checkpoint=from_checkpoint,
            checkpoint_dir=checkpoint_dir,
            stop=stop,
            max_rows=max_rows,
        )


# --------------------------------------------------------------------------- the operator


class UserWindowOperator:
    """TUMBLE / HOP / CUMULATE windows of a :class:`UserAggregate`, keyed.

    Rows are assigned to slices (as the built-in window operator does: the window for
    TUMBLE, ``gcd(size, slide)`` panes for HOP, steps for CUMULATE) and grouped per
    (slice, keys) with one Polars ``group_by`` per batch; ``accumulate`` then runs once
    per group — a Python call per group and batch is inherent to a Python aggregate, a
    call per event never happens. A firing window merges its slices' states. Late rows
    follow Flink's slicing rule (dropped once the last window containing them fired).
    The state, a dict ``(slice_end, keys) -> user state``, is pickled into checkpoints.
    """

    def __init__(
        self,
        spec: WindowSpec,
        time_col: str,
        keys: Sequence[str],
        aggregate: UserAggregate,
        name: str = "value",
    ) -> None:
        validate_spec(spec)
        if spec.kind == "session":
            raise PipelineError("user aggregates do not support SESSION windows yet")
        self.spec, self.time_col, self.keys = spec, time_col, tuple(keys)
        self.agg, self.name = aggregate, name
        self._slice = slice_size(spec)
        self.state: dict[tuple[int, tuple[Any, ...]], Any] = {}
        self.late_rows = 0
        self._fired: int | None = None
        self._schema: pa.Schema | None = None  # time and key columns' types

    def process(self, table: pa.Table, watermark_ms: int | None) -> int:
        """Accumulate a batch; return the rows dropped as late."""
        if table.num_rows == 0:
            return 0
        missing = [c for c in (self.time_col, *self.keys) if c not in table.column_names]
        if missing:
            raise PipelineError(
                f"user window aggregate: the input lacks columns {missing}; "
                f"found {table.column_names}"
            )
        if self._schema is None:
            self._schema = pa.schema([table.schema.field(c) for c in (self.time_col, *self.keys)])
        spec = self.spec
        t = epoch_ms(table, self.time_col)
        wm = watermark_ms
        if self._fired is not None:
            wm = self._fired if wm is None else max(wm, self._fired)
        dropped = 0
        if wm is not None:
            on_time = last_window_end(spec, t) - 1 > wm
            dropped = int(len(t) - np.count_nonzero(on_time))
            if dropped:
                table, t = table.filter(pa.array(on_time)), t[on_time]
                self.late_rows += dropped
        if table.num_rows == 0:
            return dropped
        slice_end = np.floor_divide(t - spec.offset_ms, self._slice) * self._slice
        slice_end += spec.offset_ms + self._slice
        frame = pl.DataFrame({"__se": slice_end, "__row": np.arange(len(t), dtype=np.int64)})
        if self.keys:
            keys = pl.from_arrow(table.select(list(self.keys)))
            assert isinstance(keys, pl.DataFrame)
            frame = frame.hstack(keys)
        groups = frame.group_by(["__se", *self.keys], maintain_order=True).agg(pl.col("__row"))
        for row in groups.iter_rows():
            # one user call per (slice, keys) group of this batch: inherent to Python code
            key = (int(row[0]), tuple(row[1:-1]))
            rows = table.take(pa.array(row[-1], pa.int64()))
            state = self.state.get(key)
            self.state[key] = self.agg.accumulate(
                self.agg.initialize() if state is None else state, rows
            )
        return dropped

    def advance(self, watermark_ms: int) -> pa.Table:
        """Emit every window with ``window_end - 1 <= watermark_ms``; forget spent slices."""
        return self._fire(int(watermark_ms))

    def flush(self) -> pa.Table:
        """End of input: emit every window left."""
        return self._fire(None)

    def _windows_of(self, slice_end: int) -> list[tuple[int, int]]:
        """(start, end) of every window containing the slice ending at ``slice_end``."""
        spec = self.spec
        if spec.kind == "tumble":
            return [(slice_end - spec.size_ms, slice_end)]
        last_end = int(last_window_end(spec, np.array([slice_end - 1]))[0])
        if spec.kind == "hop":
            stride = spec.slide_ms
            first = last_end - ((last_end - slice_end) // stride) * stride
            return [(e - spec.size_ms, e) for e in range(first, last_end + 1, stride)]
        start = last_end - spec.size_ms  # cumulate: every step end from this slice on
        return [(start, e) for e in range(slice_end, last_end + 1, spec.step_ms)]

    def _fire(self, watermark: int | None) -> pa.Table:
        lower = -(2**63) if self._fired is None else self._fired
        upper = 2**63 - 1 if watermark is None else watermark
        windows: dict[tuple[int, int, tuple[Any, ...]], Any] = {}
        for (slice_end, key), state in self.state.items():
            for start, end in self._windows_of(slice_end):
                if lower < end - 1 <= upper:
                    acc = windows.get((start, end, key))
                    base = self.agg.initialize() if acc is None else acc
                    windows[(start, end, key)] = self.agg.merge(base, state)
        if watermark is None:
            self.state = {}
        else:
            spent = [
                k
                for k in self.state
                if int(last_window_end(self.spec, np.array([k[0] - 1]))[0]) - 1 <= watermark
            ]
            for k in spent:
                del self.state[k]
            self._fired = watermark if self._fired is None else max(self._fired, watermark)
        return self._output(windows)

    def _output(self, windows: dict[tuple[int, int, tuple[Any, ...]], Any]) -> pa.Table:
        order = sorted(windows, key=lambda w: (w[1], w[0]))  # by end, then start, stable
        starts = np.array([w[0] for w in order], dtype=np.int64)
        ends = np.array([w[1] for w in order], dtype=np.int64)
        schema = self._schema
        time_type = schema.field(self.time_col).type if schema else pa.timestamp("ms")
        arrays: list[pa.Array] = list(_window_columns(starts, ends, time_type))
        names = list(WINDOW_COLUMNS)
        for j, k in enumerate(self.keys):
            key_type = schema.field(k).type if schema else pa.null()
            arrays.append(pa.array([w[2][j] for w in order], key_type))
            names.append(k)
        results = [self.agg.result(windows[w]) for w in order]
        if results and isinstance(results[0], dict):
            for field in results[0]:
                arrays.append(pa.array([r[field] for r in results]))
                names.append(field)
        else:
            arrays.append(pa.array(results))
            names.append(self.name)
        return pa.Table.from_arrays(arrays, names)

    def snapshot(self) -> bytes:
        """The state for a checkpoint: pickled (user aggregate states are Python objects)."""
        schema = self._schema.serialize().to_pybytes() if self._schema is not None else None
        payload = {"fired": self._fired, "late_rows": self.late_rows, "schema": schema}
        payload["state"] = self.state
        return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's."""
        try:
            payload = pickle.loads(data)  # our own checkpoint files (user state)
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise PipelineError(f"not a user window operator snapshot: {exc}") from exc
        self._fired, self.late_rows = payload["fired"], int(payload["late_rows"])
        schema = payload["schema"]
        self._schema = pa.ipc.read_schema(pa.py_buffer(schema)) if schema else None
        self.state = payload["state"]
