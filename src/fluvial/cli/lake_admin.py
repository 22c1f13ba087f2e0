"""``fluvial lake`` maintenance and metadata commands: compact, expire, retain, orphans,
describe, annotate and crawl.

:func:`register` adds them to the ``fluvial lake`` group. Tables are named ``zone.table``
and opened through the project's lake.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table as RichTable

from fluvial.cli._common import JsonOpt, ProjectOpt, console, open_project, print_json
from fluvial.errors import UsageError

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from fluvial.lake.catalog import Lake

__all__ = ["parse_age", "register"]

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> timedelta:
    """``"90s"``, ``"30m"``, ``"12h"``, ``"5d"`` or ``"2w"`` as a timedelta.

    >>> parse_age("36h")
    datetime.timedelta(days=1, seconds=43200)
    """
    match = _AGE.match(text)
    if not match:
        raise UsageError(f"expected an age such as 90s, 30m, 12h, 5d or 2w, found {text!r}")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


@contextmanager
def _lake(project_dir: Path) -> Iterator[Lake]:
    from fluvial.lake.catalog import open_lake

    lake = open_lake(open_project(project_dir))
    try:
        yield lake
    finally:
        lake.close()


@contextmanager
def _table(project_dir: Path, name: str) -> Iterator[Table]:
    with _lake(project_dir) as lake:
        yield lake.table(name)


def _show(title: str, values: dict[str, Any]) -> None:
    grid = RichTable(title=title, show_header=False)
    grid.add_column("", style="bold")
    grid.add_column("")
    for key, value in values.items():
        grid.add_row(key, "" if value is None else str(value))
    console.print(grid)


TableArg = typer.Argument(..., help="The table, as zone.table (e.g. raw.events).")


def compact_cmd(
    table: str = TableArg,
    target_mb: float = typer.Option(128.0, "--target-mb", min=1, help="Target file size (MiB)."),
    min_files: int = typer.Option(
        5, "--min-files", min=1, help="Rewrite bins of at least N files."
    ),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Bin-pack small data files into files near the target size (one commit)."""
    from fluvial.lake.maintenance import MiB, compact

    with _table(project_dir, table) as t, console.status(f"compacting {table}"):
        result = compact(t, target_file_size=int(target_mb * MiB), min_input_files=min_files)
    if as_json:
        print_json(result.to_dict())
    else:
        _show(f"compacted {table}", result.to_dict())


