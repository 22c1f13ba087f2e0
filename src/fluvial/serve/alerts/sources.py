"""What rules watch: the stream pipelines' status and the operational store's tables.

:class:`PipelineSampler` reads every job's status file (``<data_dir>/stream/<job>``) and
adds what needs two looks in a row: events per second (rows read between two status
writes) and the watermark's age (since it last moved). The HTTP API's pipeline list, its
live event stream and the alert evaluator all read pipelines through one.

:func:`store_value` reduces a store table's column to one number with Arrow compute
kernels (never a loop over rows); times count as epoch seconds, so ``max`` of a
``window_end`` column is a freshness signal.

:func:`model_ages` reads the batch run history: seconds since each model's last
successful build (what ``freshness`` rules watch).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from fluvial.errors import NotFoundError, UsageError, did_you_mean

if TYPE_CHECKING:
    from fluvial.project import Project
    from fluvial.serve.alerts.rules import AlertRule
    from fluvial.serve.store import Store

__all__ = ["PipelineSampler", "PipelineStatus", "metric_value", "model_ages", "store_value"]

#: a finished bounded job's watermark (+infinity): everything has fired
_END_WATERMARK = 2**63 - 1


class PipelineStatus(BaseModel):
    """One stream pipeline now: its job's state, watermark, counters and checkpoint."""

    job: str
    pipeline: str
    sink: str | None = None
    state: str
    running: int
    watermark: str | None = None
    watermark_ms: int | None = None
    lag_seconds: float | None = None
    watermark_age_seconds: float | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    late_rows: int | None = None
    events_per_second: float | None = None
    checkpoint_id: int | None = None
    checkpoint_age_seconds: float | None = None
    state_bytes: int | None = None
    status_age_seconds: float | None = None


class _Seen:
    """What the sampler remembers of one pipeline between two looks."""

    __slots__ = ("rate", "rows_in", "updated_ms", "watermark_ms", "wm_since")

    def __init__(self, rows_in: int | None, updated_ms: int | None, wm: int | None, now: float):
        self.rows_in = rows_in
        self.updated_ms = updated_ms
        self.watermark_ms = wm
        self.wm_since = now
        self.rate: float | None = None


class PipelineSampler:
    """Reads the pipelines' status files; remembers enough to give rates and ages.

    Thread-safe: the API's request threads and its event stream share one.
    """

    def __init__(self, project: Project, *, clock: Callable[[], float] = time.time) -> None:
        self.stream_dir: Path = project.data_dir / "stream"
        self.clock = clock
        self._seen: dict[tuple[str, str], _Seen] = {}
        self._lock = threading.Lock()

    def sample(self, now: float | None = None) -> list[PipelineStatus]:
        """Every pipeline of every job with a status file or checkpoints, by job."""
        from fluvial.stream.status import job_status, list_jobs

        now = self.clock() if now is None else now
        now_ms = int(now * 1000)
        rows = [
            row for job in list_jobs(self.stream_dir) for row in job_status(self.stream_dir / job)
        ]
        out = []
        with self._lock:
            for row in rows:
                out.append(self._status(row, now, now_ms))
        return out

    def _status(self, row: dict[str, Any], now: float, now_ms: int) -> PipelineStatus:
        key = (row["job"], row["pipeline"])
        wm = row.get("watermark_ms")
        rows_in = row.get("rows_in")
        age = row.get("updated_age_s")
        # job_status measures ages against its own clock; ours may be a test's
        updated_ms = None if age is None else int(time.time() * 1000 - age * 1000)
        seen = self._seen.get(key)
        if seen is None:
            seen = self._seen[key] = _Seen(rows_in, updated_ms, wm, now)
        else:
            if (
                updated_ms is not None
                and seen.updated_ms is not None
                and updated_ms > seen.updated_ms
                and rows_in is not None
                and seen.rows_in is not None
            ):
                delta = rows_in - seen.rows_in
                seen.rate = delta * 1000 / (updated_ms - seen.updated_ms) if delta >= 0 else None
                seen.rows_in, seen.updated_ms = rows_in, updated_ms
            elif seen.updated_ms is None:
                seen.rows_in, seen.updated_ms = rows_in, updated_ms
            if wm != seen.watermark_ms:
                seen.watermark_ms, seen.wm_since = wm, now
        running = row.get("state") == "running"
        normal = wm is not None and wm < _END_WATERMARK
        ckpt_age = row.get("checkpoint_age_s")
        return PipelineStatus(
            job=row["job"],
            pipeline=row["pipeline"],
            sink=row.get("sink"),
            state=row.get("state") or "unknown",
            running=int(running),
            watermark=_watermark_text(wm),
            watermark_ms=wm if normal else None,
            lag_seconds=round((now_ms - wm) / 1000, 3) if normal and wm is not None else None,
            watermark_age_seconds=round(now - seen.wm_since, 3) if normal else None,
            rows_in=rows_in,
            rows_out=row.get("rows_out"),
            late_rows=row.get("late_rows"),
            events_per_second=(None if seen.rate is None or not running else round(seen.rate, 3)),
            checkpoint_id=row.get("checkpoint_id"),
            checkpoint_age_seconds=ckpt_age,
            state_bytes=row.get("state_bytes"),
            status_age_seconds=age,
        )


