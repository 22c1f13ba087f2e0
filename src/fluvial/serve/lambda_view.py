"""The Lambda serving view: a metric over any time range, batch result first, speed after.

A *metric* is one result computed twice over the same events: by a stream pipeline into
a table of the operational store (the speed layer) and by a batch model into a lake or
warehouse table (the batch layer), both with one row per period (a time column holding
the period's start), optional dimension columns and value columns. Metrics are declared
in the project's ``metrics.toml``::

    [[metric]]
    name = "page_views_per_minute"
    speed_table = "page_views_per_minute"          # store table the pipeline upserts
    batch_table = "curated.page_views_per_minute"  # lake table (or a warehouse table)
    time_column = "window_start"
    period = "1 min"
    dimensions = ["url"]
    values = ["views", "visitors"]
    pipeline = "page_views"                        # pipelines/page_views.sql (optional)
    source = "raw.events"                          # the master dataset (default)
    source_time_column = "event_time"              # (default)

**Batch coverage.** Every batch commit records the upstream snapshots it read
(:mod:`fluvial.batch.targets`); following them from the batch table down to ``source``
gives the snapshot of the master dataset the last successful batch run covered, and its
largest event time *T*. With the pipeline's lateness *L* (its source's watermark delay,
or ``lateness``) the batch watermark is ``T - L``, and every period that ends at or
before it is *closed*: the batch saw all of its events that were not late.
:func:`batch_coverage` returns the *boundary*, the start of the first period that is not
closed. A batch table without recorded positions falls back to its newest period
(treated as incomplete).

**The view.** :func:`lambda_view` returns batch rows for periods before the boundary and
speed rows from it on — each period from exactly one layer, so nothing is counted twice —
and a ``layer`` column saying which. The speed table is resolved through the stream
versions registry (:func:`fluvial.stream.versions.current_table`), so a replayed pipeline
serves its current version.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from fluvial.errors import ConfigError, NotFoundError, SchemaError, SqlError, did_you_mean

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from fluvial.lake.catalog import Lake
    from fluvial.project import Project

__all__ = [
    "METRICS_FILE",
    "BatchCoverage",
    "LambdaView",
    "Metric",
    "PipelineInfo",
    "batch_coverage",
    "batch_rows",
    "boundary_of",
    "get_metric",
    "lambda_view",
    "load_metrics",
    "pipeline_info",
    "speed_rows",
    "to_ms",
]

METRICS_FILE = "metrics.toml"
LAYER = "layer"
MS = pa.timestamp("ms")


def _duration_ms(text: str) -> int:
    from fluvial.stream.plan.build import parse_duration_ms  # one grammar for durations

    return int(parse_duration_ms(text))


class Metric(BaseModel):
    """One metric served by both layers (see the module docstring).

    >>> m = Metric(name="pv", speed_table="pv", batch_table="curated.pv",
    ...            time_column="window_start", period="1 min", values=["views"])
    >>> m.period_ms, m.key
    (60000, ('window_start',))
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    speed_table: str
    batch_table: str
    time_column: str
    period: str
    values: tuple[str, ...] = Field(min_length=1)
    dimensions: tuple[str, ...] = ()
    pipeline: str | None = None
    source: str = "raw.events"
    source_time_column: str = "event_time"
    lateness: str | None = None

    @field_validator("period", "lateness")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                _duration_ms(value)
            except SqlError as exc:
                raise ValueError(exc.detail) from exc
        return value

    @property
    def period_ms(self) -> int:
        """The period's length in milliseconds."""
        return _duration_ms(self.period)

    @property
    def key(self) -> tuple[str, ...]:
        """The columns that identify a row: the time column, then the dimensions."""
        return (self.time_column, *self.dimensions)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column of the metric, key first."""
        return (*self.key, *self.values)


def load_metrics(project: Project) -> dict[str, Metric]:
    """The metrics of ``metrics.toml`` by name (none when the file does not exist).

    Raises:
        ConfigError: the file is not valid TOML or a metric is invalid.
    """
    path = project.root / METRICS_FILE
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    unknown = set(data) - {"metric"}
    if unknown:
        raise ConfigError(f"{path}: expected [[metric]] tables, found {', '.join(sorted(unknown))}")
    metrics: dict[str, Metric] = {}
    for i, raw in enumerate(data.get("metric", [])):
        try:
            metric = Metric.model_validate(raw)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'metric'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ConfigError(f"{path}: metric #{i + 1}: {problems}") from exc
        if metric.name in metrics:
            raise ConfigError(f"{path}: metric '{metric.name}' is declared twice")
        metrics[metric.name] = metric
    return metrics


def get_metric(project: Project, name: str) -> Metric:
    """One declared metric; :class:`NotFoundError` with "did you mean …?" otherwise."""
    metrics = load_metrics(project)
    if name not in metrics:
        known = ", ".join(metrics) or f"none: declare them in {METRICS_FILE}"
        raise NotFoundError(
            f"there is no metric '{name}'{did_you_mean(name, metrics)} (metrics: {known})"
        )
    return metrics[name]


# --------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class PipelineInfo:
    """What the speed layer's pipeline says about lateness: its job (current version),
    watermark delay, and the late-events topic and time column when it has one."""

    name: str
    job: str
    lateness_ms: int
    late_topic: str | None
    rowtime: str | None


def _pipeline_file(project: Project, metric: Metric) -> Path | None:
    from fluvial.stream.sql import parse_script

    folder = project.root / "pipelines"
    if metric.pipeline is not None:
        path = folder / f"{metric.pipeline}.sql"
        if not path.is_file():
            raise NotFoundError(
                f"metric '{metric.name}': there is no pipeline file pipelines/{metric.pipeline}.sql"
            )
        return path
    for path in sorted(folder.glob("*.sql")) if folder.is_dir() else []:
        try:
            script = parse_script(path.read_text(encoding="utf-8"), source=str(path))
        except (OSError, UnicodeDecodeError, SqlError):
            continue
        targets = {i.table for i in script.inserts}
        for table in script.tables.values():
            opts = table.options
            if (
                table.name in targets
                and opts.get("connector") == "store"
                and opts.get("table") == metric.speed_table
            ):
                return path
    return None


def pipeline_info(project: Project, metric: Metric) -> PipelineInfo | None:
    """The pipeline writing *metric*'s speed table (``pipeline``, or the file in
    ``pipelines/`` whose store sink names the table), or None when there is none."""
    from fluvial.stream.sql import parse_script
    from fluvial.stream.versions import (
        LATE_TOPIC_OPTION,
        current_table,
        current_version,
        version_job_name,
    )

    path = _pipeline_file(project, metric)
    if path is None:
        return None
    script = parse_script(path.read_text(encoding="utf-8"), source=str(path))
    targets = {i.table for i in script.inserts}
    delay, late_topic, rowtime = 0, None, None
    for table in script.tables.values():
        if table.name in targets or table.watermark is None:
            continue
        delay = max(delay, table.watermark.delay_ms or 0)
        if late_topic is None and LATE_TOPIC_OPTION in table.options:
            late_topic = current_table(project, table.options[LATE_TOPIC_OPTION], "topic")
            rowtime = table.watermark.column
    if metric.lateness is not None:
        delay = _duration_ms(metric.lateness)
    job = version_job_name(path.stem, current_version(project, path.stem))
    return PipelineInfo(path.stem, job, delay, late_topic, rowtime)


# --------------------------------------------------------------------------- rows


def to_ms(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A timestamp column as naive UTC milliseconds (``timestamp[ms]``).

    Zoned timestamps hold UTC instants and naive ones (Flink's TIMESTAMP) UTC wall
    clock, so both become the same epoch values.

    >>> to_ms(pa.array([1_000_000], pa.timestamp("us", tz="UTC"))).to_pylist()
    [datetime.datetime(1970, 1, 1, 0, 0, 1)]
    """
    if not pa.types.is_timestamp(column.type):
        raise SchemaError(f"expected a timestamp column, found {column.type}")
    unit = pa.timestamp("ms", tz=column.type.tz)
    ms = pc.cast(column, unit, safe=False) if column.type != unit else column
    return pc.cast(pc.cast(ms, pa.int64()), MS)


