"""The one enforcement point: every user query — ``fluvial sql``, ``POST /api/sql``, the
SQL explorer, dashboards — runs through :func:`run_governed`.

A query is checked and rewritten for its principal (:mod:`fluvial.govern.rewrite`),
checked once more on DuckDB's own parse of the rewritten SQL (every table a governed
hidden view, a CTE or a generator; no forbidden function), and run in the locked
:mod:`~fluvial.govern.sandbox` with a row limit and a timeout. Every outcome — allowed
(with the rows returned), denied (with the reason) or failed — appends a ``query`` record
to the audit log.

Statements: one ``SELECT`` (``WITH``, set operations, ``VALUES``), or ``EXPLAIN``,
``EXPLAIN ANALYZE``, ``DESCRIBE`` or ``SUMMARIZE`` of one (``DESCRIBE zone.table`` too).
An ``EXPLAIN`` plans the governed query with a placeholder salt, so a plan never shows
the salt of hash masks.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from fluvial.errors import (
    FluvialError,
    PermissionDeniedError,
    SqlError,
    UnsupportedSqlError,
    UsageError,
)
from fluvial.govern.audit import open_audit
from fluvial.govern.model import AccessResolver, Principal, TableAccess
from fluvial.govern.rewrite import TABLE_FUNCTIONS, Governed, forbidden_function, govern
from fluvial.govern.sandbox import Sandbox, open_sandbox

if TYPE_CHECKING:
    from fluvial.govern.audit import AuditLog
    from fluvial.lake.catalog import Lake
    from fluvial.project import Project

__all__ = ["GovernedResult", "GovernedSession", "describe_principal", "run_governed"]

#: SQL kept in an audit record (a longer text is cut, its length and SHA-256 kept)
AUDIT_SQL_CHARS = 10_000
#: what wraps a governed query, as the first words of a statement
PREFIXES = {
    "EXPLAIN": "EXPLAIN",
    "DESCRIBE": "DESCRIBE",
    "DESC": "DESCRIBE",
    "SUMMARIZE": "SUMMARIZE",
}
_SKIP = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)
_PREFIX = re.compile(
    _SKIP.pattern + r"(EXPLAIN\s+ANALY[SZ]E|EXPLAIN|DESCRIBE|DESC|SUMMARIZE)\b", re.I | re.DOTALL
)
_QUERY_START = {"SELECT", "WITH", "FROM", "VALUES", "TABLE"}
_SALT_PLACEHOLDER = "<salt>"
_NOT_FOUND = re.compile(r'(?:column|Column) "?([^"\s]+)"? not found', re.IGNORECASE)


@dataclass(frozen=True)
class GovernedResult:
    """A governed query's first rows; ``truncated`` when it had more than the limit."""

    table: pa.Table
    truncated: bool
    elapsed_ms: float
    tables: tuple[str, ...]
    columns: tuple[str, ...]


def describe_principal(principal: Principal) -> str:
    """How messages name *principal*: by its roles, or by name when it has none.

    >>> describe_principal(Principal("ann", roles=frozenset({"analyst"})))
    'role analyst'
    >>> describe_principal(Principal("svc"))
    'principal svc'
    """
    if not principal.roles:
        return f"principal {principal.name}"
    roles = sorted(principal.roles)
    return f"role{'s' if len(roles) > 1 else ''} {', '.join(roles)}"


