"""``fluvial stream``: run, explain and watch stream pipelines written in Flink SQL."""

from __future__ import annotations

import datetime as dt
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

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
from fluvial.errors import FluvialError, UsageError

__all__ = ["app"]

app = typer.Typer(help="Run stream pipelines written in Flink SQL.", no_args_is_help=True)

FileArg = typer.Argument(
    ..., help="Pipeline file: Flink SQL (CREATE TABLE …; INSERT INTO … SELECT …).", dir_okay=False
)
START_CHOICES = ("earliest", "latest", "checkpoint")


@app.command("run")
def run(
    file: Path = FileArg,
    until_idle: bool = typer.Option(
        False,
        "--until-idle",
        help="Stop once every source is drained (files read, topics at their end offsets), "
        "after firing every open window.",
    ),
    start: str | None = typer.Option(
        None,
        "--from",
        help="Where to start: earliest (the default) | latest (sources without a "
        "checkpoint) | checkpoint (resume from the newest checkpoint; never implicit).",
    ),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Run a pipeline file: every INSERT INTO, until stopped (Ctrl-C) or --until-idle."""
    from fluvial.stream.runtime import PipelineStats, latest_checkpoint, run_job

    if start is not None and start not in START_CHOICES:
        raise UsageError(f"--from must be one of {', '.join(START_CHOICES)}; found {start!r}")
    project = open_project(project_dir)
    from fluvial.stream.versions import resolve_job

    job = resolve_job(project, file)  # the current version (after a replay: <job>__vN)
    if start is None:
        # like Flink, a run resumes only when told to; say so when it could have
        start = "earliest"
        found = latest_checkpoint(project, job.name)
        if found is not None:
            age = max(0.0, (time.time() * 1000 - found[1]) / 1000)
            err_console.print(
                f"hint: job {job.name} has checkpoint {found[0]} ({age:,.0f} s old); "
                "starting from the earliest offsets — pass --from checkpoint to resume it",
                highlight=False,
            )
    stop = threading.Event()

    def progress(stats: list[PipelineStats]) -> None:
        for s in stats:
            err_console.print(s.line(), highlight=False)

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()  # graceful: take a last checkpoint and commit the sinks

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_signal)
    lineage = _Lineage(project, job, file)
    lineage.send("start")
    try:
        result = run_job(
            job,
            project=project,
            start="earliest" if start == "checkpoint" else start,
            until_idle=until_idle,
            from_checkpoint=start == "checkpoint",
            stop=stop,
            on_progress=progress,
        )
    except BaseException as exc:
        lineage.send("fail", str(exc))
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    lineage.send("complete")
    if as_json:
        print_json(
            {
                "job": job.name,
                "checkpoint_id": result.checkpoint_id,
                "pipelines": [vars(s) for s in result.pipelines],
            }
        )
    else:
        total_out = sum(s.rows_out for s in result.pipelines)
        console.print(f"job {job.name}: {total_out:,} rows written", highlight=False)


class _Lineage:
    """OpenLineage events of a pipeline run (START, then COMPLETE or FAIL); a lineage
    failure is reported on stderr, never fails the pipeline."""

    def __init__(self, project: Any, job: Any, file: Path) -> None:
        from fluvial.lineage import namespace_of
        from fluvial.lineage.stream import stream_events

        self.project = project
        self.run = None
        try:
            text = file.read_text(encoding="utf-8")
            self.run = stream_events(job, text, namespace=namespace_of(project))
        except FluvialError as exc:
            err_console.print(f"[yellow]warning:[/] no lineage for this run: {exc}")

    def send(self, what: str, error: str | None = None) -> None:
        from fluvial.lineage import emit

        if self.run is None:
            return
        try:
            if what == "fail":
                event = self.run.fail(error or "")
            elif what == "start":
                event = self.run.start()
            else:
                event = self.run.complete()
            emit(self.project, event)
        except FluvialError as exc:
            err_console.print(f"[yellow]warning:[/] lineage event not delivered: {exc}")


@app.command("explain")
def explain(file: Path = FileArg) -> None:
    """Print the operator plan of a pipeline file (without running it)."""
    from fluvial.stream.job import load_job
    from fluvial.stream.plan.explain import explain as render

    console.print(render(load_job(file)), highlight=False, markup=False)


STATUS_COLUMNS = (
    "job",
    "pipeline",
    "state",
    "watermark",
    "rows_in",
    "rows_out",
    "late_rows",
    "checkpoint_id",
    "checkpoint_age_s",
    "state_bytes",
)


def _watermark_text(ms: int | None) -> str | None:
    from fluvial.stream.runtime import MAX_WATERMARK, MIN_WATERMARK

    if ms is None or ms <= MIN_WATERMARK:
        return None
    if ms >= MAX_WATERMARK:
        return "end"
    return (
        dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
        .replace(tzinfo=None)
        .isoformat(timespec="milliseconds")
    )


@app.command("status")
def status(
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show every stream job of the project, per pipeline: state (running, finished,
    stopped, failed, or dead when killed), watermark, rows in/out, late rows, and the
    last checkpoint's id, age and operator state size."""
    from fluvial.stream.status import job_status, list_jobs

    project = open_project(project_dir)
    stream_dir = project.data_dir / "stream"
    rows = [row for job in list_jobs(stream_dir) for row in job_status(stream_dir / job)]
    if not as_json:
        rows = [{**r, "watermark": _watermark_text(r["watermark_ms"])} for r in rows]
        if not rows:
            err_console.print(f"no stream jobs have run in {project.root}", highlight=False)
            return
    print_rows(rows, STATUS_COLUMNS, as_json=as_json, title="stream jobs")


@app.command("deploy")
def deploy(
    file: Path = FileArg,
    runner: str | None = typer.Option(
        None,
        "--runner",
        help="local (PyFlink's mini-cluster) | gateway (a Flink SQL Gateway); "
        "default: [flink] runner in fluvial.toml.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the Flink SQL of the job; run nothing."
    ),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Run a pipeline file on Apache Flink: its connectors translated to Flink's, then run
    on the local mini-cluster or submitted to a Flink SQL Gateway."""
    from fluvial.stream.deploy import to_flink
    from fluvial.stream.runners import create_runner

    project = open_project(project_dir)
    settings = project.settings.flink
    flink_runner = create_runner(runner or settings.runner, settings)
    if not file.is_file():
        raise UsageError(f"expected a pipeline file (Flink SQL), found nothing at {file}")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {file}: {exc}") from exc
    job = to_flink(text, project, source=str(file))
    for warning in job.warnings:
        err_console.print(f"warning: {warning}", highlight=False, markup=False)
    if dry_run:
        if as_json:
            print_json(job.to_dict())
        else:
            sys.stdout.write(job.sql)
            sys.stdout.flush()
        return
    if flink_runner.name == "local" and not job.bounded:
        err_console.print(
            f"job {job.name} reads unbounded sources: running it on the local mini-cluster "
            "until Ctrl-C",
            highlight=False,
        )
    result = flink_runner.deploy(job)
    if as_json:
        print_json({**result.to_dict(), "warnings": list(job.warnings), "sql": job.sql})
    elif result.job_id:
        console.print(
            f"job {job.name}: {result.state} to {result.where} as Flink job {result.job_id}",
            highlight=False,
        )
    else:
        console.print(
            f"job {job.name}: {result.state} on the {result.where} in {result.seconds:,.1f} s",
            highlight=False,
        )