def _shape(table: pa.Table, metric: Metric, where: str) -> pa.Table:
    """*table* with the metric's columns in order, the time column as ``timestamp[ms]``."""
    missing = [c for c in metric.columns if c not in table.column_names]
    if missing:
        hint = did_you_mean(missing[0], table.column_names)
        raise SchemaError(
            f"metric '{metric.name}': {where} has no column '{missing[0]}'{hint}; "
            f"its columns are {', '.join(table.column_names)}"
        )
    table = table.select(list(metric.columns))
    try:
        times = to_ms(table[metric.time_column])
    except SchemaError as exc:
        raise SchemaError(f"metric '{metric.name}': {where}.{metric.time_column}: {exc}") from exc
    return table.set_column(0, pa.field(metric.time_column, MS), times)


def _between(table: pa.Table, column: str, start_ms: int | None, end_ms: int | None) -> pa.Table:
    times = table[column].cast(pa.int64())
    mask = None
    if start_ms is not None:
        mask = pc.greater_equal(times, start_ms)
    if end_ms is not None:
        upper = pc.less(times, end_ms)
        mask = upper if mask is None else pc.and_(mask, upper)
    return table if mask is None else table.filter(mask)


def _naive(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).replace(tzinfo=None)


def speed_rows(
    project: Project, metric: Metric, start_ms: int | None = None, end_ms: int | None = None
) -> pa.Table:
    """The speed layer's rows of *metric* (its store table's current version) whose
    period starts in ``[start_ms, end_ms)`` (either bound optional)."""
    from fluvial.serve.store import open_store
    from fluvial.stream.versions import current_table

    name = current_table(project, metric.speed_table, "store")
    with open_store(project) as store:
        try:
            info = store.table(name)
        except NotFoundError:
            return _empty(metric)
        if info.key and info.key[0] == metric.time_column:  # a key range: read only those
            raw = store.scan(
                name,
                start=None if start_ms is None else _naive(start_ms),
                end=None if end_ms is None else _naive(end_ms),
            )
        else:
            raw = store.scan(name)
    return _between(
        _shape(raw, metric, f"store table '{name}'"), metric.time_column, start_ms, end_ms
    )