def expire_cmd(
    table: str = TableArg,
    older_than: str = typer.Option(
        "",
        "--older-than",
        help="Expire snapshots replaced longer ago than this (e.g. 5d; default: the table's "
        "history.expire.max-snapshot-age-ms, else 5d).",
    ),
    retain_last: int = typer.Option(
        0, "--retain-last", min=0, help="Always keep this many recent snapshots (default 1)."
    ),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Expire old snapshots and delete the files no remaining snapshot references."""
    from fluvial.lake.maintenance import expire_snapshots

    with _table(project_dir, table) as t:
        props = t.properties
        age = (
            parse_age(older_than)
            if older_than
            else timedelta(milliseconds=int(props.get("history.expire.max-snapshot-age-ms", 432e6)))
        )
        keep = retain_last or int(props.get("history.expire.min-snapshots-to-keep", 1))
        result = expire_snapshots(t, older_than=age, retain_last=keep)
    data = result.to_dict()
    if as_json:
        print_json(data)
    else:
        data["expired_snapshots"] = len(result.expired_snapshots)
        data.pop("deleted_files")
        _show(f"expired snapshots of {table}", data)


def retain_cmd(
    table: str = TableArg,
    days: float | None = typer.Option(
        None, "--days", min=0, help="Keep this many days (default: the table's retention)."
    ),
    column: str | None = typer.Option(None, "--column", help="The event-time column."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Delete rows older than the retention limit (whole partitions where possible)."""
    from fluvial.lake.maintenance import retain

    with _table(project_dir, table) as t:
        limit = days if days is not None else float(t.properties.get("fluvial.retention-days", 0))
        if limit <= 0:
            raise UsageError(f"table '{table}' keeps its data forever; pass --days to trim it")
        result = retain(t, days=limit, column=column)
    if as_json:
        print_json(result.to_dict())
    else:
        _show(f"retention on {table}", result.to_dict())


def orphans_cmd(
    table: str = TableArg,
    older_than: str = typer.Option("3d", "--older-than", help="Only files older than this."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List them, delete nothing."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Delete files in the table's folder that no snapshot or metadata references."""
    from fluvial.lake.maintenance import remove_orphans

    with _table(project_dir, table) as t:
        found = remove_orphans(t, older_than=parse_age(older_than), dry_run=dry_run)
    if as_json:
        print_json({"orphans": found, "deleted": not dry_run})
        return
    for path in found:
        console.print(path, highlight=False)
    verb = "found" if dry_run else "deleted"
    console.print(f"{verb} {len(found)} orphan file(s)")


def describe_cmd(
    table: str = TableArg,
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show a table: columns with docs and tags, partitioning, size, owner, freshness."""
    from fluvial.lake.metadata import describe

    with _table(project_dir, table) as t:
        info = describe(t)
    if as_json:
        print_json(info.to_dict())
        return
    _render_info(info.to_dict())


def _render_info(info: dict[str, Any]) -> None:
    overview = {
        k: info[k]
        for k in ("name", "description", "owner", "rows", "data_files", "bytes", "freshness")
    }
    overview["tags"] = ", ".join(f"{k}={v}" for k, v in info["tags"].items())
    overview["partitioning"] = ", ".join(
        f"{p['transform']}({p['source']})" for p in info["partition_spec"]
    )
    overview["sort order"] = ", ".join(
        f"{s['source']} {s['direction']}" for s in info["sort_order"]
    )
    overview["location"] = info["location"]
    _show(info["name"], overview)
    cols = RichTable(title="columns")
    for name in ("column", "type", "required", "doc", "tags"):
        cols.add_column(name)
    for c in info["columns"]:
        tags = ", ".join(f"{k}={v}" for k, v in c["tags"].items())
        cols.add_row(c["name"], c["type"], "yes" if c["required"] else "", c["doc"] or "", tags)
    console.print(cols)


def _tags(pairs: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise UsageError(f"expected --tag key=value (key= removes it), found {pair!r}")
        out[key] = value or None
    return out


def annotate_cmd(
    table: str = TableArg,
    column: str | None = typer.Option(None, "--column", "-c", help="Annotate this column."),
    description: str | None = typer.Option(None, "--description", "-d", help="Description."),
    owner: str | None = typer.Option(None, "--owner", help="The table's owner."),
    tag: list[str] = typer.Option([], "--tag", "-t", help="key=value (repeatable; key= removes)."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Set a table's or a column's description, owner and tags."""
    from fluvial.lake.metadata import annotate

    if description is None and owner is None and not tag:
        raise UsageError("nothing to annotate: pass --description, --owner or --tag")
    with _table(project_dir, table) as t:
        info = annotate(t, column=column, description=description, owner=owner, tags=_tags(tag))
    if as_json:
        print_json(info.to_dict())
    else:
        _render_info(info.to_dict())


def crawl_cmd(
    path: Path = typer.Argument(..., help="The landing folder (or one file)."),
    table: str = typer.Option(..., "--table", help="The table to create or extend: zone.table."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Register new Parquet, CSV, NDJSON and Avro files of a folder in a table."""
    from fluvial.lake.crawler import crawl
    from fluvial.lake.zones import split_name

    split_name(table)  # a zone.table name, checked before any work
    with _lake(project_dir) as lake, console.status(f"crawling {path}"):
        report = crawl(lake.catalog, path, table)
    if as_json:
        print_json(report.to_dict())
        return
    data = report.to_dict()
    for key in ("registered_in_place", "converted", "unchanged", "modified", "unsupported"):
        data[key] = len(data[key])
    for key in ("added_columns", "widened_columns"):
        data[key] = ", ".join(data[key])
    _show(f"crawled {path} into {table}", data)


def register(app: typer.Typer) -> None:
    """Add the maintenance and metadata commands to the ``fluvial lake`` group."""
    app.command("compact")(compact_cmd)
    app.command("expire")(expire_cmd)
    app.command("retain")(retain_cmd)
    app.command("orphans")(orphans_cmd)
    app.command("describe")(describe_cmd)
    app.command("annotate")(annotate_cmd)
    app.command("crawl")(crawl_cmd)
