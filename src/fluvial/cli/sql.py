"""``fluvial sql``: run SQL over the lake with DuckDB (our Athena), with time travel.

The query is governed (:func:`fluvial.govern.run_governed`): it runs as the principal whose
API key is in ``FLUVIAL_API_KEY`` — or, without one, as the project's bootstrap admin,
since whoever can read the project's files can read its lake anyway — and an admin may act
as another principal with ``--as NAME`` to see what they would see.
"""

from __future__ import annotations

import io
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import typer
from rich.table import Table

from fluvial.cli._common import ProjectOpt, console, dumps, err_console, open_project
from fluvial.errors import UsageError
from fluvial.govern.model import Principal
from fluvial.project import Project

__all__ = ["acting_as", "register"]

#: rows shown by the table format (the other formats write every row)
TABLE_ROWS = 1000


class Format(StrEnum):
    """Output formats of ``fluvial sql``."""

    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def _as_of(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--as-of: expected an ISO-8601 time such as 2026-01-02T03:04:05Z, found {text!r}"
        ) from None


def _print_table(result: pa.Table) -> None:
    table = Table(show_lines=False)
    for name in result.column_names:
        table.add_column(name)
    shown = result.slice(0, TABLE_ROWS)
    for row in shown.to_pylist():  # printing is per row
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    console.print(table)
    more = result.num_rows - shown.num_rows
    console.print(f"{result.num_rows:,} row(s)" + (f", first {TABLE_ROWS} shown" if more else ""))


def _write(result: pa.Table, fmt: Format, out: Path | None) -> None:
    if fmt is Format.parquet:
        if out is None:
            raise UsageError("--format parquet needs --out FILE")
        pq.write_table(result, out)
        return
    if fmt is Format.table:
        if out is not None:
            raise UsageError("--out needs --format csv, json or parquet")
        _print_table(result)
        return
    if fmt is Format.csv:
        buffer = io.BytesIO()
        pacsv.write_csv(result, buffer)
        data = buffer.getvalue()
    else:
        data = ("\n".join(dumps(row) for row in result.to_pylist()) + "\n").encode()
        if result.num_rows == 0:
            data = b""
    if out is not None:
        out.write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def sql(
    query: str = typer.Argument(..., help="The SQL; lake tables are named zone.table."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="Output format."),
    out: Path | None = typer.Option(None, "--out", "-o", dir_okay=False, help="Write here."),
    snapshot: int | None = typer.Option(
        None, "--snapshot", help="Read the table that has this snapshot id as of it."
    ),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Read every table as it was at this ISO-8601 time."
    ),
    as_name: str | None = typer.Option(
        None, "--as", metavar="NAME", help="Act as this principal (admins only)."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Rows at most (default: [govern] sql_max_rows)."
    ),
    project_dir: ProjectOpt = Path("."),
) -> None:
    """Run a query over the lake as you (FLUVIAL_API_KEY) or --as NAME; json is one object
    per line."""
    from fluvial.govern import run_governed

    if snapshot is not None and as_of is not None:
        raise UsageError("give --snapshot or --as-of, not both")
    moment = _as_of(as_of)
    project = open_project(project_dir)
    principal = acting_as(project, as_name)
    result = run_governed(
        project, principal, query, limit=limit, snapshot_id=snapshot, as_of=moment
    )
    _write(result.table, fmt, out)
    if result.truncated:
        err_console.print(
            f"[yellow]only the first {result.table.num_rows:,} rows: raise --limit for more[/]"
        )


def acting_as(project: Project, as_name: str | None) -> Principal:
    """The principal a reading command acts as: FLUVIAL_API_KEY's (or the local admin),
    or, for an admin, the principal named by ``--as``.

    Raises:
        AuthenticationError: FLUVIAL_API_KEY is not a valid key.
        PermissionDeniedError: ``--as`` from a principal that is not an admin.
        NotFoundError: ``--as`` names no principal.
    """
    from fluvial.cli._govern import acting, require_admin
    from fluvial.govern import open_principals

    store = open_principals(project)
    principal = acting(project, store)
    if as_name is None:
        return principal
    require_admin(principal, f"--as {as_name}")
    return store.get(as_name)


def register(app: typer.Typer) -> None:
    """Add the ``sql`` command to *app*."""
    app.command("sql")(sql)
