"""Runners that deploy a :class:`~fluvial.stream.deploy.FlinkJob` to Apache Flink.

=========  ==========================================================================
runner     what it does
=========  ==========================================================================
local      runs the job on PyFlink's local mini-cluster (``.venv-flink``), waiting for a
           bounded job to finish and keeping an unbounded one running until Ctrl-C
gateway    submits the job to a Flink SQL Gateway over its REST API (v1) and returns
           Flink's job id; the job runs on the gateway's cluster
=========  ==========================================================================

``create_runner(name, settings)`` builds one from ``fluvial.toml``'s ``[flink]`` section;
runner modules are imported lazily.
"""

from __future__ import annotations

from fluvial.stream.runners.base import RUNNERS, Deployment, FlinkRunner, create_runner

__all__ = ["RUNNERS", "Deployment", "FlinkRunner", "create_runner"]
