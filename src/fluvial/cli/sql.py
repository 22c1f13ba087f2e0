"""``fluvial sql``: run SQL over the lake with DuckDB (our Athena), with time travel."""

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

from fluvial.cli._common import ProjectOpt, console, dumps, open_project
from fluvial.errors import UsageError

__all__ = ["register"]

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
    project_dir: ProjectOpt = Path("."),
) -> None:
    """Run a query over the lake (DuckDB; json is one object per line)."""
    from fluvial.lake import connect, open_lake, run_sql

    if snapshot is not None and as_of is not None:
        raise UsageError("give --snapshot or --as-of, not both")
    moment = _as_of(as_of)
    with open_lake(open_project(project_dir)) as lake:
        con = connect(lake, snapshot_id=snapshot, as_of=moment)
        try:
            result = run_sql(con, query)
        finally:
            con.close()
    _write(result, fmt, out)


def register(app: typer.Typer) -> None:
    """Add the ``sql`` command to *app*."""
    app.command("sql")(sql)
