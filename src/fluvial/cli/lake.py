"""``fluvial lake``: the lakehouse's tables, the archiver, and table history."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fluvial.cli import lake_admin
from fluvial.cli._common import JsonOpt, ProjectOpt, console, open_project, print_json, print_rows
from fluvial.lake import Archiver, ArchiveStats, open_lake, schema_history
from fluvial.lake.archive import FROM_KEY, TO_KEY, TOPIC_KEY

__all__ = ["app"]

app = typer.Typer(
    help="The lake: Iceberg tables in zones, the archiver, table history.", no_args_is_help=True
)


def _when(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


@app.command("tables")
def tables(project_dir: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List the lake's tables: zone, records, data files, snapshots and partitioning."""
    with open_lake(open_project(project_dir)) as lake:
        rows: list[dict[str, Any]] = []
        for name in lake.tables():
            table = lake.table(name)
            snap = table.current_snapshot()
            summary = snap.summary if snap is not None else None
            rows.append(
                {
                    "name": name,
                    "zone": name.partition(".")[0],
                    "records": int((summary and summary["total-records"]) or 0),
                    "files": int((summary and summary["total-data-files"]) or 0),
                    "snapshots": len(table.metadata.snapshots),
                    "schema_id": table.metadata.current_schema_id,
                    "partitioning": ", ".join(str(f) for f in table.spec().fields) or "none",
                    "updated": _when(snap.timestamp_ms if snap is not None else None),
                    "location": table.location(),
                }
            )
    print_rows(
        rows,
        ["name", "records", "files", "snapshots", "partitioning", "updated"],
        as_json=as_json,
        title="lake tables",
    )


@app.command("archive")
def archive(
    until_idle: bool = typer.Option(
        False, "--until-idle", help="Stop once every topic is archived (default: run until Ctrl-C)."
    ),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Archive the events topics into raw.events and raw.events_failed, exactly once."""
    project = open_project(project_dir)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        with open_lake(project) as lake, project.open_log() as log:
            archiver = Archiver(lake, log, settings=project.settings)
            if as_json:
                stats = _run(archiver, until_idle, stop, None)
            else:
                with Progress(
                    TextColumn("[bold]archiving[/]"),
                    BarColumn(),
                    TextColumn("{task.completed:,} records · {task.fields[rate]:,.0f}/s"),
                    TextColumn("lag {task.fields[lag]:,}"),
                    TimeElapsedColumn(),
                    console=console,
                    transient=False,
                ) as progress:
                    task = progress.add_task("archive", total=None, rate=0.0, lag=0)

                    def show(s: ArchiveStats) -> None:
                        done = s.total_records
                        lag = sum(s.lag.values())
                        rate = done / s.elapsed if s.elapsed > 0 else 0.0
                        progress.update(task, completed=done, total=done + lag, rate=rate, lag=lag)

                    stats = _run(archiver, until_idle, stop, show)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if as_json:
        print_json(stats.as_dict())
    else:
        commits = sum(stats.commits.values())
        console.print(
            f"archived {stats.total_records:,} record(s) in {commits} commit(s) "
            f"({stats.elapsed:.1f} s)"
        )


def _run(archiver: Archiver, until_idle: bool, stop: threading.Event, show: Any) -> ArchiveStats:
    try:
        return archiver.run(until_idle=until_idle, stop=stop, on_progress=show)
    except KeyboardInterrupt:  # Ctrl-C: commit what is buffered, then stop
        archiver.flush()
        return archiver.stats


@app.command("history")
def history(
    table_name: str = typer.Argument(..., metavar="TABLE", help="A table, e.g. raw.events."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """A table's snapshots (with archived offsets) and its schema versions."""
    with open_lake(open_project(project_dir)) as lake:
        table = lake.table(table_name)
        snapshots: list[dict[str, Any]] = []
        for snap in sorted(table.metadata.snapshots, key=lambda s: s.timestamp_ms):
            summary = snap.summary
            get = lambda k, s=summary: s[k] if s is not None else None  # noqa: E731
            snapshots.append(
                {
                    "snapshot_id": snap.snapshot_id,
                    "parent_id": snap.parent_snapshot_id,
                    "committed_at": _when(snap.timestamp_ms),
                    "operation": str(summary.operation.value) if summary is not None else None,
                    "added_records": int(get("added-records") or 0),
                    "total_records": int(get("total-records") or 0),
                    "schema_id": snap.schema_id,
                    "topic": get(TOPIC_KEY),
                    "offsets_from": get(FROM_KEY),
                    "offsets_to": get(TO_KEY),
                }
            )
        schemas = [v.as_dict() for v in schema_history(table)]
    for version in schemas:
        version["first_used"] = _when(version["first_used_ms"])
    if as_json:
        print_json({"table": table_name, "snapshots": snapshots, "schemas": schemas})
        return
    print_rows(
        snapshots,
        ["snapshot_id", "committed_at", "operation", "added_records", "schema_id", "offsets_to"],
        as_json=False,
        title=f"{table_name}: snapshots",
    )
    for version in schemas:
        version["changes"] = "; ".join(version["changes"])
        version["current"] = "yes" if version["current"] else ""
    print_rows(
        schemas,
        ["schema_id", "changes", "first_snapshot_id", "first_used", "current"],
        as_json=False,
        title=f"{table_name}: schema versions",
    )


# maintenance, metadata and the crawler: compact, expire, retain, orphans, describe, annotate, crawl
lake_admin.register(app)
