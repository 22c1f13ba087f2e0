"""AWS deployment: a CloudFormation template for a project, and what it costs a month.

- :func:`~fluvial.aws.template.build_template`: the stack (Kinesis, S3 + Glue + Lake
  Formation, Athena, DynamoDB, IAM) from the project's settings, pipelines and grants;
- :func:`~fluvial.aws.cost.estimate`: the monthly cost of the equivalent AWS deployment,
  by service, from the dated price table in :mod:`fluvial.aws.prices`;
- :func:`~fluvial.aws.measured.measure`: the rates a running ``fluvial up`` measures, read
  from its ``/metrics``.
"""

from __future__ import annotations

from fluvial.aws.cost import CostBreakdown, Optimizations, Workload, estimate, savings
from fluvial.aws.grants import Grant, project_grants
from fluvial.aws.template import build_template, dump_template

__all__ = [
    "CostBreakdown",
    "Grant",
    "Optimizations",
    "Workload",
    "build_template",
    "dump_template",
    "estimate",
    "project_grants",
    "savings",
]
