"""Run the collector under uvicorn, with graceful shutdown on SIGTERM and SIGINT.

On a signal uvicorn stops accepting connections, waits for the requests in flight (each
waits for its durable append), then runs the app's shutdown, which drains the ingest
workers; only then is the log closed. SIGTERM then exits with status 0, SIGINT with 130.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from fluvial.collector.app import create_app
from fluvial.errors import FluvialError, UsageError
from fluvial.project import Project

__all__ = ["serve", "uvicorn_config"]

#: seconds to wait for requests in flight after a shutdown signal
GRACEFUL_SECONDS = 30


def uvicorn_config(app: Any, host: str, port: int, *, log_level: str = "info") -> Any:
    """The uvicorn config the collector runs with (also used by the benchmark)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_level=log_level,
        access_log=False,  # one line per request costs more than the request itself
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        backlog=2048,
    )


@contextlib.contextmanager
def _quiet_sigterm() -> Iterator[None]:
    """Make the SIGTERM that uvicorn re-raises after its graceful shutdown a clean exit.

    uvicorn catches the signal, shuts down, restores the previous handler and raises the
    signal again; with the default handler the process would die before the log closes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(
    project: Project,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int = 4,
    max_batch_events: int = 20_000,
    log_level: str = "info",
) -> None:
    """Serve *project*'s collector until SIGTERM or SIGINT (defaults from ``[collector]``)."""
    import uvicorn

    settings = project.settings.collector
    host = settings.host if host is None else host
    port = settings.port if port is None else port
    if not 0 <= port <= 65535:
        raise UsageError(f"port must be between 0 and 65535, found {port}")
    log = project.open_log()  # fail here, with a one-line error, if the log cannot open
    try:
        app = create_app(project, log=log, workers=workers, max_batch_events=max_batch_events)
        server = uvicorn.Server(uvicorn_config(app, host, port, log_level=log_level))
        try:
            with _quiet_sigterm():
                server.run()
        except SystemExit as exc:  # uvicorn exits when it cannot bind
            raise FluvialError(f"the collector could not listen on {host}:{port}") from exc
        if not server.started:
            raise FluvialError("the collector failed to start; see the log lines above")
    finally:
        log.close()
