"""The SQL explorer's query path: one read-only statement over the lake, bounded.

:func:`execute_sql` is the one place the API runs user SQL (the governance layer wraps
it). It accepts exactly one ``SELECT`` (including ``WITH``, ``VALUES``, ``DESCRIBE``,
``SUMMARIZE``, ``SHOW``) or ``EXPLAIN`` statement, as DuckDB's own parser classifies it,
and refuses anything else by name. The query runs on a fresh DuckDB connection over the
lake (:func:`fluvial.lake.query.connect`) that can read only the lake's warehouse: file
access elsewhere is disabled and the configuration locked before the query runs. At most
*limit* rows are fetched (streamed, so a huge result is never materialized) and the query
is interrupted after *timeout* seconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

import duckdb
import pyarrow as pa

from fluvial.errors import SqlError, UnsupportedSqlError, UsageError

if TYPE_CHECKING:
    from fluvial.lake.catalog import Lake
    from fluvial.project import Project

__all__ = ["ALLOWED_STATEMENTS", "QueryResult", "check_statement", "execute_sql"]

#: DuckDB statement types the explorer runs
ALLOWED_STATEMENTS = ("SELECT", "EXPLAIN")


@dataclass(frozen=True)
class QueryResult:
    """A query's first rows; ``truncated`` when it had more than the limit."""

    table: pa.Table
    truncated: bool
    elapsed_ms: float


def check_statement(sql: str) -> str:
    """The statement type of *sql* if it is one allowed statement.

    Raises:
        SqlError: DuckDB cannot parse it (its message kept).
        UnsupportedSqlError: several statements, or a statement that is not a query.

    >>> check_statement("WITH x AS (SELECT 1 AS a) SELECT a FROM x")
    'SELECT'
    >>> check_statement("DROP TABLE raw.events")
    Traceback (most recent call last):
    ...
    fluvial.errors.UnsupportedSqlError: only SELECT and EXPLAIN statements run here; found DROP
    """
    con = duckdb.connect(":memory:")
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlError(str(exc).strip()) from exc
    finally:
        con.close()
    if len(statements) != 1:
        raise UnsupportedSqlError(f"expected exactly one statement, found {len(statements)}")
    kind = statements[0].type.name
    if kind not in ALLOWED_STATEMENTS:
        raise UnsupportedSqlError(
            f"only {' and '.join(ALLOWED_STATEMENTS)} statements run here; found {kind}"
        )
    return kind


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _warehouse_dir(lake: Lake) -> str:
    """The warehouse as a DuckDB path prefix (a local folder, or the s3:// URI)."""
    parsed = urlparse(lake.warehouse)
    if parsed.scheme == "file":
        return str(Path(unquote(parsed.path)).resolve()) + "/"
    return lake.warehouse.rstrip("/") + "/"


def _attach_marts(con: duckdb.DuckDBPyConnection, project: Project) -> None:
    """The warehouse's marts, read-only, as ``marts.<name>`` (skipped while a batch run
    holds the warehouse file for writing, or before the first build)."""
    from fluvial.batch.warehouse import warehouse_path

    path = warehouse_path(project)
    if not path.exists():
        return
    try:
        con.execute(f"ATTACH {_literal(str(path))} AS warehouse (READ_ONLY)")
    except duckdb.Error:
        return  # a batch run is writing it: the marts are back on the next query
    names = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'warehouse' "
        "AND schema_name = 'marts' UNION SELECT view_name FROM duckdb_views() "
        "WHERE database_name = 'warehouse' AND schema_name = 'marts'"
    ).fetchall()
    if names:
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
    for (name,) in names:
        quoted = '"' + name.replace('"', '""') + '"'
        con.execute(f"CREATE VIEW marts.{quoted} AS SELECT * FROM warehouse.marts.{quoted}")


def _lock_down(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """Let *con* read the warehouse and nothing else, for good."""
    con.execute(f"SET allowed_directories = [{_literal(_warehouse_dir(lake))}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _fetch(
    con: duckdb.DuckDBPyConnection, sql: str, limit: int
) -> tuple[pa.Table, bool]:  # fmt: skip
    reader = con.execute(sql).to_arrow_reader(min(limit + 1, 65_536))
    batches: list[pa.RecordBatch] = []
    rows = 0
    for batch in reader:
        batches.append(batch)
        rows += batch.num_rows
        if rows > limit:
            break
    table = pa.Table.from_batches(batches, schema=reader.schema)
    truncated = table.num_rows > limit
    return table.slice(0, limit), truncated


def execute_sql(project: Project, sql: str, *, limit: int, timeout: float) -> QueryResult:
    """Run one read-only statement over the project's lake: its first *limit* rows,
    interrupted after *timeout* seconds.

    Raises:
        UsageError: *limit* or *timeout* is not positive.
        SqlError: the SQL does not parse, fails, or ran out of time.
        UnsupportedSqlError: it is not exactly one SELECT or EXPLAIN statement.
    """
    if limit < 1:
        raise UsageError(f"limit must be at least 1; found {limit}")
    if timeout <= 0:
        raise UsageError(f"timeout must be positive; found {timeout}")
    check_statement(sql)
    from fluvial.lake import connect, open_lake

    started = time.perf_counter()
    with open_lake(project) as lake:
        con = connect(lake)
        timer = threading.Timer(timeout, con.interrupt)
        try:
            _attach_marts(con, project)
            _lock_down(con, lake)
            timer.start()
            table, truncated = _fetch(con, sql, limit)
        except duckdb.InterruptException as exc:
            raise SqlError(
                f"the query ran longer than {timeout:g} s and was stopped", source="sql"
            ) from exc
        except duckdb.Error as exc:
            raise SqlError(str(exc).strip(), source="sql") from exc
        finally:
            timer.cancel()
            con.close()
    return QueryResult(table, truncated, round((time.perf_counter() - started) * 1000, 3))
