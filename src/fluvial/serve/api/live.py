"""The live dashboard's numbers: the stream pipelines' store tables and their status.

The tables are those ``[api] live_tables`` names (the example pipelines' results by
default); those that do not exist yet are listed as ``missing``. Each table shows how
many rows it holds and its newest rows by key (window tables are keyed by their window
first, so these are the latest windows).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fluvial.errors import NotFoundError
from fluvial.serve.alerts.sources import PipelineStatus
from fluvial.serve.api.models import ColumnOut, LiveMetrics, LiveTable, PipelineSummary
from fluvial.serve.api.values import column_types, to_rows

if TYPE_CHECKING:
    from fluvial.serve.store import Store

__all__ = ["live_metrics", "live_table_names", "summarize"]


def live_table_names(setting: str) -> list[str]:
    """The table names of ``[api] live_tables`` (comma-separated).

    >>> live_table_names(" a, b ,,a ")
    ['a', 'b']
    """
    return list(dict.fromkeys(n.strip() for n in setting.split(",") if n.strip()))


def summarize(statuses: list[PipelineStatus]) -> PipelineSummary:
    """Totals over every pipeline: how many run, events per second, rows, worst lag."""
    running = [s for s in statuses if s.running]
    rates = [s.events_per_second for s in running if s.events_per_second is not None]
    lags = [s.lag_seconds for s in running if s.lag_seconds is not None]
    return PipelineSummary(
        pipelines=len(statuses),
        running=len(running),
        events_per_second=round(sum(rates), 3) if rates else None,
        rows_in=sum(s.rows_in or 0 for s in statuses),
        late_rows=sum(s.late_rows or 0 for s in statuses),
        max_lag_seconds=max(lags) if lags else None,
    )


def live_metrics(
    store: Store, names: list[str], rows: int, statuses: list[PipelineStatus]
) -> LiveMetrics:
    """The dashboard's numbers now: each existing table in *names* with its newest *rows*
    rows, and the pipelines' summary."""
    tables = []
    missing = []
    for name in names:
        try:
            info = store.table(name)
        except NotFoundError:
            missing.append(name)
            continue
        newest = store.scan(name, reverse=True, limit=rows)
        tables.append(
            LiveTable(
                table=name,
                key=list(info.key),
                total_rows=store.count(name),
                columns=[ColumnOut(**c) for c in column_types(newest)],
                rows=to_rows(newest),
                row_count=newest.num_rows,
            )
        )
    return LiveMetrics(
        time=datetime.now(UTC).isoformat(timespec="milliseconds"),
        tables=tables,
        missing=missing,
        pipelines=summarize(statuses),
    )
