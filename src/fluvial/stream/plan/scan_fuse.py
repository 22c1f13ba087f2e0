"""Plan pass: fuse a scan's computed columns into the pipeline's first step.

Without it, a source with computed columns costs a DuckDB query per micro-batch that
copies every column (Nexmark's three nested ROWs included) back to Arrow only to add
``dateTime``, before the first step's query reads it all again. Nested as that step's
``FROM (…) AS batch`` (as Flink merges the computed-column Calc with the query's), one
query reads the raw batch and DuckDB prunes what the query does not use.

The watermark must still see *every* row, before any filter: the scan's watermark
candidate becomes its own aggregate query over the computed columns,
``SELECT max(rowtime) AS wm FROM (computed columns) AS batch`` (the ``- delay`` stays
vectorized in the runtime), which DuckDB evaluates without materializing anything but
the rowtime. A computed column that is not deterministic (``NOW()``, ``RAND()``,
``PROCTIME()``…) would differ between the two queries, so such scans are left alone.

>>> from fluvial.stream.plan.nodes import Scan
>>> from fluvial.stream.sql.ast import CreateTable
>>> scan = Scan(CreateTable("t", (), {}), ("a", "ts"),
...     computed_sql="SELECT a, a + 1 AS ts FROM batch", rowtime="ts", watermark_delay_ms=5)
>>> calc = Calc("SELECT a FROM batch WHERE a > 0", ("a",))
>>> (fused,) = fuse_scan_steps(scan, (calc,))[1]
>>> fused.sql
'SELECT a FROM (SELECT a, a + 1 AS ts FROM batch) AS batch WHERE a > 0'
>>> fuse_scan_steps(scan, (calc,))[0].watermark_sql
'SELECT MAX("ts") AS wm FROM (SELECT a, a + 1 AS ts FROM batch) AS batch'
"""

from __future__ import annotations

import dataclasses

import sqlglot
from sqlglot import exp

from fluvial.stream.plan.fuse import nest
from fluvial.stream.plan.nodes import (
    BATCH,
    Calc,
    Chain,
    GroupAgg,
    Job,
    Pipeline,
    Scan,
    Step,
    WindowAgg,
    map_chains,
)

__all__ = ["fuse_scan_job", "fuse_scan_steps"]

#: functions whose value differs between two evaluations of the same row
VOLATILE = frozenset(
    {
        "now",
        "random",
        "rand",
        "uuid",
        "gen_random_uuid",
        "proctime",
        "current_timestamp",
        "current_time",
        "current_date",
        "localtimestamp",
        "localtime",
        "get_current_timestamp",
        "unix_timestamp",
        "nextval",
    }
)


def _volatile(sql: str) -> bool:
    tree = sqlglot.parse_one(sql, read="duckdb")
    for node in tree.walk():
        if isinstance(node, exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if name in VOLATILE or isinstance(
                node, exp.Rand | exp.CurrentTimestamp | exp.CurrentDate | exp.CurrentTime
            ):
                return True
    return False


def fuse_scan_steps(scan: Scan, steps: tuple[Step, ...]) -> tuple[Scan, tuple[Step, ...]]:
    """*scan* and *steps* with the computed columns moved into the first step (and into
    the watermark query); unchanged when that is not possible."""
    if scan.computed_sql is None or not steps or _volatile(scan.computed_sql):
        return scan, steps
    computed = Calc(scan.computed_sql, scan.columns)
    first = steps[0]
    try:
        if isinstance(first, Calc):
            fused: Step = nest(computed, first)
        elif isinstance(first, WindowAgg | GroupAgg):
            fused = dataclasses.replace(first, pre=nest(computed, first.pre))
        else:  # a Python step needs the computed columns materialized
            return scan, steps
        watermark_sql = scan.watermark_sql
        if scan.rowtime is not None:
            if watermark_sql is None:
                rowtime = exp.to_identifier(scan.rowtime, quoted=True).sql(dialect="duckdb")
                watermark_sql = f"SELECT max({rowtime}) AS wm FROM {BATCH}"
            watermark_sql = nest(computed, Calc(watermark_sql, ("wm",))).sql
    except ValueError:  # a step that does not read ``batch`` once: keep the scan's query
        return scan, steps
    row_sql = scan.row_watermark_sql
    if scan.rowtime is not None:  # per-row watermarks read the computed rowtime the same way
        rowtime = exp.to_identifier(scan.rowtime, quoted=True).sql(dialect="duckdb")
        row_sql = nest(
            computed, Calc(row_sql or f"SELECT {rowtime} AS wm FROM {BATCH}", ("wm",))
        ).sql
    fused_scan = dataclasses.replace(
        scan, computed_sql=None, watermark_sql=watermark_sql, row_watermark_sql=row_sql
    )
    return fused_scan, (fused, *steps[1:])


def _chain(chain: Chain) -> Chain:
    if not isinstance(chain.source, Scan):
        return chain
    scan, steps = fuse_scan_steps(chain.source, chain.steps)
    return Chain(scan, steps)


def _pipeline(p: Pipeline) -> Pipeline:
    root = _chain(Chain(map_chains(p.scan, _chain), p.steps))
    return dataclasses.replace(p, scan=root.source, steps=root.steps)


def fuse_scan_job(job: Job) -> Job:
    """Apply :func:`fuse_scan_steps` to every pipeline of *job*."""
    return dataclasses.replace(job, pipelines=tuple(_pipeline(p) for p in job.pipelines))
