"""The stream planner: a parsed script becomes a :class:`Job` of linear pipelines.

``build_job(script)`` plans (raising SqlError / UnsupportedSqlError at line and column);
``explain(job)`` renders the operator trees; ``nodes`` holds the frozen plan nodes.
"""

from fluvial.stream.plan.build import build_job, parse_duration_ms
from fluvial.stream.plan.explain import explain
from fluvial.stream.plan.nodes import Calc, Job, Pipeline, Scan, SinkNode, WindowAgg

__all__ = [
    "Calc",
    "Job",
    "Pipeline",
    "Scan",
    "SinkNode",
    "WindowAgg",
    "build_job",
    "explain",
    "parse_duration_ms",
]
