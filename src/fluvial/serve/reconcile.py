"""Reconciliation: the speed layer against the batch layer over closed periods.

For each metric of ``metrics.toml`` (:mod:`fluvial.serve.lambda_view`),
:func:`reconcile` compares the two layers' rows over the periods *both* have closed: from
the first period both hold (or ``since``) up to the earlier of the batch coverage
boundary and the first period the pipeline's watermark has not closed yet (from its
status file; a finished pipeline has closed everything). Rows are matched by the time
column and the dimensions; a row is *drift* when a value differs or one layer lacks it.

None is expected but late data. A stream pipeline drops rows that arrive after its
watermark passed their window, where the batch layer, recomputing from the master
dataset, counts them. A drifting row is attributed to late data when the batch values
are at least the speed values (missing speed values count as 0) and

- the pipeline has a late-events side output (``'fluvial.late-events.topic'``) and it
  holds late rows whose event time falls in that period, or
- it has none, and the pipeline reported late rows (``late_rows`` in its status).

The other expected difference is events that arrived after the batch run read the
master dataset, with times in periods it had already closed: the pipeline counted those
it did not find late (its watermark, the slowest partition's, may lag the batch's
``T - L``); the batch layer counts them at its next run. A drifting row is attributed to
them (``after-batch``) when the speed values are at least the batch values (missing
batch values count as 0) and ``source`` holds rows of that period appended after the
snapshot the batch run covered.

Anything else is *unexplained* drift: a bug, a changed definition, or a layer that must
be rebuilt (``fluvial stream replay`` or ``fluvial batch run --full-refresh``).

The report's status per metric: ``ok`` (no drift), ``late`` (all drift is late data),
``stale`` (all drift is explained, some by events after the batch run: its next run
removes that), ``drift`` (some unexplained), ``empty`` (nothing to compare yet).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import LogError
from fluvial.serve.lambda_view import (
    BatchCoverage,
    Metric,
    batch_coverage,
    batch_rows,
    boundary_of,
    get_metric,
    load_metrics,
    pipeline_info,
    speed_rows,
    to_ms,
)

if TYPE_CHECKING:
    from fluvial.project import Project
    from fluvial.serve.lambda_view import PipelineInfo

__all__ = ["Drift", "MetricReport", "Reconciliation", "reconcile", "reconcile_metric"]

#: the most drifting rows a report lists (all are counted)
MAX_LISTED = 100
OK, LATE, STALE, DRIFT, EMPTY = "ok", "late", "stale", "drift", "empty"


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).replace(tzinfo=None).isoformat()


@dataclass(frozen=True)
class Drift:
    """One row on which the layers disagree: its period and dimensions, both layers'
    values (None: the layer has no such row) and the cause (``late`` | ``after-batch`` |
    ``unexplained``)."""

    period: str
    dimensions: dict[str, Any]
    batch: dict[str, Any] | None
    speed: dict[str, Any] | None
    cause: str


@dataclass(frozen=True)
class MetricReport:
    """The reconciliation of one metric."""

    metric: str
    status: str
    start: str | None = None
    end: str | None = None
    periods: int = 0
    rows: int = 0
    matching: int = 0
    drifted: int = 0
    late: int = 0
    after_batch: int = 0
    unexplained: int = 0
    late_rows: int | None = None
    late_events: int | None = None
    drift: tuple[Drift, ...] = ()
    coverage: BatchCoverage | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "metric": self.metric,
            "status": self.status,
            "start": self.start,
            "end": self.end,
            "periods": self.periods,
            "rows": self.rows,
            "matching": self.matching,
            "drifted": self.drifted,
            "late": self.late,
            "after_batch": self.after_batch,
            "unexplained": self.unexplained,
            "late_rows": self.late_rows,
            "late_events": self.late_events,
            "drift": [vars(d) for d in self.drift],
            "coverage": None if self.coverage is None else self.coverage.as_dict(),
            "note": self.note,
        }


@dataclass(frozen=True)
class Reconciliation:
    """Every metric's report; ``ok`` when no metric has unexplained drift."""

    metrics: tuple[MetricReport, ...] = field(default=())
    note: str = ""

    @property
    def ok(self) -> bool:
        """Whether every difference is explained (late data) or there is none."""
        return all(m.status != DRIFT for m in self.metrics)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "ok": self.ok,
            "note": self.note,
            "metrics": [m.as_dict() for m in self.metrics],
        }


