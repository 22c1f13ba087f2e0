"""The platform's web app: the collector, the API, the UI and the metrics on one port.

:func:`create_platform_app` builds one Starlette app serving

- the collector's routes (``POST /v1/events``), from :func:`fluvial.collector.app.create_app`,
  whose lifespan (the ingest workers, log retention) runs inside this app's;
- ``GET /healthz`` (the collector's health check) and ``GET /metrics``: the Prometheus
  text of every registry — the collector's, the process-wide default one, the API's and
  the UI's when they expose one, and gauges read from ``fluvial up``'s status file and the
  stream pipelines' status files at scrape time;
- the HTTP API (:func:`fluvial.serve.api.create_api`, routes under ``/api/…``) and the web
  UI (:mod:`fluvial.serve.ui`, at ``/``), when those modules are importable.

``fluvial serve`` runs it under uvicorn (:func:`serve_platform`); ``fluvial up`` runs that
as one of its workers.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from fluvial.errors import FluvialError, UsageError
from fluvial.project import Project

__all__ = ["create_platform_app", "optional_api", "optional_ui", "serve_platform", "status_path"]

log = logging.getLogger(__name__)

_METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def status_path(project: Project) -> Path:
    """Where ``fluvial up`` writes its status file: ``<data_dir>/up/status.json``."""
    return project.data_dir / "up" / "status.json"


def _optional(module_name: str) -> Any | None:
    """The module, or None when it (or a dependency of it) is not installed."""
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        log.warning("%s is not served: %s", module_name, exc)
        return None


def optional_api(project: Project) -> Any | None:
    """The HTTP API app of :mod:`fluvial.serve.api`, or None while that module is absent."""
    module = _optional("fluvial.serve.api")
    if module is None or not hasattr(module, "create_api"):
        return None
    return module.create_api(project)


def optional_ui(project: Project) -> Any | None:
    """The web UI of :mod:`fluvial.serve.ui` (an ASGI app), or None while it is absent.

    The module may offer ``create_ui(project)`` (an app) or ``routes(project)`` (a list
    of Starlette routes).
    """
    module = _optional("fluvial.serve.ui")
    if module is None:
        return None
    if hasattr(module, "create_ui"):
        return module.create_ui(project)
    if hasattr(module, "routes"):
        return Starlette(routes=list(module.routes(project)))
    return None


class _KeepPath:
    """Mounted apps see the request's full path: their routes carry their own prefix.

    The API declares ``/api/...`` routes and the collector ``/v1/...``: mounted under a
    prefix, they still match because the mount's addition to ``root_path`` is undone.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = dict(scope)
            scope["root_path"] = scope.get("app_root_path", "")
        await self.app(scope, receive, send)


def _own_prefix(app: Any, prefix: str) -> bool:
    """Whether *app*'s routes already start with *prefix* (then it is mounted keeping paths)."""
    routes = getattr(app, "routes", None) or []
    paths = [getattr(r, "path", "") for r in routes]
    return any(p == prefix or p.startswith(prefix + "/") for p in paths)


