"""Building one model: bind its inputs, run its SELECT, check it, write it one commit.

=================  ==================================================================
materialized       what a run writes
=================  ==================================================================
``view``           marts only: ``CREATE OR REPLACE VIEW marts.x AS <sql>``
``table``          every row, replacing the table (one overwrite commit)
``incremental``    ``append``: the new rows; ``merge``: new rows replace the rows with
                   the same ``unique_key``; ``insert_overwrite``: new rows replace the
                   partitions they fall in — each one commit; the first run (and
                   ``full_refresh``) builds the whole table
``snapshot``       SCD type 2 versions (see :mod:`fluvial.batch.snapshot`)
=================  ==================================================================

**New data only.** An incremental model reads, of each *append-only* upstream (the raw
zone, or an incremental ``append`` model), only the rows appended since its last
successful run: the output's commits record the upstream snapshot ids they were computed
from (``fluvial.batch.positions``), and the next run reads the appends after them
(pyiceberg's incremental append scan). A crash between compute and commit records
nothing, so the next run starts from the same positions. Other upstreams are read whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fluvial.batch.engines.base import Engine, IcebergInput, Input
from fluvial.batch.hooks import QualityOutcome, RunHooks
from fluvial.batch.models import Model
from fluvial.batch.snapshot import snapshot_changes
from fluvial.batch.targets import (
    LakeTarget,
    Partitions,
    Target,
    WarehouseTarget,
    Write,
    partitions_in,
)
from fluvial.batch.warehouse import Warehouse
from fluvial.errors import BatchError, UsageError

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from fluvial.lake.catalog import Lake
    from fluvial.project import Project

__all__ = ["BuildContext", "BuildResult", "backfill_day", "build", "read_new_rows"]


@dataclass
class BuildContext:
    """What building models in one run shares."""

    project: Project
    lake: Lake
    engine: Engine
    warehouse: Warehouse | None
    models: Mapping[str, Model]
    hooks: RunHooks
    run_id: str
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    full_refresh: bool = False

    def target(self, model: Model) -> Target:
        """Where *model*'s output goes."""
        if model.in_lake:
            return LakeTarget(self.lake, model.name, model.config.partition_by)
        if self.warehouse is None:
            raise BatchError(f"{model.name}: a mart needs the warehouse, which is not open")
        return WarehouseTarget(self.warehouse, model.name)

    def append_only(self, name: str) -> bool:
        """Whether rows of table *name* are only ever appended (so new ones can be read alone)."""
        model = self.models.get(name)
        if model is not None:
            cfg = model.config
            return model.in_lake and cfg.materialized == "incremental" and cfg.strategy == "append"
        zone = self.lake.zones.get(name.partition(".")[0])
        return zone is not None and zone.append_only


@dataclass
class BuildResult:
    """What building one model did."""

    status: str  # success | up_to_date
    rows_in: int = 0
    rows_written: int = 0
    inputs: list[str] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    quality: QualityOutcome | None = None
    schema: pa.Schema | None = None
    message: str = ""


def read_new_rows(table: Table, name: str, since: int, until: int) -> pa.Table:
    """The rows appended to *table* after snapshot *since*, up to snapshot *until*.

    Raises:
        BatchError: *since* is no longer an ancestor (expired, or the table was rebuilt),
            or rows were rewritten since (then only a full refresh is right).
    """
    from pyiceberg.table.snapshots import Operation

    chain = _ancestry(table, until)
    ids = [snap.snapshot_id for snap in chain]
    if since not in ids:
        raise BatchError(
            f"{name} no longer has snapshot {since}, where the last run stopped reading it "
            "(expired or rebuilt); run with --full-refresh"
        )
    for snap in chain[: ids.index(since)]:
        summary = snap.summary
        if summary is not None and summary.operation == Operation.OVERWRITE:
            raise BatchError(
                f"{name} was rewritten (snapshot {snap.snapshot_id}) since the last run read "
                "it; run with --full-refresh"
            )
    scan = table.incremental_append_scan(
        from_snapshot_id_exclusive=since, to_snapshot_id_inclusive=until
    )
    return scan.to_arrow()


def _ancestry(table: Table, snapshot_id: int) -> list[Any]:
    out = []
    snap = table.snapshot_by_id(snapshot_id)
    while snap is not None:
        out.append(snap)
        parent = snap.parent_snapshot_id
        snap = table.snapshot_by_id(parent) if parent is not None else None
    return out


def _total(table: Table) -> int:
    snap = table.current_snapshot()
    summary = snap.summary if snap is not None else None
    return int((summary and summary["total-records"]) or 0)


