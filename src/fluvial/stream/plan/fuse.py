"""Plan pass: fuse consecutive stateless steps into one query (Flink's CalcMergeRule).

Every :class:`Calc` reads its input as ``batch``; running two in a row costs two DuckDB
queries per micro-batch. Nesting the first as the second's ``FROM (…) AS batch`` gives one
query that DuckDB's optimizer flattens, so a chain of views and projections costs what a
single projection costs. A window aggregate's ``pre`` projection fuses with the Calcs
before it the same way.

>>> a = Calc("SELECT x + 1 AS y FROM batch WHERE x > 0", ("y",))
>>> b = Calc("SELECT y * 2 AS z FROM batch", ("z",))
>>> fuse_calcs((a, b))[0].sql
'SELECT y * 2 AS z FROM (SELECT x + 1 AS y FROM batch WHERE x > 0) AS batch'
"""

from __future__ import annotations

import dataclasses

import sqlglot
from sqlglot import exp

from fluvial.stream.plan.nodes import (
    BATCH,
    Calc,
    Chain,
    GroupAgg,
    Job,
    Step,
    WindowAgg,
    map_chains,
)

__all__ = ["fuse_calcs", "fuse_job", "nest"]


def nest(inner: Calc, outer: Calc) -> Calc:
    """*outer* reading *inner*'s output: one query."""
    tree = sqlglot.parse_one(outer.sql, read="duckdb")
    tables = [t for t in tree.find_all(exp.Table) if t.name == BATCH and not t.args.get("db")]
    if len(tables) != 1:  # not a plain ``… FROM batch`` step: keep both
        raise ValueError(outer.sql)
    subquery = exp.Subquery(
        this=sqlglot.parse_one(inner.sql, read="duckdb"),
        alias=exp.TableAlias(this=exp.to_identifier(BATCH)),
    )
    tables[0].replace(subquery)
    detail = "; ".join(d for d in (inner.detail, outer.detail) if d)
    return dataclasses.replace(outer, sql=tree.sql(dialect="duckdb"), detail=detail)


def fuse_calcs(steps: tuple[Step, ...]) -> tuple[Step, ...]:
    """The same steps with every run of Calcs (and the next window's ``pre``) fused."""
    out: list[Step] = []
    for step in steps:
        previous = out[-1] if out else None
        if isinstance(previous, Calc):
            try:
                if isinstance(step, Calc):
                    out[-1] = nest(previous, step)
                    continue
                if isinstance(step, WindowAgg | GroupAgg):  # Python steps read batches
                    out[-1] = dataclasses.replace(step, pre=nest(previous, step.pre))
                    continue
            except ValueError:
                pass
        out.append(step)
    return tuple(out)


def _chain(chain: Chain) -> Chain:
    return dataclasses.replace(chain, steps=fuse_calcs(chain.steps))


def fuse_job(job: Job) -> Job:
    """Apply :func:`fuse_calcs` to every chain of every pipeline of *job*."""
    pipelines = tuple(
        dataclasses.replace(p, scan=map_chains(p.scan, _chain), steps=fuse_calcs(p.steps))
        for p in job.pipelines
    )
    return dataclasses.replace(job, pipelines=pipelines)