# --------------------------------------------------------------------------- inputs


def _pipeline_progress(
    project: Project, info: PipelineInfo | None
) -> tuple[int | None, int | None, bool]:
    """(watermark ms, late rows, has status) of the pipeline's current version."""
    from fluvial.stream.runtime import MAX_WATERMARK
    from fluvial.stream.status import job_status

    if info is None:
        return None, None, False
    folder = project.data_dir / "stream" / info.job
    if not folder.is_dir():
        return None, None, False
    rows = job_status(folder)
    if not rows:
        return None, None, False
    marks = [int(r["watermark_ms"]) for r in rows if r.get("watermark_ms") is not None]
    late = sum(int(r.get("late_rows") or 0) for r in rows)
    watermark = min(marks) if marks else None
    if watermark is not None and watermark >= MAX_WATERMARK:
        watermark = MAX_WATERMARK
    return watermark, late, True


def _late_per_period(
    project: Project, info: PipelineInfo | None, period_ms: int
) -> dict[int, int] | None:
    """Late rows of the side-output topic per period start (None: no such topic)."""
    if info is None or info.late_topic is None or info.rowtime is None:
        return None
    try:
        with project.open_log() as log:
            rows = log.snapshot(info.late_topic)
    except LogError:  # not created yet: nothing was late
        return {}
    if not rows.num_rows or info.rowtime not in rows.column_names:
        return {}
    return _per_period(rows[info.rowtime], period_ms)


def _per_period(times: pa.ChunkedArray | pa.Array, period_ms: int) -> dict[int, int]:
    ms = to_ms(times).cast(pa.int64())
    starts = pc.multiply(pc.floor(pc.divide(pc.cast(ms, pa.float64()), period_ms)), period_ms)
    counts = pc.value_counts(pc.cast(starts, pa.int64()))
    return {
        int(v): int(c)
        for v, c in zip(
            counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
        )
        if v is not None
    }


def _arrived_after_batch(
    project: Project, metric: Metric, coverage: BatchCoverage, periods: np.ndarray
) -> np.ndarray:
    """Which of *periods* have rows in ``source`` appended after the snapshot the batch
    run covered (the source is append-only: more rows now than then)."""
    if not len(periods) or coverage.source_snapshot is None:
        return np.array([], dtype=np.int64)
    from pyiceberg import expressions
    from pyiceberg.types import TimestampType

    from fluvial.lake.catalog import open_lake

    ice: Any = expressions  # pydantic's generated signatures hide the positional forms
    column = metric.source_time_column
    with open_lake(project) as lake:
        if not lake.exists(metric.source):
            return np.array([], dtype=np.int64)
        table = lake.table(metric.source)
        naive = isinstance(table.schema().find_field(column).field_type, TimestampType)
        low, high = (
            datetime.fromtimestamp(ms / 1000, tz=UTC).replace(tzinfo=None if naive else UTC)
            for ms in (int(periods.min()), int(periods.max()) + metric.period_ms)
        )
        where = ice.And(
            ice.GreaterThanOrEqual(column, low.isoformat()), ice.LessThan(column, high.isoformat())
        )
        now, then = (
            _per_period(
                table.scan(
                    row_filter=where, selected_fields=(column,), snapshot_id=snap
                ).to_arrow()[column],
                metric.period_ms,
            )
            for snap in (None, coverage.source_snapshot)
        )
    grown = [p for p, n in now.items() if n > then.get(p, 0)]
    return np.array(sorted(grown), dtype=np.int64)


