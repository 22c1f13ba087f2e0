"""``EXPLAIN`` for a planned job: each pipeline as a tree, sink at the top, like Flink's.

>>> from fluvial.stream.ops.spec import WindowSpec
>>> _window(WindowSpec.hop(60_000, 10_000))
'HOP(size=[1 min], slide=[10 s])'
"""

from __future__ import annotations

from fluvial.stream.ops.spec import WindowSpec
from fluvial.stream.plan.nodes import (
    Calc,
    Dedup,
    GroupAgg,
    Job,
    Join,
    LookupJoin,
    Pipeline,
    PyStep,
    PyWindow,
    Scan,
    Source,
    Step,
    TopN,
    WindowBuffer,
)

__all__ = ["explain"]


def _duration(ms: int) -> str:
    for unit, size in (("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


def _window(spec: WindowSpec) -> str:
    if spec.kind == "tumble":
        parts = [f"size=[{_duration(spec.size_ms)}]"]
    elif spec.kind == "hop":
        parts = [f"size=[{_duration(spec.size_ms)}]", f"slide=[{_duration(spec.slide_ms)}]"]
    elif spec.kind == "cumulate":
        parts = [f"max_size=[{_duration(spec.size_ms)}]", f"step=[{_duration(spec.step_ms)}]"]
    else:
        parts = [f"gap=[{_duration(spec.gap_ms)}]"]
        if spec.partition_by:
            parts.append(f"partition_by=[{', '.join(spec.partition_by)}]")
    if spec.offset_ms:
        parts.append(f"offset=[{_duration(spec.offset_ms)}]")
    return f"{spec.kind.upper()}({', '.join(parts)})"


def _scan_lines(scan: Scan) -> list[str]:
    t = scan.table
    lines = []
    if t.watermark is not None:
        lines.append(
            f"WatermarkAssigner(rowtime=[{t.watermark.column}], watermark=[{t.watermark.expr.sql()}])"
        )
    computed = [c for c in t.columns if c.expr is not None]
    if computed:
        lines.append(
            "Calc(select=["
            + ", ".join(
                c.name if c.expr is None else f"{c.expr.sql()} AS {c.name}" for c in t.columns
            )
            + "])"
        )
    connector = t.options.get("connector", "?")
    fields = ", ".join(c.name for c in t.physical)
    lines.append(f"TableSourceScan(table=[{t.name}], connector=[{connector}], fields=[{fields}])")
    return lines


def _pipeline_lines(p: Pipeline) -> list[tuple[int, str]]:
    """Top-down (sink first, sources last), each line with its depth in the tree."""
    sink = f"Sink(table=[{p.sink.table.name}], fields=[{', '.join(p.sink.targets)}])"
    return [(0, sink), *_chain_lines(p.scan, p.steps, 1)]


def _chain_lines(source: Source, steps: tuple[Step, ...], depth: int) -> list[tuple[int, str]]:
    lines = _step_lines(steps)
    out = [(depth + k, line) for k, line in enumerate(lines)]
    depth += len(lines)
    if isinstance(source, Scan):
        out += [(depth + k, line) for k, line in enumerate(_scan_lines(source))]
    elif isinstance(source, Join):
        spec = source.spec
        out.append(
            (depth, f"{spec.kind.capitalize()}Join(joinType=[{spec.how.upper()}], {spec.detail})")
        )
        for sub in (source.left, source.right):
            out += _chain_lines(sub.source, sub.steps, depth + 1)
    else:
        out.append((depth, f"Union(all=[true], union=[{', '.join(source.columns)}])"))
        for sub in source.inputs:
            out += _chain_lines(sub.source, sub.steps, depth + 1)
    return out


def _step_lines(steps: tuple[Step, ...]) -> list[str]:
    lines: list[str] = []
    for step in reversed(steps):
        if isinstance(step, Calc):
            lines.append(f"{step.what}({step.detail})")
            continue
        if isinstance(step, PyStep | PyWindow):  # the dataflow API's Python steps
            label = step.name if "(" in step.name else f"{type(step).__name__}(name=[{step.name}])"
            lines.append(label)
            continue
        if isinstance(step, Dedup):
            order = "DESC" if step.keep_last else "ASC"
            lines.append(
                f"Deduplicate(keep=[{'LastRow' if step.keep_last else 'FirstRow'}], "
                f"key=[{', '.join(step.keys)}], order=[{step.time_col} {order}])"
            )
            continue
        if isinstance(step, LookupJoin):
            lines.append(f"LookupJoin({step.detail})")
            continue
        if isinstance(step, TopN):
            order = ", ".join(f"{c} {'DESC' if d else 'ASC'}" for c, d, _ in step.order)
            lines.append(
                f"Rank(rankType=[ROW_NUMBER], rankRange=[rankStart=1, rankEnd={step.n}], "
                f"partitionBy=[{', '.join(step.keys)}], orderBy=[{order}])"
            )
            continue
        if isinstance(step, WindowBuffer):
            lines.append(
                f"WindowTableFunction(window=[{_window(step.spec)} ON {step.time_col}], buffered)"
            )
            continue
        lines.append(f"Calc({step.post.detail})")
        aggs = ", ".join(
            (
                f"{a.func.upper().replace('_STAR', '(*)').replace('_DISTINCT', ' DISTINCT')}"
                f"{'' if a.arg is None else f'({a.arg})'}"
                f"{'' if a.filter is None else f' FILTER {a.filter}'} AS {a.name}"
            )
            for a in step.aggs
        )
        if isinstance(step, GroupAgg):
            ttl = f", stateTtl=[{_duration(step.ttl_ms)}]" if step.ttl_ms else ""
            lines.append(f"GroupAggregate(groupBy=[{', '.join(step.keys)}], select=[{aggs}]{ttl})")
        else:
            lines.append(
                f"WindowAggregate(groupBy=[{', '.join(step.keys)}], "
                f"window=[{_window(step.spec)} ON {step.time_col}], select=[{aggs}])"
            )
        lines.append(f"Calc({step.pre.detail})")
    return lines


def explain(job: Job) -> str:
    """The job's operator plan as indented trees, one per INSERT."""
    out = [f"== Job {job.name}: {len(job.pipelines)} pipeline(s) =="]
    for p in job.pipelines:
        where = f" (line {p.line})" if p.line else ""
        out.append("")
        out.append(f"-- {p.name}{where}")
        for depth, line in _pipeline_lines(p):
            out.append(("   " * (depth - 1) + "+- " if depth else "") + line)
    if job.settings:
        out.append("")
        out.append("SET " + ", ".join(f"{k}={v}" for k, v in job.settings.items()))
    return "\n".join(out)