def _inputs(
    model: Model, ctx: BuildContext, previous: dict[str, int] | None
) -> tuple[dict[str, Input], dict[str, int], int, bool]:
    """(inputs, positions, rows read, whether any append-only upstream has new rows)."""
    inputs: dict[str, Input] = {}
    positions: dict[str, int] = {}
    rows = 0
    fresh = False
    for dep in model.depends_on:
        if dep.partition(".")[0] == "marts":
            if not ctx.engine.reads_warehouse:
                assert ctx.warehouse is not None
                value = WarehouseTarget(ctx.warehouse, dep).as_input()
                assert isinstance(value, pa.Table)
                inputs[dep] = value
                rows += value.num_rows
            continue
        table = ctx.lake.table(dep)
        snap = table.current_snapshot()
        empty = table.schema().as_arrow().empty_table()
        append_only = ctx.append_only(dep)
        if append_only and snap is not None:
            positions[dep] = snap.snapshot_id
        since = previous.get(dep) if previous is not None else None
        if append_only and since is not None and snap is not None:
            if since == snap.snapshot_id:
                inputs[dep] = empty
            else:
                new = read_new_rows(table, dep, since, snap.snapshot_id)
                inputs[dep] = new
                rows += new.num_rows
                fresh = True
            continue
        fresh = fresh or append_only
        inputs[dep] = IcebergInput(table.metadata_location) if snap is not None else empty
        rows += _total(table)
    return inputs, positions, rows, fresh


def _check_keys(model: Model, data: pa.Table) -> None:
    keys = list(model.config.unique_key)
    missing = [k for k in keys if k not in data.schema.names]
    if missing:
        raise UsageError(f"{model.name}: unique_key column '{missing[0]}' is not in its output")
    for key in keys:
        if data.column(key).null_count:
            raise BatchError(f"{model.name}: unique_key '{key}' is null in some rows")
    distinct = data.select(keys).group_by(keys).aggregate([]).num_rows
    if distinct != data.num_rows:
        raise BatchError(
            f"{model.name}: {data.num_rows - distinct} row(s) repeat a unique_key "
            f"({', '.join(keys)}); make the SELECT return one row per key"
        )


def _checked(model: Model, ctx: BuildContext, data: pa.Table) -> QualityOutcome:
    outcome = ctx.hooks.check_output(model, ctx.run_id, data)
    return outcome


def build(model: Model, ctx: BuildContext) -> BuildResult:
    """Build *model* as its materialization says (one commit), reading new data only when
    it is incremental.

    Raises:
        BatchError: the output breaks the model's contract (repeated keys, lost position).
        SqlError: the engine failed the SELECT.
    """
    cfg = model.config
    if cfg.materialized == "view":
        assert ctx.warehouse is not None
        ctx.warehouse.con.execute(
            f"CREATE OR REPLACE VIEW {model.zone}.{model.table} AS {model.sql}"
        )
        return BuildResult("success", inputs=list(model.depends_on), message="view replaced")
    target = ctx.target(model)
    exists = target.exists()
    incremental = cfg.materialized == "incremental" and exists and not ctx.full_refresh
    previous = target.positions() if incremental else None
    inputs, positions, rows_in, fresh = _inputs(model, ctx, previous)
    has_append_upstream = any(ctx.append_only(d) for d in model.depends_on)
    if incremental and has_append_upstream and not fresh:
        return BuildResult(
            "up_to_date",
            inputs=list(model.depends_on),
            positions=positions,
            message="no new rows upstream",
        )
    write = Write(ctx.run_id, positions)
    if _streams(model, ctx, incremental):
        written, schema = _build_streamed(model, ctx, inputs, write)
        if ctx.warehouse is not None:
            ctx.warehouse.refresh(model.name)
        return BuildResult(
            "success",
            rows_in=rows_in,
            rows_written=written,
            inputs=list(model.depends_on),
            positions=positions,
            quality=QualityOutcome(schema.empty_table()),
            schema=schema,
        )
    data = ctx.engine.run_select(model.sql, inputs)
    outcome = _checked(model, ctx, data)
    rows = outcome.data
    if cfg.materialized == "snapshot":
        _check_keys(model, data)
        current = target.current_rows()
        changes = snapshot_changes(
            current,
            rows,
            cfg.unique_key,
            ctx.now,
            check_cols=cfg.check_cols,
            invalidate_hard_deletes=cfg.invalidate_hard_deletes,
            present_keys=data.select(list(cfg.unique_key)),
        )
        target.overwrite_keys(changes, cfg.unique_key, write, current_only=True)
        written = changes.num_rows
    elif cfg.materialized == "table" or not incremental:
        if cfg.strategy == "merge":
            _check_keys(model, rows)
        target.replace(rows, write)
        written = rows.num_rows
    elif cfg.strategy == "append":
        target.append(rows, write)
        written = rows.num_rows
    elif cfg.strategy == "merge":
        _check_keys(model, rows)
        target.overwrite_keys(rows, cfg.unique_key, write)
        written = rows.num_rows
    else:  # insert_overwrite
        assert cfg.partition_by is not None
        if cfg.partition_by.column not in rows.schema.names:
            raise UsageError(
                f"{model.name}: partition_by column '{cfg.partition_by.column}' is not in "
                "its output"
            )
        target.overwrite_partitions(rows, partitions_in(rows, cfg.partition_by), write)
        written = rows.num_rows
    if ctx.warehouse is not None and model.in_lake:
        ctx.warehouse.refresh(model.name)
    return BuildResult(
        "success",
        rows_in=rows_in,
        rows_written=written,
        inputs=list(model.depends_on),
        positions=positions,
        quality=outcome,
        schema=rows.schema,
    )


