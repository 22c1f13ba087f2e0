"""``fluvial store``: look into the operational store (tables, lookups, scans, expiry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import typer

from fluvial.cli._common import JsonOpt, ProjectOpt, console, open_project, print_json, print_rows
from fluvial.errors import NotFoundError, ValidationError
from fluvial.serve.store import Store, TableInfo, open_store

__all__ = ["app"]

app = typer.Typer(
    help="The operational store: tables, key lookups, scans and expiry.", no_args_is_help=True
)


def _open(project_dir: Path) -> Store:
    return open_store(open_project(project_dir))


def _typed(info: TableInfo, column: str, text: str) -> Any:
    """A command-line string as a value of the key column's type."""
    field = info.schema.field(column)
    try:
        return pc.cast(pa.array([text]), field.type)[0].as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValidationError(
            f"store table '{info.name}': key column '{column}' is {field.type}; "
            f"cannot read {text!r} as one"
        ) from exc


def _show(table: pa.Table, *, as_json: bool, title: str) -> None:
    rows = table.to_pylist()
    print_rows(rows, table.column_names, as_json=as_json, title=title)


@app.command("tables")
def tables(project_dir: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List the tables: key, columns and live rows."""
    with _open(project_dir) as store:
        rows: list[dict[str, Any]] = [
            {
                "name": t.name,
                "key": list(t.key),
                "columns": {f.name: str(f.type) for f in t.schema},
                "rows": store.count(t.name),
            }
            for t in store.tables()
        ]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        row["key"] = ", ".join(row["key"])
        row["columns"] = ", ".join(f"{n} {t}" for n, t in row["columns"].items())
    print_rows(rows, ["name", "key", "rows", "columns"], as_json=False, title="store tables")


@app.command("get")
def get(
    table: str = typer.Argument(..., help="The store table."),
    key: list[str] = typer.Argument(..., help="The key's values, in key column order."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Print the row with this key (exit 1 if there is none)."""
    with _open(project_dir) as store:
        info = store.table(table)
        if len(key) != len(info.key):
            raise ValidationError(
                f"store table '{table}' is keyed by ({', '.join(info.key)}): expected "
                f"{len(info.key)} value(s), found {len(key)}"
            )
        values = [_typed(info, c, v) for c, v in zip(info.key, key, strict=True)]
        row = store.get(table, tuple(values))
    if row is None:
        raise NotFoundError(f"store table '{table}' has no row with key ({', '.join(key)})")
    if as_json:
        print_json(row)
    else:
        print_rows(
            [{"column": c, "value": v} for c, v in row.items()],
            ["column", "value"],
            as_json=False,
            title=table,
        )


@app.command("scan")
def scan(
    table: str = typer.Argument(..., help="The store table."),
    prefix: list[str] = typer.Option(
        [], "--prefix", help="A leading key value (repeat for the next key columns)."
    ),
    start: str | None = typer.Option(None, "--start", help="The next key column from (>=)."),
    end: str | None = typer.Option(None, "--end", help="The next key column up to (<)."),
    limit: int = typer.Option(100, "--limit", "-l", min=0, help="At most N rows."),
    reverse: bool = typer.Option(False, "--reverse", help="From the largest key down."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Print rows in key order, optionally under a key prefix and within a range."""
    with _open(project_dir) as store:
        info = store.table(table)
        if len(prefix) > len(info.key):
            raise ValidationError(
                f"store table '{table}' has {len(info.key)} key column(s); "
                f"found {len(prefix)} --prefix values"
            )
        values = [_typed(info, c, v) for c, v in zip(info.key, prefix, strict=False)]
        bound = info.key[len(prefix)] if len(prefix) < len(info.key) else info.key[-1]
        rows = store.scan(
            table,
            prefix=values,
            start=None if start is None else _typed(info, bound, start),
            end=None if end is None else _typed(info, bound, end),
            limit=limit,
            reverse=reverse,
        )
    _show(rows, as_json=as_json, title=table)


@app.command("purge")
def purge(project_dir: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Remove expired rows now (reads never show them; this frees their space)."""
    with _open(project_dir) as store:
        removed = store.purge_expired()
    if as_json:
        print_json({"removed_rows": removed})
    else:
        console.print(f"purged {removed} expired row(s)")
