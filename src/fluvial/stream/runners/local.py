"""``--runner local``: the job on PyFlink's local mini-cluster, through ``.venv-flink``.

The statements go to :func:`fluvial.stream.flink.run_on_flink` (the session
configuration first, as ``SET``; the ``INSERT`` statements as one statement set). A
bounded job is waited for, up to the ``[flink] timeout_seconds``; an unbounded one runs
until Ctrl-C — or :data:`UNBOUNDED_LIMIT_S` at most: the mini-cluster is for trying a
job on Flink, a cluster (``--runner gateway``) is for running it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from fluvial.stream.flink import find_flink_python, run_on_flink
from fluvial.stream.runners.base import Deployment, FlinkRunner

if TYPE_CHECKING:
    from fluvial.config import FlinkSettings
    from fluvial.stream.deploy import FlinkJob

__all__ = ["UNBOUNDED_LIMIT_S", "LocalRunner"]

#: the longest an unbounded job runs on the mini-cluster (the OS caps a poll's timeout
#: near 24.8 days)
UNBOUNDED_LIMIT_S = 20 * 24 * 3600.0


class LocalRunner(FlinkRunner):
    """Runs jobs on the local mini-cluster of the PyFlink at *python* (default: found by
    :func:`~fluvial.stream.flink.find_flink_python`)."""

    name: ClassVar[str] = "local"

    def __init__(self, python: Path | None = None, *, timeout: float = 600.0) -> None:
        self.python = python
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: FlinkSettings) -> LocalRunner:
        return cls(timeout=settings.timeout_seconds)

    @staticmethod
    def script(job: FlinkJob) -> str:
        """The text handed to the PyFlink driver: configuration, then the statements."""
        return "".join(f"{s};\n" for s in [*job.config_statements(), *job.statements])

    def deploy(self, job: FlinkJob) -> Deployment:
        python = self.python or find_flink_python()
        started = time.monotonic()
        state = "finished"
        if job.bounded:
            run_on_flink(self.script(job), python=python, timeout=self.timeout)
        else:
            try:
                run_on_flink(self.script(job), python=python, timeout=UNBOUNDED_LIMIT_S)
            except KeyboardInterrupt:  # the driver is killed with its mini-cluster
                state = "stopped"
        return Deployment(
            runner=self.name,
            job=job.name,
            state=state,
            seconds=round(time.monotonic() - started, 3),
            where="local mini-cluster",
        )
