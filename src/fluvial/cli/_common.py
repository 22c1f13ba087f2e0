"""What every command shares: the --project and --json options, and output helpers."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fluvial.project import Project

__all__ = [
    "JsonOpt",
    "ProjectOpt",
    "console",
    "err_console",
    "open_project",
    "print_json",
    "print_rows",
]

console = Console(soft_wrap=True)  # messages are never hard-wrapped: pipes and grep see whole lines
err_console = Console(stderr=True, soft_wrap=True)

ProjectOpt = Annotated[
    Path,
    typer.Option(
        "--project",
        "-p",
        envvar="FLUVIAL_PROJECT",
        help="Project directory (holds fluvial.toml).",
        show_default=True,
        file_okay=False,
    ),
]

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print JSON for machines instead of a table.")
]


def open_project(path: Path) -> Project:
    return Project(path)


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Path):
        return str(value)
    return str(value)


def dumps(value: Any) -> str:
    """Compact JSON with ISO dates (one object per line for streams)."""
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=_default, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def print_rows(
    rows: Sequence[Mapping[str, Any]],
    columns: Iterable[str],
    *,
    as_json: bool,
    title: str | None = None,
) -> None:
    """A Rich table for people, or a JSON array of objects with ``--json``."""
    cols = list(columns)
    if as_json:
        print_json([dict(r) for r in rows])
        return
    table = Table(title=title, show_lines=False)
    for col in cols:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in cols))
    console.print(table)