def _empty(metric: Metric) -> pa.Table:
    fields = [pa.field(metric.time_column, MS)]
    fields += [pa.field(c, pa.string()) for c in metric.dimensions]
    fields += [pa.field(c, pa.int64()) for c in metric.values]
    return pa.schema(fields).empty_table()


def _is_lake(name: str) -> bool:
    from fluvial.lake.zones import ZONES

    return name.partition(".")[0] in ZONES


def batch_rows(project: Project, metric: Metric) -> pa.Table:
    """Every row of *metric*'s batch table (empty before its first batch run)."""
    if _is_lake(metric.batch_table):
        from fluvial.lake.catalog import open_lake

        with open_lake(project) as lake:
            if not lake.exists(metric.batch_table):
                return _empty(metric)
            table = lake.table(metric.batch_table)
            if table.current_snapshot() is None:
                return _empty(metric)
            raw = table.scan(selected_fields=metric.columns).to_arrow()
        return _shape(raw, metric, f"lake table '{metric.batch_table}'")
    columns = ", ".join(_quote(c) for c in metric.columns)
    rows = _warehouse_query(project, f"SELECT {columns} FROM {_table_sql(metric.batch_table)}")
    if rows is None:
        return _empty(metric)
    return _shape(rows, metric, f"warehouse table '{metric.batch_table}'")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table_sql(name: str) -> str:
    return ".".join(_quote(p) for p in name.split(".", 1))


def _warehouse_query(project: Project, sql: str, params: Iterable[Any] = ()) -> pa.Table | None:
    """A read-only query of the warehouse file (None when it or the table is missing)."""
    import duckdb

    from fluvial.batch.warehouse import warehouse_path

    path = warehouse_path(project)
    if not path.is_file():
        return None
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise SqlError(f"cannot open the warehouse {path} to read: {exc}") from exc
    try:
        return con.execute(sql, list(params)).to_arrow_table()
    except duckdb.CatalogException:
        return None
    except duckdb.Error as exc:
        raise SqlError(f"reading the warehouse failed: {exc}") from exc
    finally:
        con.close()


# --------------------------------------------------------------------------- coverage


