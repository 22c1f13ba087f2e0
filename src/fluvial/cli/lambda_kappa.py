"""``fluvial reconcile`` (Lambda) and ``fluvial stream replay | versions | rollback`` (Kappa).

:func:`register` adds ``reconcile`` to the root command; :func:`register_stream` adds
``replay``, ``versions`` and ``rollback`` to the ``fluvial stream`` group.
"""

from __future__ import annotations

import signal
import threading
from datetime import datetime
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

__all__ = ["register", "register_stream"]

REPORT_COLUMNS = (
    "metric",
    "status",
    "start",
    "end",
    "periods",
    "rows",
    "matching",
    "late",
    "after_batch",
    "unexplained",
    "late_rows",
)
DRIFT_COLUMNS = ("metric", "period", "dimensions", "batch", "speed", "cause")
VERSION_COLUMNS = ("job", "version", "current", "state", "outputs", "created", "error")


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(
            f"--since: expected an ISO time such as 2026-05-01T10:00 (UTC), found {text!r}"
        ) from exc


def _when(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000).isoformat(timespec="seconds")


def register(app: typer.Typer) -> None:
    """Add ``fluvial reconcile`` to *app*."""

    @app.command("reconcile")
    def reconcile_cmd(
        metric: Annotated[
            list[str] | None,
            typer.Option(
                "--metric", "-m", help="A metric of metrics.toml (repeatable; default all)."
            ),
        ] = None,
        since: Annotated[
            str | None,
            typer.Option("--since", help="Compare periods from this time on (ISO, UTC)."),
        ] = None,
        project_dir: ProjectOpt = Path("."),
        as_json: JsonOpt = False,
    ) -> None:
        """Compare the speed layer with the batch layer over closed periods and report drift
        (late data the pipeline dropped is reported as such). Exits with 1 on unexplained
        drift."""
        from fluvial.serve.reconcile import reconcile

        project = open_project(project_dir)
        report = reconcile(project, metric or None, since=_parse_time(since))
        if as_json:
            print_json(report.as_dict())
        else:
            if report.note:
                err_console.print(report.note, highlight=False, markup=False)
            rows = [m.as_dict() for m in report.metrics]
            if rows:
                print_rows(rows, REPORT_COLUMNS, as_json=False, title="reconciliation")
            drift = [{"metric": m.metric, **vars(d)} for m in report.metrics for d in m.drift]
            if drift:
                print_rows(drift, DRIFT_COLUMNS, as_json=False, title="drift")
            for m in report.metrics:
                if m.note:
                    console.print(f"{m.metric}: {m.note}", highlight=False, markup=False)
        if not report.ok:
            raise typer.Exit(1)


def register_stream(stream_app: typer.Typer) -> None:
    """Add ``replay``, ``versions`` and ``rollback`` to the ``fluvial stream`` group."""

    @stream_app.command("replay")
    def replay_cmd(
        pipeline: Annotated[
            str, typer.Argument(help="A pipeline file, or a name in the project's pipelines/.")
        ],
        start: Annotated[
            str,
            typer.Option("--from", help="Where the new version starts: earliest | latest."),
        ] = "earliest",
        no_switch: Annotated[
            bool,
            typer.Option("--no-switch", help="Build the version but leave readers where they are."),
        ] = False,
        project_dir: ProjectOpt = Path("."),
        as_json: JsonOpt = False,
    ) -> None:
        """Rebuild a pipeline's outputs from the log into a new version while the current one
        keeps serving, then switch readers to it atomically (the old version stays for
        rollback)."""
        from fluvial.stream.runtime import PipelineStats
        from fluvial.stream.versions import replay

        if start not in ("earliest", "latest"):
            raise UsageError(f"--from must be earliest or latest; found {start!r}")
        project = open_project(project_dir)
        stop = threading.Event()

        def progress(stats: list[PipelineStats]) -> None:
            if not as_json:
                for s in stats:
                    err_console.print(s.line(), highlight=False)

        def on_signal(signum: int, frame: Any) -> None:
            stop.set()

        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, on_signal)
        try:
            result = replay(
                project,
                pipeline,
                start=start,
                switch_when_done=not no_switch,
                stop=stop,
                on_progress=progress,
            )
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if as_json:
            print_json(result.as_dict())
            return
        rows = sum(s.rows_out for s in result.result.pipelines)
        what = "readers now use it" if result.switched else "readers still use the previous one"
        console.print(
            f"job {result.job}: version {result.version} built ({rows:,} rows written); "
            f"{what} (version {result.version if result.switched else result.previous})",
            highlight=False,
        )

    @stream_app.command("versions")
    def versions_cmd(
        pipeline: Annotated[
            str | None,
            typer.Argument(help="A pipeline (file or name); default: every replayed job."),
        ] = None,
        project_dir: ProjectOpt = Path("."),
        as_json: JsonOpt = False,
    ) -> None:
        """List the versions of replayed pipelines: which one readers use, their state and
        where their outputs are."""
        from fluvial.stream.versions import Versions, load_versions, pipeline_file

        project = open_project(project_dir)
        registries: list[Versions] = []
        if pipeline is not None:
            job = pipeline_file(project, pipeline).stem
            found = load_versions(project, job)
            if found is None:
                err_console.print(
                    f"job {job} was never replayed: it has one version, its file's names",
                    highlight=False,
                )
                return
            registries.append(found)
        else:
            stream_dir = project.data_dir / "stream"
            for path in sorted(stream_dir.glob("*/versions.json")):
                loaded = load_versions(project, path.parent.name)
                if loaded is not None:
                    registries.append(loaded)
        if as_json:
            print_json([r.as_dict() for r in registries])
            return
        rows = [
            {
                "job": r.job,
                "version": v.version,
                "current": "*" if v.version == r.current else "",
                "state": v.state,
                "outputs": ", ".join(f"{o.kind} {o.physical}" for o in v.outputs),
                "created": _when(v.created_ms),
                "error": v.error,
            }
            for r in registries
            for v in r.versions
        ]
        if not rows:
            err_console.print(f"no pipeline of {project.root} was replayed", highlight=False)
            return
        print_rows(rows, VERSION_COLUMNS, as_json=False, title="stream versions")

    @stream_app.command("rollback")
    def rollback_cmd(
        pipeline: Annotated[str, typer.Argument(help="A pipeline (file or name).")],
        to: Annotated[
            int | None,
            typer.Option("--to", help="The version to use (default: the previous ready one)."),
        ] = None,
        project_dir: ProjectOpt = Path("."),
        as_json: JsonOpt = False,
    ) -> None:
        """Point readers back at an earlier version of a replayed pipeline (atomically)."""
        from fluvial.stream.versions import pipeline_file, rollback

        project = open_project(project_dir)
        job = pipeline_file(project, pipeline).stem
        versions = rollback(project, job, to)
        if as_json:
            print_json(versions.as_dict())
            return
        console.print(f"job {job}: readers now use version {versions.current}", highlight=False)
