"""The SQL explorer's query path: one governed, read-only statement over the lake, bounded.

:func:`execute_sql` is the one place the API runs user SQL: it runs it through the
governance layer (:func:`fluvial.govern.run_governed`) as the request's principal, so the
query sees only the rows and columns that principal may read (masked where a mask
applies), and is audited. It accepts exactly one ``SELECT`` (including ``WITH``,
``VALUES``), or an ``EXPLAIN``, ``DESCRIBE`` or ``SUMMARIZE`` of one, and refuses anything
else by name. The query runs in a locked DuckDB sandbox over the lake and the warehouse's
marts (:mod:`fluvial.govern.sandbox`): no file access, no settings, no extensions. At
most *limit* rows are fetched (streamed, so a huge result is never materialized) and the
query is interrupted after *timeout* seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from fluvial.govern.rewrite import parse

if TYPE_CHECKING:
    from fluvial.govern.model import Principal
    from fluvial.project import Project

__all__ = ["QueryResult", "check_statement", "execute_sql"]


@dataclass(frozen=True)
class QueryResult:
    """A query's first rows; ``truncated`` when it had more than the limit."""

    table: pa.Table
    truncated: bool
    elapsed_ms: float


def check_statement(sql: str) -> str:
    """The statement kind of *sql* if it is one statement the explorer runs (``SELECT``,
    or ``EXPLAIN``/``DESCRIBE``/``SUMMARIZE`` of one); what it reads is checked when it runs.

    Raises:
        SqlError: it does not parse.
        UnsupportedSqlError: several statements, or a statement that is not a query.

    >>> check_statement("WITH x AS (SELECT 1 AS a) SELECT a FROM x")
    'SELECT'
    >>> check_statement("DROP TABLE raw.events")
    Traceback (most recent call last):
    ...
    fluvial.errors.UnsupportedSqlError: only SELECT, EXPLAIN, DESCRIBE and SUMMARIZE statements run here; found DROP
    """
    from fluvial.govern.enforce import split_prefix
    from fluvial.govern.rewrite import check_statement as check_query

    prefix, query = split_prefix(sql)
    check_query(parse(query), None)
    return prefix.split()[0] if prefix else "SELECT"


def execute_sql(
    project: Project,
    sql: str,
    *,
    limit: int,
    timeout: float,
    principal: Principal | None = None,
) -> QueryResult:
    """Run one read-only statement over the project's lake as *principal* (the local
    admin when None): its first *limit* rows, interrupted after *timeout* seconds.

    Raises:
        UsageError: *limit* or *timeout* is not positive.
        SqlError: the SQL does not parse, fails, or ran out of time.
        UnsupportedSqlError: it is not exactly one query, or uses a refused construct.
        PermissionDeniedError: it reads a table, column or function the principal may not.
    """
    from fluvial.govern import run_governed

    if principal is None:
        from fluvial.govern.principals import open_principals

        principal = open_principals(project).local_admin()
    result = run_governed(project, principal, sql, limit=limit, timeout=timeout)
    return QueryResult(result.table, result.truncated, result.elapsed_ms)