def split_prefix(sql: str) -> tuple[str, str]:
    """(``EXPLAIN``/``DESCRIBE``/… or ``""``, the query it wraps).

    >>> split_prefix("explain analyze SELECT 1")
    ('EXPLAIN ANALYZE', 'SELECT 1')
    >>> split_prefix("/* the users */ DESCRIBE curated.users")
    ('DESCRIBE', 'SELECT * FROM curated.users')
    """
    match = _PREFIX.match(sql)
    if match is None:
        return "", sql
    words = match.group(1).upper().split()
    prefix = "EXPLAIN ANALYZE" if len(words) == 2 else PREFIXES[words[0]]
    rest = sql[match.end() :].lstrip()
    if not rest.strip():
        raise SqlError(f"{prefix} needs a query after it", source="sql")
    first = _SKIP.match(rest)
    head = rest[first.end() if first else 0 :].lstrip("(").split(None, 1)
    if prefix in ("DESCRIBE", "SUMMARIZE") and (not head or head[0].upper() not in _QUERY_START):
        rest = "SELECT * FROM " + rest
    return prefix, rest


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def check_on_duckdb(sandbox: Sandbox, sql: str) -> None:
    """DuckDB's own parse of the governed SQL reads only hidden views, CTEs and generators
    and calls no forbidden function (a second, independent parser over what runs).

    Raises:
        SqlError: DuckDB cannot parse it.
        UnsupportedSqlError: it reaches anything else.
    """
    row = sandbox.con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    assert row is not None
    tree = orjson.loads(row[0])
    if tree.get("error"):
        raise SqlError(str(tree.get("error_message", "DuckDB cannot parse it")), source="sql")
    ctes: set[str] = set()
    nodes = list(_walk(tree["statements"]))
    for node in nodes:
        for entry in node.get("cte_map", {}).get("map", []) if "cte_map" in node else []:
            ctes.add(str(entry["key"]).lower())
    for node in nodes:
        kind = node.get("type")
        if kind == "BASE_TABLE":
            schema, name = node.get("schema_name", ""), str(node.get("table_name", ""))
            hidden = schema == sandbox.schema and name in sandbox.tables
            if node.get("catalog_name") or not (hidden or (not schema and name.lower() in ctes)):
                raise UnsupportedSqlError(f"unsupported table reference {schema}.{name}")
        elif kind == "TABLE_FUNCTION":
            name = str(node.get("function", {}).get("function_name", "")).lower()
            if name not in TABLE_FUNCTIONS:
                raise UnsupportedSqlError(f"table function {name}() is not allowed")
        elif node.get("class") == "FUNCTION" and forbidden_function(
            str(node.get("function_name", ""))
        ):
            raise UnsupportedSqlError(f"function {node.get('function_name')}() is not allowed")


def _full_access(table: str, columns: tuple[str, ...]) -> TableAccess:
    return TableAccess(table, columns, sources={c: "admin" for c in columns})


