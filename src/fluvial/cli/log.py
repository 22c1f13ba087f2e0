"""``fluvial log``: inspect and manage the event log (topics, tails, groups, retention)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import typer
from rich.text import Text

from fluvial.cli._common import (
    JsonOpt,
    ProjectOpt,
    console,
    dumps,
    open_project,
    print_json,
    print_rows,
)
from fluvial.errors import UsageError
from fluvial.log import EventLog
from fluvial.log.consumer import Consumer, parse_start

__all__ = ["app"]

app = typer.Typer(
    help="The event log: topics, tails, consumer groups and retention.", no_args_is_help=True
)


def _open(project_dir: Path) -> EventLog:
    return open_project(project_dir).open_log()


@app.command("topics")
def topics(project_dir: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List topics: partitions, records, end offsets and bytes on disk."""
    with _open(project_dir) as log:
        infos = log.list_topics()
    rows: list[dict[str, Any]] = [
        {
            "name": t.name,
            "partitions": t.num_partitions,
            "records": t.records,
            "start_offsets": t.start_offsets,
            "end_offsets": t.end_offsets,
            "bytes": t.bytes,
        }
        for t in infos
    ]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        for col in ("start_offsets", "end_offsets"):
            row[col] = " ".join(f"{p}:{o}" for p, o in row[col].items())
    print_rows(
        rows,
        ["name", "partitions", "records", "end_offsets", "bytes"],
        as_json=False,
        title="topics",
    )


@app.command("create")
def create(
    topic: str = typer.Argument(..., help="Topic name: letters, digits, '.', '_' and '-'."),
    partitions: int | None = typer.Option(
        None,
        "--partitions",
        "-n",
        min=1,
        help="Partition count (default: log.partitions in fluvial.toml).",
    ),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="Succeed if the topic exists."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Create a topic."""
    with _open(project_dir) as log:
        info = log.create_topic(topic, partitions, exist_ok=exist_ok)
    if as_json:
        print_json({"name": info.name, "partitions": info.num_partitions})
    else:
        console.print(f"topic [bold]{info.name}[/] has {info.num_partitions} partition(s)")


def _rows(
    consumer: Consumer, *, follow: bool, limit: int | None, ends: dict[int, int]
) -> Iterator[pa.Table]:
    """Tables from the consumer: up to the end offsets seen at the start, or forever."""
    left = limit
    while left is None or left > 0:
        if not follow and all(consumer.positions[p] >= end for p, end in ends.items()):
            return
        table = consumer.poll(
            timeout=0.5 if follow else 0.0, max_records=min(left or 10_000, 10_000)
        )
        if table is None:
            if not follow:
                return
            continue
        if left is not None:
            table = table.slice(0, left)
            left -= table.num_rows
        yield table


def _render(table: pa.Table) -> None:
    rows = table.drop_columns(["_partition", "_offset", "_timestamp"]).to_pylist()
    parts = table.column("_partition").to_pylist()
    offsets = table.column("_offset").to_pylist()
    stamps = table.column("_timestamp").to_pylist()
    for row, p, off, ts in zip(rows, parts, offsets, stamps, strict=True):  # printing is per row
        line = Text(f"p{p}@{off} ", style="cyan")
        line.append(f"{ts:%Y-%m-%d %H:%M:%S.%f}"[:-3] + " ", style="dim")
        line.append(dumps(row))
        console.print(line, soft_wrap=True, highlight=False)


@app.command("tail")
def tail(
    topic: str = typer.Argument(..., help="The topic to read."),
    from_: str = typer.Option(
        "earliest",
        "--from",
        help="Where to start: earliest, latest, an offset (in every partition) or an "
        "ISO-8601 time such as 2026-01-02T03:04:05Z.",
    ),
    limit: int | None = typer.Option(None, "--limit", "-l", min=0, help="Stop after N records."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep waiting for new records."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Print a topic's records (one JSON object per line with --json)."""
    start = parse_start(from_)
    with _open(project_dir) as log:
        info = log.topic(topic)
        consumer = log.consumer(topic, start=start)
        try:
            for table in _rows(consumer, follow=follow, limit=limit, ends=info.end_offsets):
                if as_json:
                    data = table.drop_columns(["_timestamp"]).to_pylist()
                    typer.echo("\n".join(dumps(row) for row in data))
                else:
                    _render(table)
        finally:
            consumer.close()


@app.command("groups")
def groups(project_dir: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List consumer groups: committed offsets per topic, and lag behind the end."""
    with _open(project_dir) as log:
        infos = log.list_groups()
    rows: list[dict[str, Any]] = [
        {"group": g.group, "topic": g.topic, "committed": dict(g.committed), "lag": g.lag}
        for g in infos
    ]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        row["committed"] = " ".join(f"{p}:{o}" for p, o in sorted(row["committed"].items()))
    print_rows(rows, ["group", "topic", "committed", "lag"], as_json=False, title="consumer groups")


@app.command("retain")
def retain(project_dir: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Apply retention now: delete whole segments past log.retention_hours / log.retention_bytes."""
    with _open(project_dir) as log:
        removed = log.apply_retention()
    if as_json:
        print_json({"removed_records": removed})
    else:
        console.print(f"retention removed {removed} record(s)")


@app.command("verify")
def verify(
    topic: str | None = typer.Argument(None, help="Only this topic (default: all)."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Check every frame's CRC32 in the embedded log; exit 1 if any is damaged."""
    with _open(project_dir) as log:
        check = getattr(log, "verify", None)
        if check is None:
            raise UsageError(f"the {log.name} backend has no verify; its servers check data")
        problems: list[str] = check(topic)
    if as_json:
        print_json({"problems": problems})
    else:
        for problem in problems:
            console.print(Text(problem, style="red"))
        if not problems:
            console.print("every frame checks out")
    if problems:
        raise typer.Exit(1)


@app.command("load")
def load(
    topic: str = typer.Argument(..., help="The topic to append to."),
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="Events as NDJSON (one JSON object per line)."
    ),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Validate events from an NDJSON file and append them (invalid ones to dead letters)."""
    from fluvial.events.ingest import load_file  # imported lazily: it pulls in validation

    result = load_file(open_project(project_dir), file, topic=topic)
    if as_json:
        print_json({"accepted": result.accepted, "rejected": result.rejected})
    else:
        console.print(f"accepted {result.accepted}, rejected {result.rejected}")
