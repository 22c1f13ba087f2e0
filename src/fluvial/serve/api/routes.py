"""The API's read routes: health, pipelines, live metrics, store, lake, lineage, quality,
batch, and the SQL explorer (``POST /api/sql``).

Routes are plain functions (FastAPI runs them in its thread pool: the stores block).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from fluvial.errors import NotFoundError, UsageError
from fluvial.serve.api.auth import Caller
from fluvial.serve.api.live import current_tables, live_metrics, live_table_names
from fluvial.serve.api.models import (
    BatchRun,
    ColumnOut,
    Health,
    LakeSnapshot,
    LakeTableInfo,
    LakeTableItem,
    Lineage,
    LiveMetrics,
    PipelineStatus,
    QualityRun,
    Rows,
    SqlRequest,
    SqlResult,
    StoreRow,
    StoreTableItem,
)
from fluvial.serve.api.services import Services
from fluvial.serve.api.values import column_types, to_csv, to_rows, typed_values

__all__ = ["router", "services"]

router = APIRouter()


def services(request: Request) -> Services:
    """The app's shared services (a FastAPI dependency)."""
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(services)]
Format = Annotated[Literal["json", "csv"], Query(description="json (default) or csv")]


def _csv(data: bytes, name: str) -> Response:
    return Response(
        data,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get("/health", response_model=Health, tags=["status"])
def health(svc: Svc) -> Health:
    """The API is up."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("fluvial")
    except PackageNotFoundError:
        ver = "unknown"
    return Health(
        project=svc.settings.project.name,
        version=ver,
        time=datetime.now(UTC).isoformat(timespec="milliseconds"),
    )


@router.get("/pipelines", response_model=list[PipelineStatus], tags=["stream"])
def pipelines(svc: Svc) -> list[PipelineStatus]:
    """Every stream pipeline: state, watermark, lag, rows, late rows, checkpoint, state size."""
    return svc.pipelines()


@router.get("/metrics/live", response_model=LiveMetrics, tags=["stream"])
def metrics_live(svc: Svc) -> LiveMetrics:
    """The live dashboard's numbers: the configured store tables' newest rows, and the
    pipelines' totals."""
    api = svc.settings.api
    names = live_table_names(api.live_tables)
    physical = current_tables(svc.project, names)
    return live_metrics(svc.store, names, api.live_rows, svc.pipelines(), physical)


# -- the operational store ----------------------------------------------------------------------


@router.get("/store", response_model=list[StoreTableItem], tags=["store"])
def store_tables(svc: Svc) -> list[StoreTableItem]:
    """Every operational store table: key, columns and row count."""
    store = svc.store
    return [
        StoreTableItem(
            name=info.name,
            key=list(info.key),
            columns=[ColumnOut(name=f.name, type=str(f.type)) for f in info.schema],
            rows=store.count(info.name),
        )
        for info in store.tables()
    ]


@router.get("/store/{table}", response_model=Rows, tags=["store"])
def store_scan(
    svc: Svc,
    table: str,
    prefix: Annotated[
        list[str] | None, Query(description="values of the leading key columns, in order")
    ] = None,
    start: Annotated[str | None, Query(description="next key column >= this")] = None,
    end: Annotated[str | None, Query(description="next key column < this")] = None,
    limit: Annotated[int, Query(ge=0, le=100_000)] = 100,
    reverse: bool = False,
    format: Format = "json",
) -> Any:
    """Rows in key order: equal to ``prefix`` on the leading key columns, the next one in
    [``start``, ``end``); at most ``limit``, largest key first with ``reverse``."""
    store = svc.store
    info = store.table(table)
    prefix = prefix or []
    if len(prefix) > len(info.key):
        raise UsageError(
            f"store table '{table}' is keyed by ({', '.join(info.key)}); "
            f"found {len(prefix)} prefix values"
        )
    fields = [info.schema.field(k) for k in info.key]
    values = typed_values(prefix, fields[: len(prefix)], "prefix")
    bound = fields[len(prefix)] if len(prefix) < len(fields) else None

    def one(text: str | None, what: str) -> Any:
        if text is None:
            return None
        if bound is None:
            raise UsageError(f"'{what}' needs a key column after the prefix")
        return typed_values([text], [bound], what)[0]

    rows = store.scan(
        table,
        prefix=values,
        start=one(start, "start"),
        end=one(end, "end"),
        limit=limit,
        reverse=reverse,
    )
    if format == "csv":
        return _csv(to_csv(rows), table)
    return Rows(
        columns=[ColumnOut(**c) for c in column_types(rows)],
        rows=to_rows(rows),
        row_count=rows.num_rows,
    )


@router.get("/store/{table}/{key:path}", response_model=StoreRow, tags=["store"])
def store_get(svc: Svc, table: str, key: str) -> StoreRow:
    """One row by key; a key of several columns is written ``a/b/c`` in key order (the
    last value may itself hold ``/``)."""
    store = svc.store
    info = store.table(table)
    parts = key.split("/", len(info.key) - 1)
    if len(parts) != len(info.key):
        raise UsageError(
            f"store table '{table}' is keyed by ({', '.join(info.key)}): expected "
            f"{len(info.key)} value(s) separated by '/', found {len(parts)}"
        )
    values = typed_values(parts, [info.schema.field(k) for k in info.key], "key")
    found = store.get_many(
        table, _key_table(info.key, values, [info.schema.field(k) for k in info.key])
    )
    if not found.num_rows:
        raise NotFoundError(f"store table '{table}' has no row with the key {key!r}")
    row = dict(zip(found.column_names, to_rows(found)[0], strict=True))
    return StoreRow(table=table, key=list(info.key), row=row)


def _key_table(names: tuple[str, ...], values: list[Any], fields: list[Any]) -> Any:
    import pyarrow as pa

    return pa.table(
        {n: pa.array([v], f.type) for n, v, f in zip(names, values, fields, strict=True)}
    )


# -- the lake ------------------------------------------------------------------------------------


@router.get("/lake/tables", response_model=list[LakeTableItem], tags=["lake"])
def lake_tables(svc: Svc) -> list[LakeTableItem]:
    """Every lake table, as ``zone.table``."""
    return [LakeTableItem(name=n, zone=n.partition(".")[0]) for n in svc.lake.tables()]


@router.get("/lake/tables/{name}", response_model=LakeTableInfo, tags=["lake"])
def lake_table(svc: Svc, name: str) -> LakeTableInfo:
    """A table's catalog page: columns, partitioning, snapshot, counts, owner, tags."""
    from fluvial.lake.metadata import describe

    return LakeTableInfo.model_validate(describe(svc.lake.table(name)).to_dict())


@router.get("/lake/tables/{name}/history", response_model=list[LakeSnapshot], tags=["lake"])
def lake_history(svc: Svc, name: str) -> list[LakeSnapshot]:
    """A table's snapshots, oldest first."""
    from fluvial.lake.metadata import history

    return [LakeSnapshot.model_validate(s.to_dict()) for s in history(svc.lake.table(name))]


# -- lineage, quality, batch -----------------------------------------------------------------------


@router.get("/lineage/{name:path}", response_model=Lineage, tags=["lineage"])
def lineage(
    svc: Svc, name: str, depth: Annotated[int | None, Query(ge=1, le=100)] = None
) -> Lineage:
    """What *name* is built from (upstream) and what is built from it (downstream)."""
    from fluvial.lineage import load_graph

    graph = load_graph(svc.project)
    up = graph.upstream(name, depth)
    down = graph.downstream(name, depth)
    return Lineage(
        dataset=up["dataset"],
        upstream=graph.upstream_names(name),
        downstream=graph.downstream_names(name),
        upstream_tree=up,
        downstream_tree=down,
    )


@router.get("/quality/runs", response_model=list[QualityRun], tags=["quality"])
def quality_runs(
    svc: Svc,
    table: Annotated[str | None, Query(description="only this table's runs")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[QualityRun]:
    """Recorded data quality runs, newest first."""
    from fluvial.quality import open_history

    return [
        QualityRun.model_validate(r) for r in open_history(svc.project).runs(table, limit=limit)
    ]


@router.get("/batch/runs", response_model=list[BatchRun], tags=["batch"])
def batch_runs(svc: Svc, limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> list[BatchRun]:
    """Batch runs and backfills, newest first."""
    from fluvial.batch.runner import history

    return [BatchRun.model_validate(r) for r in history(svc.project).runs(limit)]


# -- SQL ---------------------------------------------------------------------------------------------


@router.post(
    "/sql",
    response_model=SqlResult,
    tags=["sql"],
    responses={200: {"content": {"text/csv": {}}}},
)
def sql(svc: Svc, caller: Caller, body: SqlRequest, format: Format = "json") -> Any:
    """Run one SELECT (or EXPLAIN) over the lake (tables are ``zone.table``) as the caller,
    governed: its first ``limit`` rows, as columns and rows, or as CSV with ``?format=csv``."""
    from fluvial.serve.api.sql import execute_sql

    api = svc.settings.api
    cap = min(api.sql_max_rows, svc.settings.govern.sql_max_rows)
    if body.limit > cap:
        raise UsageError(f"limit must be at most {cap:,}; found {body.limit:,}")
    timeout = min(api.sql_timeout_seconds, svc.settings.govern.sql_timeout_seconds)
    result = execute_sql(svc.project, body.sql, limit=body.limit, timeout=timeout, principal=caller)
    if format == "csv":
        return _csv(to_csv(result.table), "result")
    return SqlResult(
        columns=[ColumnOut(**c) for c in column_types(result.table)],
        rows=to_rows(result.table),
        row_count=result.table.num_rows,
        truncated=result.truncated,
        elapsed_ms=result.elapsed_ms,
        limit=body.limit,
    )
