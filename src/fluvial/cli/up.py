"""``fluvial up``, ``fluvial status``, ``fluvial serve`` and ``fluvial maintain``.

``up`` runs the whole platform as supervised worker processes (see :mod:`fluvial.up`);
``status`` shows them and the stream pipelines; ``serve`` is the web worker (collector,
API, UI, metrics on one port); ``maintain`` is the scheduled lake maintenance.
:func:`register` adds them to the root command.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer

from fluvial.cli._common import (
    JsonOpt,
    ProjectOpt,
    console,
    err_console,
    open_project,
    print_json,
    print_rows,
)
from fluvial.errors import UsageError

__all__ = ["main", "register"]

HostOpt = Annotated[
    str | None, typer.Option("--host", help="Address to listen on (default: [collector] host).")
]
PortOpt = Annotated[
    int | None, typer.Option("--port", help="Port to listen on (default: [collector] port).")
]

WORKER_COLUMNS = ("name", "kind", "state", "pid", "restarts", "uptime", "last_exit_code")
SCHEDULE_COLUMNS = ("name", "cron", "next_run_at", "last_run_at", "last_status", "runs")
PIPELINE_COLUMNS = ("job", "pipeline", "state", "watermark", "rows_in", "rows_out", "late_rows")


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return str(dt.timedelta(seconds=int(seconds)))


def _watermark(ms: int | None) -> str | None:
    if ms is None or abs(ms) >= 2**62:
        return None
    return (
        dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
        .replace(tzinfo=None)
        .isoformat(timespec="seconds")
    )


def up(
    host: HostOpt = None,
    port: PortOpt = None,
    project_dir: ProjectOpt = Path("."),
) -> None:
    """Run the platform: web server, stream pipelines, archiver, schedules, alerts.

    Workers are restarted when they crash (with backoff); Ctrl-C or SIGTERM stops them
    all gracefully. `fluvial status` shows them.
    """
    from fluvial.up import build_supervisor

    project = open_project(project_dir)

    def say(message: str) -> None:
        stamp = dt.datetime.now().strftime("%H:%M:%S")
        err_console.print(f"{stamp} {message}", highlight=False, markup=False)

    supervisor = build_supervisor(project, host=host, port=port, on_event=say)
    info = supervisor.info
    console.print(
        f"[bold]fluvial up[/] in {project.root}: {info['url']}/ "
        f"(collector {info['url']}/v1/events, metrics {info['url']}/metrics) — Ctrl-C stops",
        highlight=False,
    )
    supervisor.run()
    console.print("stopped every worker", highlight=False)


def status(project_dir: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Show fluvial up's workers (pid, state, restarts, uptime), schedules and pipelines."""
    from fluvial.up import platform_status

    project = open_project(project_dir)
    doc = platform_status(project)
    if as_json:
        print_json(doc)
        return
    where = f" at {doc['url']}" if doc.get("url") else ""
    console.print(
        f"fluvial up: [bold]{doc['state']}[/]{where}"
        + (f", pid {doc['pid']}" if doc.get("pid") else "")
        + (f", up {_uptime(doc.get('uptime_s'))}" if doc.get("uptime_s") is not None else ""),
        highlight=False,
    )
    if doc["workers"]:
        rows = [{**w, "uptime": _uptime(w.get("uptime_s"))} for w in doc["workers"]]
        print_rows(rows, WORKER_COLUMNS, as_json=False, title="workers")
    if doc["schedules"]:
        print_rows(doc["schedules"], SCHEDULE_COLUMNS, as_json=False, title="schedules")
    if doc["pipelines"]:
        rows = [{**p, "watermark": _watermark(p["watermark_ms"])} for p in doc["pipelines"]]
        print_rows(rows, PIPELINE_COLUMNS, as_json=False, title="stream pipelines")


def serve(
    host: HostOpt = None,
    port: PortOpt = None,
    project_dir: ProjectOpt = Path("."),
) -> None:
    """Serve the collector (/v1), API (/api), UI (/) and /metrics on one port."""
    from fluvial.serve.app import serve_platform

    serve_platform(open_project(project_dir), host=host, port=port)


def maintain(project_dir: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Lake maintenance on every table: compact, expire snapshots, retention, orphans."""
    from fluvial.up import run_maintenance

    rows = run_maintenance(open_project(project_dir))
    if as_json:
        print_json(rows)
        return
    shown: list[dict[str, Any]] = [
        {
            "table": r["table"],
            "operation": r["operation"],
            "result": r.get("error")
            or ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("table", "operation")),
        }
        for r in rows
    ]
    print_rows(shown, ["table", "operation", "result"], as_json=False, title="lake maintenance")


def worker(
    kind: str = typer.Argument(..., help="alerts"),
    project_dir: ProjectOpt = Path("."),
) -> None:
    """Run one of fluvial up's in-process workers (alerts) until SIGTERM."""
    from fluvial.up import run_alerts

    if kind != "alerts":
        raise UsageError(f"expected a worker kind among: alerts; found {kind!r}")
    run_alerts(open_project(project_dir))


def register(app: typer.Typer) -> None:
    """Add ``up``, ``status``, ``serve``, ``maintain`` (and the hidden ``worker``)."""
    app.command("up")(up)
    app.command("status")(status)
    app.command("serve")(serve)
    app.command("maintain")(maintain)
    app.command("worker", hidden=True)(worker)


def main(argv: list[str] | None = None) -> int:
    """Run these commands alone (``python -m fluvial.up serve …``): how ``fluvial up``
    starts its own workers, whether or not the root command has them registered."""
    import sys

    from typer._click.exceptions import ClickException

    from fluvial.errors import FluvialError

    app = typer.Typer(
        name="fluvial", pretty_exceptions_enable=False, add_completion=False, no_args_is_help=True
    )
    register(app)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app(args=args, prog_name="fluvial", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except ClickException as exc:
        exc.show()
        return exc.exit_code
    except FluvialError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2 if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt:
        return 130
