"""The HTTP API's request and response bodies, as pydantic models (what OpenAPI shows)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fluvial.serve.alerts.sources import PipelineStatus

__all__ = [
    "AlertHistoryEntry",
    "AlertRuleOut",
    "AlertStateOut",
    "BatchRun",
    "ColumnOut",
    "ErrorBody",
    "Health",
    "LakeColumn",
    "LakeSnapshot",
    "LakeTableInfo",
    "LakeTableItem",
    "Lineage",
    "LiveMetrics",
    "LiveTable",
    "PipelineStatus",
    "PipelineSummary",
    "QualityRun",
    "Rows",
    "SqlRequest",
    "SqlResult",
    "StoreRow",
    "StoreTableItem",
]


class ErrorBody(BaseModel):
    """Every error: the error's type, its message and the HTTP status."""

    error: str = Field(examples=["NotFoundError"])
    message: str = Field(examples=["store table 'scors' does not exist; did you mean 'scores'?"])
    status: int = Field(examples=[404])
    detail: list[dict[str, Any]] | None = None


class Health(BaseModel):
    """The API answers, and for which project."""

    status: Literal["ok"] = "ok"
    project: str
    version: str
    time: str


class ColumnOut(BaseModel):
    """A result column: its name and Arrow type."""

    name: str
    type: str


class Rows(BaseModel):
    """A table of values: columns, then rows as arrays in column order."""

    columns: list[ColumnOut]
    rows: list[list[Any]]
    row_count: int
    truncated: bool = False


class SqlRequest(BaseModel):
    """A query over the lake: one SELECT (or EXPLAIN) statement."""

    model_config = ConfigDict(extra="forbid")

    sql: str = Field(
        min_length=1, examples=["SELECT event_type, count(*) FROM raw.events GROUP BY 1"]
    )
    limit: int = Field(
        default=1000, ge=1, description="rows returned at most (up to the server's cap)"
    )


class SqlResult(Rows):
    """A query's rows; ``truncated`` when the query had more than the limit."""

    elapsed_ms: float
    limit: int


class StoreTableItem(BaseModel):
    """An operational store table."""

    name: str
    key: list[str]
    columns: list[ColumnOut]
    rows: int


class StoreRow(BaseModel):
    """One store row, found by key."""

    table: str
    key: list[str]
    row: dict[str, Any]


class PipelineSummary(BaseModel):
    """The stream pipelines at a glance."""

    pipelines: int
    running: int
    events_per_second: float | None
    rows_in: int
    late_rows: int
    max_lag_seconds: float | None


class LiveTable(Rows):
    """A live store table: its key, how many rows it holds and its newest rows (by key)."""

    table: str
    key: list[str]
    total_rows: int


class LiveMetrics(BaseModel):
    """What the live dashboard shows, as of ``time``."""

    time: str
    tables: list[LiveTable]
    missing: list[str] = Field(description="configured live tables that do not exist (yet)")
    pipelines: PipelineSummary


class LakeTableItem(BaseModel):
    """A lake table: ``zone.table``."""

    name: str
    zone: str


class LakeColumn(BaseModel):
    """A lake table's column (nested fields as ``parent.child``)."""

    id: int
    name: str
    type: str
    required: bool
    doc: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class LakeTableInfo(BaseModel):
    """What the catalog knows of a lake table."""

    name: str
    location: str
    format_version: int
    uuid: str
    description: str | None
    owner: str | None
    tags: dict[str, str]
    columns: list[LakeColumn]
    partition_spec: list[dict[str, Any]]
    sort_order: list[dict[str, Any]]
    current_snapshot_id: int | None
    rows: int
    data_files: int
    delete_files: int
    bytes: int
    snapshots: int
    freshness: str | None
    last_updated: str
    properties: dict[str, str]


class LakeSnapshot(BaseModel):
    """One snapshot of a lake table."""

    snapshot_id: int
    parent_id: int | None
    timestamp: str
    operation: str
    summary: dict[str, str]
    current: bool
    in_main: bool


class Lineage(BaseModel):
    """What a dataset is built from and what is built from it."""

    dataset: str
    upstream: list[str]
    downstream: list[str]
    upstream_tree: dict[str, Any]
    downstream_tree: dict[str, Any]


class QualityRun(BaseModel):
    """A recorded data quality evaluation."""

    run_id: str
    table_name: str
    evaluated_at: str
    passed: bool
    row_count: int
    failing_rows: int
    errors: int
    warnings: int


class BatchRun(BaseModel):
    """A batch run (or backfill) and how many models it built."""

    run_id: str
    kind: str
    selection: str | None = None
    engine: str | None = None
    full_refresh: bool | None = None
    started_at: str
    finished_at: str | None = None
    status: str
    error: str | None = None
    models: int
    errors: int


class AlertStateOut(BaseModel):
    """A rule's state now."""

    rule: str
    state: Literal["OK", "PENDING", "FIRING", "RESOLVED"]
    since: str | None = None
    pending_since: str | None = None
    value: float | None = None
    last_notified: str | None = None
    evaluated_at: str | None = None
    message: str | None = None
    error: str | None = None


class AlertRuleOut(BaseModel):
    """A rule: its definition, where it is defined, what it checks and its state."""

    name: str
    origin: Literal["file", "api", "sla"]
    summary: str
    rule: dict[str, Any]
    state: AlertStateOut


class AlertHistoryEntry(BaseModel):
    """A rule's state change."""

    id: int
    rule: str
    at: str | None
    from_state: str
    to_state: str
    value: float | None
    message: str
    notified: bool
    deliveries: list[dict[str, Any]]
