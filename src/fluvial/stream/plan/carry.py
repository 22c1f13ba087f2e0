"""Plan pass: carry hidden columns through the stateless steps.

Three columns travel beside a pipeline's own, when a feature needs them:

* ``__wm`` — each row's own watermark (``pipeline.auto-watermark-interval`` = 0), added
  by the runtime at the scan and read by the first window operator;
* ``__rid`` — each row's index in its source batch, so the rows a window operator drops
  as late can be written, whole, to the ``'fluvial.late-events.topic'`` side output;
* ``_op`` — the row kind of an updating result (a window with allowed lateness), from
  that window's output to the sink.

Every :class:`Calc` is plain ``SELECT … FROM batch`` (possibly nested by the fusing
passes), so carrying a column is appending it to every SELECT list of the query.

>>> carry_sql('SELECT a + 1 AS "b" FROM (SELECT a FROM batch WHERE a > 0) AS batch', ("__wm",))
'SELECT a + 1 AS "b", __wm FROM (SELECT a, __wm FROM batch WHERE a > 0) AS batch'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import sqlglot
from sqlglot import exp

from fluvial.stream.ops.keyed import OP, ROW_ID, ROW_WATERMARK
from fluvial.stream.plan.nodes import (
    Calc,
    GroupAgg,
    Job,
    Pipeline,
    PyWindow,
    Scan,
    Step,
    WindowAgg,
    is_updating,
)

__all__ = ["carry_job", "carry_sql"]


def carry_sql(sql: str, columns: Sequence[str]) -> str:
    """*sql* with *columns* passed through every SELECT."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    for select in list(tree.find_all(exp.Select)):
        select.select(*(exp.column(c) for c in columns), append=True, copy=False)
    return tree.sql(dialect="duckdb")


def _calc(calc: Calc, columns: Sequence[str]) -> Calc:
    return dataclasses.replace(calc, sql=carry_sql(calc.sql, columns))


def _pipeline(p: Pipeline) -> Pipeline:
    steps: list[Step] = list(p.steps)
    first = next(
        (i for i, s in enumerate(steps) if isinstance(s, WindowAgg | GroupAgg | PyWindow)), None
    )
    hidden: list[str] = []
    if first is not None and isinstance(steps[first], WindowAgg) and isinstance(p.scan, Scan):
        if all(isinstance(s, Calc) for s in steps[:first]):
            if p.scan.row_watermarks:
                hidden.append(ROW_WATERMARK)
            if p.scan.late_topic:
                hidden.append(ROW_ID)
        if hidden:
            for i in range(first):
                steps[i] = _calc(steps[i], hidden)  # type: ignore[arg-type]
            window = steps[first]
            assert isinstance(window, WindowAgg)
            steps[first] = dataclasses.replace(window, pre=_calc(window.pre, hidden))
    if p.updating:
        # the first updating step, or the source itself (an outer join): -1
        k = next((i for i, s in enumerate(steps) if is_updating(s)), -1)
        for i in range(max(k, 0), len(steps)):
            step = steps[i]
            if isinstance(step, Calc):
                steps[i] = _calc(step, (OP,))
            elif isinstance(step, WindowAgg | GroupAgg):
                pre = _calc(step.pre, (OP,)) if i > k else step.pre  # a retracting GROUP BY
                steps[i] = dataclasses.replace(step, pre=pre, post=_calc(step.post, (OP,)))
    return dataclasses.replace(p, steps=tuple(steps), carry=tuple(hidden))


def carry_job(job: Job) -> Job:
    """Apply the hidden columns each pipeline of *job* needs."""
    return dataclasses.replace(job, pipelines=tuple(_pipeline(p) for p in job.pipelines))
