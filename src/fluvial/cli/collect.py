"""``fluvial collect``: run the HTTP collector (our API Gateway -> Kinesis)."""

from __future__ import annotations

from pathlib import Path

import typer

from fluvial.cli._common import ProjectOpt, err_console, open_project

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("collect")
    def collect(
        project_dir: ProjectOpt = Path("."),
        host: str | None = typer.Option(
            None, "--host", help="Address to listen on [default: collector.host, 127.0.0.1]."
        ),
        port: int | None = typer.Option(
            None, "--port", help="Port to listen on [default: collector.port, 8765]."
        ),
        workers: int = typer.Option(
            4,
            "--workers",
            min=1,
            help="Threads appending to the log; concurrent appends share one fsync.",
        ),
        max_batch_events: int = typer.Option(
            20_000,
            "--max-batch-events",
            min=1,
            help="Most events one append may coalesce from queued requests (1: no coalescing).",
        ),
        log_level: str = typer.Option(
            "info", "--log-level", help="uvicorn log level: critical|error|warning|info|debug."
        ),
    ) -> None:
        """Accept events over HTTP (POST /v1/events) and append them durably to the log.

        Needs a write key (fluvial keys create APP_ID). Also serves GET /healthz and
        GET /metrics (Prometheus). Stops gracefully on SIGTERM or Ctrl-C, finishing
        the requests in flight.
        """
        from fluvial.collector.keys import KeyStore
        from fluvial.collector.server import serve

        project = open_project(project_dir)
        settings = project.settings.collector
        active = [k for k in KeyStore.for_project(project).list_keys() if not k.revoked]
        if not active:
            err_console.print(
                "[yellow]warning:[/] no active write keys; every request will get 401. "
                "Create one with: fluvial keys create APP_ID"
            )
        shown_host = settings.host if host is None else host
        shown_port = settings.port if port is None else port
        err_console.print(
            f"collecting for [bold]{project.root}[/] on "
            f"http://{shown_host}:{shown_port}/v1/events ({len(active)} active keys)",
            highlight=False,
        )
        serve(
            project,
            host=host,
            port=port,
            workers=workers,
            max_batch_events=max_batch_events,
            log_level=log_level,
        )