class _PlatformCollector(Collector):
    """Gauges read from status files at scrape time: ``fluvial up``'s workers and the
    stream pipelines (rows, late rows, watermark, checkpoint age)."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from fluvial.serve.supervisor import read_status
        from fluvial.stream.status import job_status, list_jobs

        up = GaugeMetricFamily(
            "fluvial_up_worker_running", "1 when a fluvial up worker is running", labels=["worker"]
        )
        restarts = GaugeMetricFamily(
            "fluvial_up_worker_restarts", "Restarts of a fluvial up worker", labels=["worker"]
        )
        doc = read_status(status_path(self.project)) or {"workers": []}
        for w in doc["workers"]:
            up.add_metric([w["name"]], 1.0 if w.get("state") == "running" else 0.0)
            restarts.add_metric([w["name"]], float(w.get("restarts") or 0))
        yield up
        yield restarts
        labels = ["job", "pipeline"]
        rows_in = GaugeMetricFamily("fluvial_stream_rows_in", "Rows read", labels=labels)
        rows_out = GaugeMetricFamily("fluvial_stream_rows_out", "Rows written", labels=labels)
        late = GaugeMetricFamily("fluvial_stream_late_rows", "Late rows", labels=labels)
        watermark = GaugeMetricFamily(
            "fluvial_stream_watermark_seconds", "The watermark (epoch seconds)", labels=labels
        )
        age = GaugeMetricFamily(
            "fluvial_stream_checkpoint_age_seconds", "Age of the newest checkpoint", labels=labels
        )
        stream_dir = self.project.data_dir / "stream"
        for job in list_jobs(stream_dir):
            for row in job_status(stream_dir / job):
                key = [row["job"], row["pipeline"]]
                for family, value in (
                    (rows_in, row["rows_in"]),
                    (rows_out, row["rows_out"]),
                    (late, row["late_rows"]),
                    (age, row["checkpoint_age_s"]),
                ):
                    if value is not None:
                        family.add_metric(key, float(value))
                wm = row["watermark_ms"]
                if wm is not None and abs(wm) < 2**62:
                    watermark.add_metric(key, wm / 1000.0)
        yield from (rows_in, rows_out, late, watermark, age)


def _registries(app: Any) -> list[CollectorRegistry]:
    """Prometheus registries a sub-app exposes on its state: ``registry``, ``metrics``
    (or ``services.metrics``) holding one, or being one."""
    state = getattr(app, "state", None)
    holders = [
        getattr(state, "registry", None),
        getattr(state, "metrics", None),
        getattr(getattr(state, "services", None), "metrics", None),
    ]
    found: list[CollectorRegistry] = []
    for value in holders:
        value = getattr(value, "registry", value)
        if isinstance(value, CollectorRegistry) and value not in found:
            found.append(value)
    return found


def create_platform_app(project: Project, *, api: Any = None, ui: Any = None) -> Starlette:
    """One app for *project*: collector at ``/v1``, ``/metrics``, ``/healthz``, API, UI.

    *api* and *ui* default to :func:`optional_api` and :func:`optional_ui`; pass
    ``False`` to leave one out. The collector opens the project's event log at startup
    (the process becomes the writer of the events topics) and closes it at shutdown.
    """
    from fluvial.collector.app import create_app

    collector_app = create_app(project)
    collector = collector_app.state.collector
    api_app = optional_api(project) if api is None else (api or None)
    ui_app = optional_ui(project) if ui is None else (ui or None)
    platform = _PlatformCollector(project)
    platform_registry = CollectorRegistry(auto_describe=False)
    platform_registry.register(platform)
    registries = [collector.metrics.registry, platform_registry, REGISTRY]
    for sub in (api_app, ui_app):
        registries += [r for r in _registries(sub) if r not in registries]

    def render() -> bytes:
        return b"".join(generate_latest(r) for r in registries)

    async def metrics_page(request: Request) -> Response:
        collector.metrics.request("/metrics", 200)
        return Response(await anyio.to_thread.run_sync(render), media_type=_METRICS_TYPE)

    routes: list[BaseRoute] = [
        r for r in collector_app.routes if getattr(r, "path", "").startswith("/v1/")
    ]
    routes += [
        Route("/healthz", collector.healthz, methods=["GET"]),
        Route("/metrics", metrics_page, methods=["GET"]),
    ]
    if api_app is not None:
        mounted = _KeepPath(api_app) if _own_prefix(api_app, "/api") else api_app
        routes.append(Mount("/api", app=mounted, name="api"))
    if ui_app is not None:
        routes.append(Mount("", app=_KeepPath(ui_app), name="ui"))
    subapps = [a for a in (collector_app, api_app, ui_app) if a is not None]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # mounted apps' lifespans do not run by themselves: nest them, collector first
        async with contextlib.AsyncExitStack() as stack:
            for sub in subapps:
                router = getattr(sub, "router", None)
                context = getattr(router, "lifespan_context", None)
                if context is not None:
                    await stack.enter_async_context(context(sub))
            yield

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.collector = collector
    app.state.api = api_app
    app.state.ui = ui_app
    app.state.registries = registries
    return app


@contextlib.contextmanager
def _quiet_sigterm() -> Iterator[None]:
    """uvicorn re-raises SIGTERM after its graceful shutdown: make that a clean exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_platform(
    project: Project, *, host: str | None = None, port: int | None = None, log_level: str = "info"
) -> None:
    """Serve :func:`create_platform_app` until SIGTERM or SIGINT (graceful: requests in
    flight finish, the ingest workers drain, the log closes)."""
    import uvicorn

    from fluvial.collector.server import uvicorn_config

    settings = project.settings.collector
    host = settings.host if host is None else host
    port = settings.port if port is None else port
    if not 0 <= port <= 65535:
        raise UsageError(f"port must be between 0 and 65535, found {port}")
    app = create_platform_app(project)
    server = uvicorn.Server(uvicorn_config(app, host, port, log_level=log_level))
    try:
        with _quiet_sigterm():
            server.run()
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        raise FluvialError(f"fluvial could not listen on {host}:{port}") from exc
    if not server.started:
        raise FluvialError(f"the web server failed to start on {host}:{port}; see the lines above")