@dataclass(frozen=True)
class BatchCoverage:
    """What the last successful batch run covered.

    ``boundary_ms``: periods starting before it come from the batch layer (None: no batch
    result yet); ``source_snapshot`` and ``source_max_ms``: the master dataset's snapshot
    the run read and its largest event time; ``how``: ``positions`` (followed from the
    recorded snapshots) or ``last-period`` (the fallback); ``run_id`` and ``built_ms``:
    the batch commit.
    """

    table: str
    boundary_ms: int | None
    source_snapshot: int | None = None
    source_max_ms: int | None = None
    lateness_ms: int = 0
    how: str = "none"
    run_id: str | None = None
    built_ms: int | None = None

    @property
    def boundary(self) -> datetime | None:
        """The boundary as a naive UTC datetime."""
        return None if self.boundary_ms is None else _naive(self.boundary_ms)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "table": self.table,
            "boundary": None if self.boundary is None else self.boundary.isoformat(),
            "source_snapshot": self.source_snapshot,
            "source_max_time": None
            if self.source_max_ms is None
            else _naive(self.source_max_ms).isoformat(),
            "lateness_ms": self.lateness_ms,
            "how": self.how,
            "run_id": self.run_id,
            "built_at": None if self.built_ms is None else _naive(self.built_ms).isoformat(),
        }


def _positions_at(table: Table, snapshot_id: int | None) -> tuple[dict[str, int], Any]:
    """The positions recorded by the newest batch commit at or before *snapshot_id*
    (current when None), and that commit's snapshot."""
    from fluvial.batch.targets import POSITIONS_KEY

    snap = table.current_snapshot() if snapshot_id is None else table.snapshot_by_id(snapshot_id)
    while snap is not None:
        summary = snap.summary
        recorded = summary.get(POSITIONS_KEY) if summary is not None else None
        if recorded is not None:
            return {str(k): int(v) for k, v in json.loads(recorded).items()}, snap
        parent = snap.parent_snapshot_id
        snap = table.snapshot_by_id(parent) if parent is not None else None
    return {}, None


def _model_inputs(project: Project) -> dict[str, tuple[str, ...]]:
    """Each batch model's upstream tables (none when the models do not parse)."""
    from fluvial.batch.models import discover
    from fluvial.errors import FluvialError

    try:
        models = discover(project.root / project.settings.batch.models_dir)
    except FluvialError:
        return {}
    return {m.name: m.depends_on for m in models}


def _source_snapshots(
    lake: Lake,
    name: str,
    snapshot_id: int | None,
    source: str,
    inputs: Mapping[str, tuple[str, ...]],
    depth: int = 0,
) -> set[int]:
    """The snapshots of *source* that snapshot *snapshot_id* (None: current) of lake table
    *name* was computed from, following the batch commits down the model graph.

    A commit records the snapshots of its append-only upstreams (``positions``); any
    other upstream was read as it was when the commit was made."""
    if name == source:
        return set() if snapshot_id is None else {snapshot_id}
    if depth > 32 or not lake.exists(name):
        return set()
    positions, commit = _positions_at(lake.table(name), snapshot_id)
    if commit is None:
        return set()
    found: set[int] = set()
    for upstream in inputs.get(name, tuple(positions)):
        if not _is_lake(upstream) or not lake.exists(upstream):
            continue
        pinned = positions.get(upstream)
        if pinned is None:
            snap = lake.table(upstream).snapshot_as_of_timestamp(commit.timestamp_ms)
            pinned = snap.snapshot_id if snap is not None else None
        if pinned is not None:
            found |= _source_snapshots(lake, upstream, pinned, source, inputs, depth + 1)
    return found


def _max_time_ms(lake: Lake, source: str, column: str, snapshot_id: int) -> int | None:
    table = lake.table(source)
    data = table.scan(snapshot_id=snapshot_id, selected_fields=(column,)).to_arrow()
    if not data.num_rows:
        return None
    value = pc.max(to_ms(data[column])).cast(pa.int64()).as_py()
    return None if value is None else int(value)