class GovernedSession:
    """A sandbox over *project*'s lake and marts that runs governed queries for any
    principal; :func:`run_governed` opens one per query. Close it (or use ``with``)."""

    def __init__(
        self,
        project: Project,
        *,
        resolver: AccessResolver | None = None,
        snapshot_id: int | None = None,
        as_of: datetime | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        from fluvial.lake import open_lake

        self.project = project
        self._resolver = resolver
        self.audit = audit if audit is not None else open_audit(project)
        self._lake: Lake = open_lake(project)
        try:
            self.sandbox = open_sandbox(project, self._lake, snapshot_id=snapshot_id, as_of=as_of)
        except BaseException:
            self._lake.close()
            raise

    def close(self) -> None:
        self.sandbox.close()
        self._lake.close()

    def __enter__(self) -> GovernedSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def resolver(self) -> AccessResolver:
        """The policies (the project's, unless the session was given others)."""
        if self._resolver is None:
            self._resolver = _policy(self.project)
        return self._resolver

    def _access(self, principal: Principal, table: str) -> TableAccess:
        columns = self.sandbox.tables[table]
        if principal.admin:
            return _full_access(table, columns)
        return self.resolver.access(principal, table, columns)

    def govern(self, principal: Principal, sql: str, *, salt: str | None = None) -> Governed:
        """*sql* checked and rewritten for *principal* (nothing runs).

        Raises:
            SqlError, UnsupportedSqlError, PermissionDeniedError: as :func:`run_governed`.
        """
        if principal.disabled:
            raise PermissionDeniedError(f"principal {principal.name} is disabled")
        return govern(
            sql,
            tables=self.sandbox.tables,
            access=lambda table: self._access(principal, table),
            relation=self.sandbox.relation,
            salt=self._salt(principal) if salt is None else salt,
            who=describe_principal(principal),
        )

    def _salt(self, principal: Principal) -> str:
        if principal.admin and self._resolver is None:
            return ""  # an admin sees no mask: no need to open the policies
        return str(getattr(self.resolver, "salt", ""))

    def run(self, principal: Principal, sql: str, *, limit: int, timeout: float) -> GovernedResult:
        """Check, rewrite, run and audit *sql* as *principal*: its first *limit* rows,
        interrupted after *timeout* seconds.

        Raises:
            UsageError: *limit* or *timeout* is not positive.
            SqlError: the SQL does not parse, names an unknown table, fails or times out.
            UnsupportedSqlError: it is not one query, or uses a refused construct.
            PermissionDeniedError: it reads a table, column or function it may not.
        """
        if limit < 1:
            raise UsageError(f"limit must be at least 1; found {limit}")
        if timeout <= 0:
            raise UsageError(f"timeout must be positive; found {timeout}")
        started = time.perf_counter()
        governed: Governed | None = None
        try:
            prefix, query = split_prefix(sql)
            explain = prefix.startswith("EXPLAIN")
            governed = self.govern(principal, query, salt=_SALT_PLACEHOLDER if explain else None)
            check_on_duckdb(self.sandbox, governed.sql)
            text = f"{prefix} {governed.sql}" if prefix else governed.sql
            try:
                table, truncated = self.sandbox.fetch(text, limit=limit, timeout=timeout)
            except SqlError as exc:
                raise _denied_column(exc, governed, principal, self) from exc
        except (PermissionDeniedError, UnsupportedSqlError) as exc:
            self._record(principal, sql, governed, "deny", reason=str(exc))
            raise
        except FluvialError as exc:
            self._record(principal, sql, governed, "error", reason=str(exc))
            raise
        self._record(principal, sql, governed, "allow", rows=table.num_rows)
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        return GovernedResult(table, truncated, elapsed, governed.tables, governed.columns)

    def _record(
        self,
        principal: Principal,
        sql: str,
        governed: Governed | None,
        decision: str,
        *,
        rows: int | None = None,
        reason: str | None = None,
    ) -> None:
        data: dict[str, Any] = {"sql": sql[:AUDIT_SQL_CHARS], "decision": decision}
        if len(sql) > AUDIT_SQL_CHARS:
            data["sql_chars"] = len(sql)
            data["sql_sha256"] = hashlib.sha256(sql.encode("utf-8", "replace")).hexdigest()
        data["tables"] = list(governed.tables) if governed else []
        data["columns"] = list(governed.columns) if governed else []
        if rows is not None:
            data["rows"] = rows
        if reason is not None:
            data["reason"] = reason
        self.audit.append("query", principal.name, **data)


def _denied_column(
    exc: SqlError, governed: Governed, principal: Principal, session: GovernedSession
) -> FluvialError:
    """DuckDB's "column not found" for a column the principal may not read, said as such."""
    match = _NOT_FOUND.search(str(exc))
    if match:
        wanted = match.group(1).lower()
        for table in governed.tables:
            access = session._access(principal, table)
            for column, reason in access.denied.items():
                if column.lower() == wanted:
                    return PermissionDeniedError(
                        f"column {table}.{column} ({reason}) for {describe_principal(principal)}"
                    )
    return exc


def _policy(project: Project) -> AccessResolver:
    from fluvial.govern.policy import open_policy  # type: ignore[import-not-found,unused-ignore]

    resolver: AccessResolver = open_policy(project)
    return resolver


def run_governed(
    project: Project,
    principal: Principal,
    sql: str,
    *,
    limit: int | None = None,
    timeout: float | None = None,
    resolver: AccessResolver | None = None,
    snapshot_id: int | None = None,
    as_of: datetime | None = None,
) -> GovernedResult:
    """Run *sql* as *principal* over the project's lake and marts, governed and audited.

    *limit* and *timeout* default to ``[govern] sql_max_rows`` and
    ``sql_timeout_seconds``; *resolver* to the project's policies; *snapshot_id* and
    *as_of* time-travel as in :func:`fluvial.lake.connect`.

    Raises:
        UsageError: *limit* or *timeout* is not positive.
        SqlError: the SQL does not parse, names an unknown table, fails or times out.
        UnsupportedSqlError: it is not one query, or uses a refused construct.
        PermissionDeniedError: it reads a table, column or function it may not.
    """
    settings = project.settings.govern
    with GovernedSession(
        project, resolver=resolver, snapshot_id=snapshot_id, as_of=as_of
    ) as session:
        return session.run(
            principal,
            sql,
            limit=settings.sql_max_rows if limit is None else limit,
            timeout=settings.sql_timeout_seconds if timeout is None else timeout,
        )
