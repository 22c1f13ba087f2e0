"""The locked DuckDB session that runs governed SQL: it reads the catalog and nothing else.

:func:`open_sandbox` opens a DuckDB connection over the lake (and the warehouse's marts)
in which every catalog table is a view in one *hidden* schema with a random name,
``"_fluvial_<hex>"."zone.table"``: no schema named after a zone exists, so a table
reference the governance rewrite did not replace finds nothing. Before any user SQL runs,
file access outside the warehouse is disabled (no ``read_parquet`` of a path, no ``COPY``,
no ``ATTACH``), extensions cannot be installed or loaded, and the configuration is locked
(no ``SET``, no ``PRAGMA`` that changes a setting) for the connection's life.

:meth:`Sandbox.fetch` runs one statement, streams at most *limit* rows (a huge result is
never materialized) and interrupts the query after *timeout* seconds.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

import duckdb
import pyarrow as pa

from fluvial.errors import SqlError

if TYPE_CHECKING:
    from fluvial.lake.catalog import Lake
    from fluvial.project import Project

__all__ = ["Sandbox", "lock_down", "open_sandbox", "quote"]


def quote(name: str) -> str:
    """A SQL identifier, double-quoted (inner quotes doubled).

    >>> print(quote('we"ird'))
    "we""ird"
    """
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _warehouse_dir(lake: Lake) -> str:
    """The warehouse as a DuckDB path prefix (a local folder, or the s3:// URI)."""
    parsed = urlparse(lake.warehouse)
    if parsed.scheme == "file":
        return str(Path(unquote(parsed.path)).resolve()) + "/"
    return lake.warehouse.rstrip("/") + "/"


def lock_down(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """Let *con* read the lake's warehouse and nothing else, for good: no other files, no
    extension installs or loads, no setting changes."""
    con.execute(f"SET allowed_directories = [{_literal(_warehouse_dir(lake))}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET allow_community_extensions = false")
    con.execute("SET lock_configuration = true")


@dataclass
class Sandbox:
    """A locked DuckDB connection; ``tables`` maps each catalog table (``zone.table``,
    marts as ``marts.name``) to its columns in table order."""

    con: duckdb.DuckDBPyConnection
    schema: str
    tables: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def relation(self, table: str) -> str:
        """The hidden view of catalog *table*, as SQL."""
        return f"{quote(self.schema)}.{quote(table)}"

    def fetch(self, sql: str, *, limit: int, timeout: float) -> tuple[pa.Table, bool]:
        """Run *sql*: its first *limit* rows and whether there were more.

        Raises:
            SqlError: DuckDB refused or failed the query, or it ran out of time.
        """
        cursor = self.con.cursor()
        timer = threading.Timer(timeout, cursor.interrupt)
        timer.start()
        try:
            reader = cursor.execute(sql).to_arrow_reader(min(limit + 1, 65_536))
            batches: list[pa.RecordBatch] = []
            rows = 0
            for batch in reader:
                batches.append(batch)
                rows += batch.num_rows
                if rows > limit:
                    break
            table = pa.Table.from_batches(batches, schema=reader.schema)
        except duckdb.InterruptException as exc:
            raise SqlError(
                f"the query ran longer than {timeout:g} s and was stopped", source="sql"
            ) from exc
        except duckdb.Error as exc:
            raise SqlError(str(exc).strip(), source="sql") from exc
        finally:
            timer.cancel()
            cursor.close()
        return table.slice(0, limit), table.num_rows > limit

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _attach_marts(sandbox: Sandbox, project: Project) -> None:
    """The warehouse's marts, read-only, as hidden views ``"marts.<name>"`` (skipped while
    a batch run holds the warehouse file for writing, or before the first build)."""
    from fluvial.batch.warehouse import warehouse_path

    path = warehouse_path(project)
    if not path.exists():
        return
    alias = f"_fluvial_wh_{secrets.token_hex(8)}"
    con = sandbox.con
    try:
        con.execute(f"ATTACH {_literal(str(path))} AS {quote(alias)} (READ_ONLY)")
    except duckdb.Error:
        return  # a batch run is writing it: the marts are back on the next query
    rows = con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = ? "
        "AND schema_name = 'marts' ORDER BY table_name, column_index",
        [alias],
    ).fetchall()
    columns: dict[str, list[str]] = {}
    for table, column in rows:
        columns.setdefault(table, []).append(column)
    for name, cols in columns.items():
        con.execute(
            f"CREATE VIEW {sandbox.relation('marts.' + name)} AS "
            f"SELECT * FROM {quote(alias)}.marts.{quote(name)}"
        )
        sandbox.tables[f"marts.{name}"] = tuple(cols)


def open_sandbox(
    project: Project,
    lake: Lake,
    *,
    snapshot_id: int | None = None,
    as_of: datetime | None = None,
) -> Sandbox:
    """A locked session over *lake* (time travel as in :func:`fluvial.lake.connect`) and
    the project's warehouse marts.

    Raises:
        NotFoundError: *snapshot_id* is no snapshot of any table.
        MissingDependencyError: a DuckDB extension package is missing.
    """
    from fluvial.lake.query import connect

    schema = f"_fluvial_{secrets.token_hex(8)}"
    con = connect(lake, snapshot_id=snapshot_id, as_of=as_of, schema=schema)
    sandbox = Sandbox(con, schema)
    try:
        for name in lake.tables():
            sandbox.tables[name] = tuple(f.name for f in lake.table(name).schema().fields)
        _attach_marts(sandbox, project)
        lock_down(con, lake)
    except BaseException:
        con.close()
        raise
    return sandbox
