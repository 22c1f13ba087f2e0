"""``fluvial batch``: run models, backfill days, list models, runs and freshness."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fluvial.batch import backfill as run_backfill
from fluvial.batch import check_freshness, discover, history
from fluvial.batch import run as run_models
from fluvial.batch.dag import Dag
from fluvial.batch.hooks import Hooks, LineageHooks, QualityHooks
from fluvial.batch.runner import RunResult
from fluvial.cli._common import JsonOpt, ProjectOpt, console, open_project, print_json, print_rows
from fluvial.errors import UsageError

__all__ = ["app"]

app = typer.Typer(
    help="Batch models: SQL models into the lake and the warehouse.", no_args_is_help=True
)

SelectOpt = typer.Option(
    None, "--select", "-s", help="Models: NAME, NAME+ (and descendants), +NAME, tag:T."
)


def _show(result: RunResult, as_json: bool) -> None:
    if as_json:
        print_json(result.as_dict())
    else:
        print_rows(
            [
                {**m.as_dict(), "seconds": f"{m.seconds:.2f}", "note": m.error or m.message}
                for m in result.models
            ],
            ["model", "status", "rows_in", "rows_written", "seconds", "note"],
            as_json=False,
            title=f"run {result.run_id}: {result.status}",
        )
    if not result.ok:
        raise typer.Exit(1)


def _with_progress(total: int, call: Any) -> RunResult:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} models"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("building", total=total)

        def show(model: str, status: str) -> None:
            if status == "running":
                progress.update(task, description=f"building {model}")
            else:
                progress.advance(task)
                progress.console.print(f"{model}: {status}")

        result: RunResult = call(show)
        return result


def _count(project_dir: Path, select: str | None) -> int:
    project = open_project(project_dir)
    models = discover(project.root / project.settings.batch.models_dir)
    return len(Dag({m.name: m.depends_on for m in models}).select(select))


@app.command("run")
def run(
    select: str | None = SelectOpt,
    full_refresh: bool = typer.Option(
        False, "--full-refresh", help="Rebuild incremental models from all of their input."
    ),
    engine: str | None = typer.Option(None, "--engine", help="duckdb | spark"),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Build the selected models (all by default) in dependency order."""
    project = open_project(project_dir)
    if as_json:
        result = run_models(project, select, full_refresh, engine, hooks=platform_hooks(project))
    else:
        result = _with_progress(
            _count(project_dir, select),
            lambda show: run_models(
                project, select, full_refresh, engine, hooks=platform_hooks(project), progress=show
            ),
        )
    _show(result, as_json)


def platform_hooks(project: Any) -> Hooks:
    """What every batch run does around its models: quality rules (quarantine, blocking)
    and OpenLineage events."""
    return Hooks(QualityHooks(project), LineageHooks(project))


def _date(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option}: expected a date like 2026-03-01, found {text!r}") from None


@app.command("backfill")
def backfill(
    start: str = typer.Option(..., "--start", help="First day (YYYY-MM-DD)."),
    end: str = typer.Option(..., "--end", help="Last day (YYYY-MM-DD), included."),
    select: str | None = SelectOpt,
    engine: str | None = typer.Option(None, "--engine", help="duckdb | spark"),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Rebuild every day in [start, end] of models partitioned by time (idempotent)."""
    project = open_project(project_dir)
    first, last = _date(start, "--start"), _date(end, "--end")
    if as_json:
        result = run_backfill(
            project, first, last, select, engine=engine, hooks=platform_hooks(project)
        )
    else:
        result = _with_progress(
            _count(project_dir, select),
            lambda show: run_backfill(
                project,
                first,
                last,
                select,
                engine=engine,
                hooks=platform_hooks(project),
                progress=show,
            ),
        )
    _show(result, as_json)


@app.command("runs")
def runs(
    limit: int = typer.Option(20, "--limit", "-n", help="How many runs, newest first."),
    run_id: str | None = typer.Option(None, "--run", help="Show one run's models."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """The run history: runs, or one run's models."""
    store = history(open_project(project_dir))
    if run_id is not None:
        print_rows(
            store.model_runs(run_id),
            ["model", "status", "attempts", "rows_in", "rows_written", "seconds", "error"],
            as_json=as_json,
            title=f"run {run_id}",
        )
        return
    print_rows(
        store.runs(limit),
        ["run_id", "kind", "status", "started_at", "finished_at", "models", "errors", "selection"],
        as_json=as_json,
        title="batch runs",
    )


@app.command("ls")
def ls(
    select: str | None = SelectOpt,
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """The models in dependency order: materialization, dependencies, description."""
    project = open_project(project_dir)
    models = {m.name: m for m in discover(project.root / project.settings.batch.models_dir)}
    dag = Dag(
        {n: m.depends_on for n, m in models.items()}, {n: m.config.tags for n, m in models.items()}
    )
    out = []
    for name in dag.select(select):
        info = models[name].as_dict()
        if not as_json:
            info["depends_on"] = ", ".join(info["depends_on"])
            strategy = info["incremental_strategy"]
            info["materialized"] += f" ({strategy})" if strategy else ""
        out.append(info)
    print_rows(
        out, ["name", "materialized", "depends_on", "description"], as_json=as_json, title="models"
    )


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m ago"


@app.command("freshness")
def freshness(project_dir: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Models with a freshness SLA: ok, warn or error by the age of their last build."""
    results = check_freshness(open_project(project_dir), now=datetime.now().astimezone())
    rows = [{**r.as_dict(), "age": _ago(r.age_seconds)} for r in results]
    print_rows(rows, ["model", "status", "age", "last_success"], as_json=as_json, title="freshness")
    if any(r.status == "error" for r in results):
        raise typer.Exit(1)