def _watermark_text(ms: int | None) -> str | None:
    if ms is None:
        return None
    if ms >= _END_WATERMARK:
        return "end"
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return None


def _matches(status: PipelineStatus, selector: str | None) -> bool:
    if selector is None:
        return True
    return selector in (status.pipeline, status.job, f"{status.job}/{status.pipeline}")


def metric_value(statuses: list[PipelineStatus], rule: AlertRule) -> float | None:
    """A metric rule's value: its metric over the pipelines it selects, combined with
    its aggregate; None when no selected pipeline has the metric (or none is selected).
    """
    assert rule.metric is not None
    chosen = [s for s in statuses if _matches(s, rule.pipeline)]
    values = [
        (s.status_age_seconds, float(v))
        for s in chosen
        if (v := getattr(s, rule.metric)) is not None
    ]
    if rule.aggregate == "count":
        return float(len(values))
    if not values:
        return None
    numbers = [v for _, v in values]
    agg = rule.aggregate
    if agg == "last":  # the pipeline whose status is newest
        return min(values, key=lambda x: float("inf") if x[0] is None else x[0])[1]
    if agg == "sum":
        return float(sum(numbers))
    if agg == "avg":
        return float(sum(numbers) / len(numbers))
    return float(min(numbers) if agg == "min" else max(numbers))


def _numeric(column: pa.ChunkedArray, table: str, name: str) -> pa.ChunkedArray:
    """*column* as float64; times as epoch seconds, dates as epoch seconds at midnight."""
    typ = column.type
    if pa.types.is_timestamp(typ):
        ms = pc.cast(column, pa.timestamp("ms", typ.tz))
        return pc.divide(pc.cast(ms.cast(pa.int64()), pa.float64()), 1000.0)
    if pa.types.is_date(typ):
        days = pc.cast(column, pa.date32()).cast(pa.int32())
        return pc.multiply(pc.cast(days, pa.float64()), 86_400.0)
    if pa.types.is_boolean(typ) or pa.types.is_integer(typ) or pa.types.is_floating(typ):
        return pc.cast(column, pa.float64())
    if pa.types.is_decimal(typ):
        return pc.cast(column, pa.float64())
    raise UsageError(
        f"store table '{table}': column '{name}' is {typ}; a rule needs numbers, "
        "booleans, dates or timestamps"
    )


def store_value(store: Store, rule: AlertRule) -> float | None:
    """A store rule's value: ``agg`` of its column over the table (or its ``rows``
    newest rows by key); None when the table does not exist or has no value.

    Raises:
        NotFoundError: the column does not exist (says "did you mean …?").
        UsageError: the column is not numeric, boolean or temporal.
    """
    assert rule.table is not None
    try:
        info = store.table(rule.table)
    except NotFoundError:
        return None
    agg = rule.aggregate
    if rule.column is not None and rule.column not in info.schema.names:
        raise NotFoundError(
            f"store table '{rule.table}' has no column '{rule.column}'"
            f"{did_you_mean(rule.column, info.schema.names)}"
        )
    if agg == "count" and rule.column is None and rule.rows is None:
        return float(store.count(rule.table))
    if agg == "last":
        rows = store.scan(rule.table, reverse=True, limit=1)
    elif rule.rows is not None:
        rows = store.scan(rule.table, reverse=True, limit=rule.rows)
    else:
        rows = store.scan(rule.table)
    if agg == "count":
        column = rows[rule.column] if rule.column is not None else None
        return float(rows.num_rows if column is None else len(column) - column.null_count)
    assert rule.column is not None
    values = _numeric(rows[rule.column], rule.table, rule.column)
    if agg == "last":
        return None if not len(values) or not values[0].is_valid else float(values[0].as_py())
    reduced = {
        "sum": pc.sum,
        "avg": pc.mean,
        "min": pc.min,
        "max": pc.max,
    }[agg](values)
    return None if not reduced.is_valid else float(reduced.as_py())


def model_ages(project: Project, models: list[str], now: float) -> dict[str, float | None]:
    """Seconds from each of *models*' last successful build (or up-to-date check) to
    *now* (epoch seconds); None for a model never built.

    Raises:
        NotFoundError: a name is not a model of the project (with "did you mean …?").
    """
    from fluvial.batch import discover, history

    known = [m.name for m in discover(project.root / project.settings.batch.models_dir)]
    runs = history(project)
    out: dict[str, float | None] = {}
    for name in models:
        if name not in known:
            raise NotFoundError(f"model '{name}' does not exist{did_you_mean(name, known)}")
        last = runs.last_success(name)
        out[name] = None if last is None else now - last.timestamp()
    return out