def _floor(ms: int, period_ms: int) -> int:
    return (ms // period_ms) * period_ms


def boundary_of(max_ms: int, lateness_ms: int, period_ms: int) -> int:
    """The first period start that is not closed by the watermark ``max_ms - lateness``:
    a period is closed when its last millisecond is at or before the watermark.

    >>> boundary_of(125_000, 5_000, 60_000)   # watermark 2:00.000 closes [1:00, 2:00)
    120000
    >>> boundary_of(124_999, 5_000, 60_000)   # watermark 1:59.999 closes it too
    120000
    >>> boundary_of(124_998, 5_000, 60_000)
    60000
    """
    return _floor(max_ms - lateness_ms + 1, period_ms)


def batch_coverage(project: Project, metric: Metric) -> BatchCoverage:
    """The boundary between the batch and the speed layer for *metric* (see the module
    docstring)."""
    info = pipeline_info(project, metric)
    lateness = (
        info.lateness_ms
        if info is not None
        else (_duration_ms(metric.lateness) if metric.lateness else 0)
    )
    period = metric.period_ms
    if _is_lake(metric.batch_table):
        from fluvial.batch.targets import RUN_KEY
        from fluvial.lake.catalog import open_lake

        with open_lake(project) as lake:
            if not lake.exists(metric.batch_table):
                return BatchCoverage(metric.batch_table, None, lateness_ms=lateness)
            _, snap = _positions_at(lake.table(metric.batch_table), None)
            snapshots = _source_snapshots(
                lake, metric.batch_table, None, metric.source, _model_inputs(project)
            )
            if snapshots and lake.exists(metric.source):
                times = {
                    s: _max_time_ms(lake, metric.source, metric.source_time_column, s)
                    for s in snapshots
                }
                known = {s: t for s, t in times.items() if t is not None}
                if known:  # several paths to the source: the least covered one counts
                    chosen = min(known, key=lambda s: known[s])
                    summary = snap.summary if snap is not None else None
                    return BatchCoverage(
                        metric.batch_table,
                        boundary_of(known[chosen], lateness, period),
                        source_snapshot=chosen,
                        source_max_ms=known[chosen],
                        lateness_ms=lateness,
                        how="positions",
                        run_id=summary.get(RUN_KEY) if summary is not None else None,
                        built_ms=snap.timestamp_ms if snap is not None else None,
                    )
    rows = batch_rows(project, metric)
    if not rows.num_rows:
        return BatchCoverage(metric.batch_table, None, lateness_ms=lateness)
    newest = pc.max(rows[metric.time_column]).cast(pa.int64()).as_py()
    return BatchCoverage(metric.batch_table, int(newest), lateness_ms=lateness, how="last-period")


# --------------------------------------------------------------------------- the view


@dataclass(frozen=True)
class LambdaView:
    """The view's rows (the metric's columns and ``layer``) and the coverage used."""

    metric: str
    rows: pa.Table
    coverage: BatchCoverage

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "metric": self.metric,
            "coverage": self.coverage.as_dict(),
            "rows": self.rows.to_pylist(),
        }


def _ms_of(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1000)


def lambda_view(
    project: Project,
    metric: Metric | str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> LambdaView:
    """*metric* for periods starting in ``[since, until)`` (naive times are UTC): the
    batch layer's rows before the coverage boundary, the speed layer's from it on."""
    if isinstance(metric, str):
        metric = get_metric(project, metric)
    start, end = _ms_of(since), _ms_of(until)
    coverage = batch_coverage(project, metric)
    boundary = coverage.boundary_ms
    parts = []
    if boundary is not None and (start is None or start < boundary):
        upper = boundary if end is None else min(boundary, end)
        batch = _between(batch_rows(project, metric), metric.time_column, start, upper)
        parts.append(batch.append_column(LAYER, pa.repeat("batch", batch.num_rows)))
    if end is None or boundary is None or end > boundary:
        lower = boundary if start is None else (start if boundary is None else max(start, boundary))
        speed = speed_rows(project, metric, lower, end)
        parts.append(speed.append_column(LAYER, pa.repeat("speed", speed.num_rows)))
    rows = pa.concat_tables(parts, promote_options="permissive")
    rows = rows.sort_by([(c, "ascending") for c in metric.key])
    return LambdaView(metric.name, rows, coverage)
