"""What the API's routes share: the project and the stores it opens once and closes at
shutdown (the operational store, the lake catalog, the alert database), a pipeline sampler
and the API's Prometheus metrics."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from fluvial.serve.alerts.catalog import RuleCatalog
from fluvial.serve.alerts.sources import PipelineSampler, PipelineStatus
from fluvial.serve.alerts.store import AlertStore, open_alert_store

if TYPE_CHECKING:
    from fluvial.lake.catalog import Lake
    from fluvial.project import Project
    from fluvial.serve.store import Store

__all__ = ["ApiMetrics", "Services"]


class ApiMetrics:
    """``fluvial_api_requests_total{route,status}`` and request latency, in a registry of
    the app's own (so two apps in one process never clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "fluvial_api_requests",
            "API requests by route template and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fluvial_api_request_seconds",
            "API request latency by route template",
            ["route"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


class Services:
    """The project's stores, opened on first use (thread-safe) and closed by :meth:`close`."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.settings = project.settings
        self.sampler = PipelineSampler(project)
        self.metrics = ApiMetrics()
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._lake: Lake | None = None
        self._alerts: AlertStore | None = None

    @property
    def store(self) -> Store:
        """The operational store."""
        with self._lock:
            if self._store is None:
                from fluvial.serve.store import open_store

                self._store = open_store(self.project)
            return self._store

    @property
    def lake(self) -> Lake:
        """The lake catalog."""
        with self._lock:
            if self._lake is None:
                from fluvial.lake import open_lake

                self._lake = open_lake(self.project)
            return self._lake

    @property
    def alerts(self) -> AlertStore:
        """The alert database."""
        with self._lock:
            if self._alerts is None:
                self._alerts = open_alert_store(self.project)
            return self._alerts

    @property
    def rules(self) -> RuleCatalog:
        """The alert rules (file and API)."""
        return RuleCatalog(self.project, self.alerts)

    def pipelines(self) -> list[PipelineStatus]:
        """Every stream pipeline's status now."""
        return self.sampler.sample()

    def close(self) -> None:
        """Close what was opened."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
            if self._lake is not None:
                self._lake.close()
                self._lake = None