def _min_ms(table: pa.Table, column: str) -> int | None:
    if not table.num_rows:
        return None
    value = pc.min(table[column]).cast(pa.int64()).as_py()
    return None if value is None else int(value)


def _max_ms(table: pa.Table, column: str) -> int | None:
    if not table.num_rows:
        return None
    value = pc.max(table[column]).cast(pa.int64()).as_py()
    return None if value is None else int(value)


def _window(table: pa.Table, column: str, start: int, end: int) -> pa.Table:
    times = table[column].cast(pa.int64())
    return table.filter(pc.and_(pc.greater_equal(times, start), pc.less(times, end)))


# --------------------------------------------------------------------------- comparing


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _compare(metric: Metric, batch: pa.Table, speed: pa.Table) -> tuple[int, pa.Table]:
    """(rows compared, drifting rows) of a full outer join on the metric's key."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("b", batch)
        con.register("s", speed)
        on = " AND ".join(f"b.{_q(c)} IS NOT DISTINCT FROM s.{_q(c)}" for c in metric.key)
        numeric = all(
            pa.types.is_integer(t.field(v).type)
            or pa.types.is_floating(t.field(v).type)
            or pa.types.is_decimal(t.field(v).type)
            for t in (batch.schema, speed.schema)
            for v in metric.values
        )
        keys = [f"coalesce(b.{_q(c)}, s.{_q(c)}) AS {_q(c)}" for c in metric.key]
        values = [f"b.{_q(v)} AS {_q('batch.' + v)}" for v in metric.values]
        values += [f"s.{_q(v)} AS {_q('speed.' + v)}" for v in metric.values]
        differs = " OR ".join(f"b.{_q(v)} IS DISTINCT FROM s.{_q(v)}" for v in metric.values)
        covers = (
            " AND ".join(f"coalesce(s.{_q(v)}, 0) <= b.{_q(v)}" for v in metric.values)
            if numeric
            else "false"
        )
        covered = (
            " AND ".join(f"coalesce(b.{_q(v)}, 0) <= s.{_q(v)}" for v in metric.values)
            if numeric
            else "false"
        )
        first = _q(metric.key[0])
        joined = (
            f"SELECT {', '.join(keys + values)}, b.{first} IS NULL AS missing_batch, "
            f"s.{first} IS NULL AS missing_speed, coalesce({covers}, false) AS batch_covers, "
            f"coalesce({covered}, false) AS speed_covers, "
            f"(b.{first} IS NULL OR s.{first} IS NULL OR {differs}) AS drift "
            f"FROM b FULL OUTER JOIN s ON {on}"
        )
        con.execute(f"CREATE TEMP TABLE j AS {joined}")
        total = int(con.execute("SELECT count(*) FROM j").fetchone()[0])  # type: ignore[index]
        order = ", ".join(_q(c) for c in metric.key)
        drift = con.sql(f"SELECT * EXCLUDE (drift) FROM j WHERE drift ORDER BY {order}")
        return total, drift.to_arrow_table()
    finally:
        con.close()


def reconcile_metric(
    project: Project, metric: Metric | str, *, since: datetime | None = None
) -> MetricReport:
    """Compare the speed and batch layers of one metric over the periods both closed."""
    if isinstance(metric, str):
        metric = get_metric(project, metric)
    period = metric.period_ms
    coverage = batch_coverage(project, metric)
    if coverage.boundary_ms is None:
        return MetricReport(
            metric.name, EMPTY, coverage=coverage, note="no batch result yet: run the batch"
        )
    info = pipeline_info(project, metric)
    watermark, late_rows, has_status = _pipeline_progress(project, info)
    batch = batch_rows(project, metric)
    speed = speed_rows(project, metric)
    speed_closed: int | None
    if watermark is not None:
        speed_closed = boundary_of(watermark, 0, period)
    else:  # no status: the newest speed period may still be open
        speed_closed = _max_ms(speed, metric.time_column)
    firsts = [_min_ms(batch, metric.time_column), _min_ms(speed, metric.time_column)]
    if since is not None:
        aware = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
        firsts.append(int(aware.timestamp() * 1000) // period * period)
    if speed_closed is None or any(f is None for f in firsts[:2]):
        return MetricReport(
            metric.name,
            EMPTY,
            coverage=coverage,
            late_rows=late_rows,
            note="one layer has no rows yet" if has_status else "the speed layer has no rows",
        )
    start = max(f for f in firsts if f is not None)
    end = min(coverage.boundary_ms, speed_closed)
    if end <= start:
        return MetricReport(
            metric.name,
            EMPTY,
            start=_iso(start),
            end=_iso(end),
            coverage=coverage,
            late_rows=late_rows,
            note="no period is closed in both layers yet",
        )
    batch = _window(batch, metric.time_column, start, end)
    speed = _window(speed, metric.time_column, start, end)
    total, drift = _compare(metric, batch, speed)
    late_by_period = _late_per_period(project, info, period)
    late_events = None
    if late_by_period is not None:
        late_events = sum(n for p, n in late_by_period.items() if start <= p < end)
    times = drift[metric.time_column].cast(pa.int64()).to_numpy(zero_copy_only=False)
    covers = drift["batch_covers"].to_numpy(zero_copy_only=False).astype(bool)
    if late_by_period is not None:
        known = np.array(sorted(p for p, n in late_by_period.items() if n > 0), dtype=np.int64)
        has_late = np.isin(times, known)
    else:
        has_late = np.full(len(times), bool(late_rows))
    late_mask = covers & has_late
    ahead = drift["speed_covers"].to_numpy(zero_copy_only=False).astype(bool) & ~late_mask
    arrived = _arrived_after_batch(project, metric, coverage, np.unique(times[ahead]))
    after_mask = ahead & np.isin(times, arrived)
    listed = []
    data = drift.slice(0, MAX_LISTED).to_pylist()
    causes = np.where(late_mask, "late", np.where(after_mask, "after-batch", "unexplained"))
    for row, cause in zip(data, causes[:MAX_LISTED].tolist(), strict=False):
        listed.append(
            Drift(
                period=row[metric.time_column].isoformat(),
                dimensions={d: row[d] for d in metric.dimensions},
                batch=None
                if row["missing_batch"]
                else {v: row[f"batch.{v}"] for v in metric.values},
                speed=None
                if row["missing_speed"]
                else {v: row[f"speed.{v}"] for v in metric.values},
                cause=cause,
            )
        )
    n_late, n_after = int(late_mask.sum()), int(after_mask.sum())
    unexplained = drift.num_rows - n_late - n_after
    status = OK if drift.num_rows == 0 else DRIFT if unexplained else STALE if n_after else LATE
    chunks = [t[metric.time_column].cast(pa.int64()).chunks for t in (batch, speed)]
    both = pa.chunked_array([c for part in chunks for c in part], type=pa.int64())
    periods = int(pc.count_distinct(both).as_py())
    return MetricReport(
        metric.name,
        status,
        start=_iso(start),
        end=_iso(end),
        periods=periods,
        rows=total,
        matching=total - drift.num_rows,
        drifted=drift.num_rows,
        late=n_late,
        after_batch=n_after,
        unexplained=unexplained,
        late_rows=late_rows,
        late_events=late_events,
        drift=tuple(listed),
        coverage=coverage,
    )


def reconcile(
    project: Project,
    metrics: str | Iterable[str] | None = None,
    *,
    since: datetime | None = None,
) -> Reconciliation:
    """Reconcile *metrics* (default: every metric of ``metrics.toml``).

    Raises:
        NotFoundError: a named metric is not declared.
        ConfigError: ``metrics.toml`` is invalid.
    """
    declared = load_metrics(project)
    if metrics is None:
        names = list(declared)
    else:
        names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        return Reconciliation(note="no metrics are declared: add [[metric]] tables to metrics.toml")
    chosen = [declared[n] if n in declared else get_metric(project, n) for n in names]
    return Reconciliation(tuple(reconcile_metric(project, m, since=since) for m in chosen))
