"""The live dashboard's numbers: the stream pipelines' store tables and their status.

The tables are those ``[api] live_tables`` names (the example pipelines' results by
default); those that do not exist yet are listed as ``missing``. Each table shows how
many rows it holds and its newest rows by key (window tables are keyed by their window
first, so these are the latest windows). A name is the one the pipeline declares; after
a Kappa switch (``fluvial stream replay``) its rows are read from the version readers
use now (:func:`current_tables`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fluvial.errors import NotFoundError
from fluvial.serve.alerts.sources import PipelineStatus
from fluvial.serve.api.models import ColumnOut, LiveMetrics, LiveTable, PipelineSummary
from fluvial.serve.api.values import column_types, to_rows

if TYPE_CHECKING:
    from fluvial.project import Project
    from fluvial.serve.store import Store

__all__ = ["current_tables", "live_metrics", "live_table_names", "summarize"]


def live_table_names(setting: str) -> list[str]:
    """The table names of ``[api] live_tables`` (comma-separated).

    >>> live_table_names(" a, b ,,a ")
    ['a', 'b']
    """
    return list(dict.fromkeys(n.strip() for n in setting.split(",") if n.strip()))


def current_tables(project: Project, names: list[str]) -> dict[str, str]:
    """Each declared store table name and the physical table of its current version."""
    from fluvial.stream.versions import current_table

    return {name: current_table(project, name, "store") for name in names}


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
    store: Store,
    names: list[str],
    rows: int,
    statuses: list[PipelineStatus],
    physical: Mapping[str, str] | None = None,
) -> LiveMetrics:
    """The dashboard's numbers now: each existing table in *names* with its newest *rows*
    rows, and the pipelines' summary. *physical* maps a name to the store table read for
    it (its current version; by default the name itself)."""
    tables = []
    missing = []
    for name in names:
        source = (physical or {}).get(name, name)
        try:
            info = store.table(source)
        except NotFoundError:
            missing.append(name)
            continue
        newest = store.scan(source, reverse=True, limit=rows)
        tables.append(
            LiveTable(
                table=name,
                key=list(info.key),
                total_rows=store.count(source),
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