def _streams(model: Model, ctx: BuildContext, incremental: bool) -> bool:
    """Whether *model*'s output can be streamed into its lake table in batches: a whole
    rebuild (``table``, or an incremental model's first run or full refresh), with no hook
    that must see every row at once. Incremental runs read new rows only and stay in
    memory."""
    from fluvial.batch.hooks import _checks

    cfg = model.config
    if not model.in_lake or _checks(ctx.hooks, model):
        return False
    return cfg.materialized == "table" or (cfg.materialized == "incremental" and not incremental)


def _build_streamed(
    model: Model, ctx: BuildContext, inputs: dict[str, Input], write: Write
) -> tuple[int, pa.Schema]:
    """Stage the SELECT's result with the engine, check its keys there, and write it in
    batches of ``[batch] batch_rows`` in one commit; return (rows written, schema)."""
    cfg = model.config
    target = ctx.target(model)
    assert isinstance(target, LakeTarget)
    rows = ctx.project.settings.batch.batch_rows
    with ctx.engine.stage_select(model.sql, inputs) as staged:
        if cfg.strategy == "merge":
            missing = [k for k in cfg.unique_key if k not in staged.schema.names]
            if missing:
                raise UsageError(
                    f"{model.name}: unique_key column '{missing[0]}' is not in its output"
                )
            nulls, repeated = staged.key_problems(cfg.unique_key)
            if nulls:
                raise BatchError(f"{model.name}: unique_key is null in {nulls} row(s)")
            if repeated:
                raise BatchError(
                    f"{model.name}: {repeated} row(s) repeat a unique_key "
                    f"({', '.join(cfg.unique_key)}); make the SELECT return one row per key"
                )
        written = target.write_batches(
            staged.schema, lambda: staged.batches(rows), write, replace=True
        )
        return written, staged.schema


def day_start(day: date) -> datetime:
    """Midnight UTC of *day*."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def backfill_day(model: Model, ctx: BuildContext, day: date) -> BuildResult:
    """Rebuild *day*'s rows of a model partitioned by time: its SELECT, filtered to the day,
    replaces the day's rows in one commit (idempotent).

    Append-only upstreams are read at the positions the output last recorded, so a later
    incremental run neither misses nor repeats their rows.
    """
    by = model.config.partition_by
    assert by is not None and by.is_time
    target = ctx.target(model)
    pinned = target.positions()
    inputs, _, rows_in, _ = _inputs(model, ctx, None)
    for dep, snapshot_id in pinned.items():
        value = inputs.get(dep)
        if isinstance(value, IcebergInput):
            inputs[dep] = IcebergInput(value.metadata_location, snapshot_id)
    start = day_start(day)
    end = start + timedelta(days=1)
    column = f'"{by.column}"'
    sql = (
        f"SELECT * FROM ({model.sql}) AS __model WHERE {column} >= "
        f"'{start.isoformat(sep=' ')}' AND {column} < '{end.isoformat(sep=' ')}'"
    )
    data = ctx.engine.run_select(sql, inputs)
    outcome = _checked(model, ctx, data)
    parts = Partitions(by.column, "day", (start,))
    target.overwrite_partitions(outcome.data, parts, Write(ctx.run_id, pinned))
    if ctx.warehouse is not None and model.in_lake:
        ctx.warehouse.refresh(model.name)
    return BuildResult(
        "success",
        rows_in=rows_in,
        rows_written=outcome.data.num_rows,
        inputs=list(model.depends_on),
        positions=pinned,
        quality=outcome,
        schema=outcome.data.schema,
    )
