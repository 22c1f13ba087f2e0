"""``fluvial stream``: run and explain stream pipelines written in Flink SQL."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import typer

from fluvial.cli._common import JsonOpt, ProjectOpt, console, err_console, open_project, print_json
from fluvial.errors import UsageError

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
    start: str = typer.Option(
        "earliest",
        "--from",
        help="Where to start: earliest | latest (sources without a checkpoint) | "
        "checkpoint (resume from the newest checkpoint).",
    ),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Run a pipeline file: every INSERT INTO, until stopped (Ctrl-C) or --until-idle."""
    from fluvial.stream.job import load_job
    from fluvial.stream.runtime import PipelineStats, run_job

    if start not in START_CHOICES:
        raise UsageError(f"--from must be one of {', '.join(START_CHOICES)}; found {start!r}")
    job = load_job(file)
    project = open_project(project_dir)
    stop = threading.Event()

    def progress(stats: list[PipelineStats]) -> None:
        for s in stats:
            err_console.print(s.line(), highlight=False)

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()  # graceful: take a last checkpoint and commit the sinks

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_signal)
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
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
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


@app.command("explain")
def explain(file: Path = FileArg) -> None:
    """Print the operator plan of a pipeline file (without running it)."""
    from fluvial.stream.job import load_job
    from fluvial.stream.plan.explain import explain as render

    console.print(render(load_job(file)), highlight=False, markup=False)
