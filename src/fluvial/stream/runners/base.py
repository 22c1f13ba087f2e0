"""The runner interface, its result and the registry of runners by name."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from fluvial.errors import UsageError, did_you_mean

if TYPE_CHECKING:
    from fluvial.config import FlinkSettings
    from fluvial.stream.deploy import FlinkJob

__all__ = ["RUNNERS", "Deployment", "FlinkRunner", "create_runner"]

#: runner name -> "module:Class"; adding a runner adds an entry
RUNNERS: dict[str, str] = {
    "local": "fluvial.stream.runners.local:LocalRunner",
    "gateway": "fluvial.stream.runners.gateway:GatewayRunner",
}


@dataclass(frozen=True)
class Deployment:
    """What a runner did with a job.

    ``state``: ``finished`` (a job run to its end), ``stopped`` (an unbounded local job
    stopped with Ctrl-C) or ``submitted`` (running on a cluster as Flink job ``job_id``).
    """

    runner: str
    job: str
    state: str
    job_id: str | None = None
    seconds: float = 0.0
    where: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FlinkRunner(ABC):
    """Runs or submits Flink jobs."""

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: FlinkSettings) -> FlinkRunner:
        """The runner as ``fluvial.toml``'s ``[flink]`` section configures it."""

    @abstractmethod
    def deploy(self, job: FlinkJob) -> Deployment:
        """Run or submit *job*.

        Raises:
            PipelineError: Flink refused a statement or the job failed (Flink's message).
            UsageError: the runner cannot start (no Flink installation, for instance).
        """


def create_runner(name: str, settings: FlinkSettings) -> FlinkRunner:
    """The runner called *name*, configured by *settings*.

    >>> from fluvial.config import FlinkSettings
    >>> create_runner("gatewy", FlinkSettings())
    Traceback (most recent call last):
      ...
    fluvial.errors.UsageError: unknown runner 'gatewy'; did you mean 'gateway'?; expected one of gateway, local
    """
    if name not in RUNNERS:
        raise UsageError(
            f"unknown runner {name!r}{did_you_mean(name, RUNNERS)}; "
            f"expected one of {', '.join(sorted(RUNNERS))}"
        )
    module, _, cls_name = RUNNERS[name].partition(":")
    cls: type[FlinkRunner] = getattr(importlib.import_module(module), cls_name)
    return cls.from_settings(settings)
