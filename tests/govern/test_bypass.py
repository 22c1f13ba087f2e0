"""Bypass attempts against the one enforcement point: each is refused with its reason, or
returns exactly what a hand-written filtered and masked query over the same rows returns —
and each leaves an audit record saying so.

The analyst may read ``curated.dim_users`` without ``phone`` (tag pii), with ``email``
hashed (salted SHA-256) and only rows of country DE, and ``curated.fact_orders`` rows of
country DE. The reference below writes that view by hand over the plain tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import pytest

from fluvial.errors import FluvialError, PermissionDeniedError, SqlError, UnsupportedSqlError
from fluvial.govern.audit import AuditRecord, open_audit
from fluvial.govern.enforce import AUDIT_SQL_CHARS, GovernedSession, run_governed
from fluvial.govern.model import Principal
from fluvial.govern.rewrite import MAX_SQL_CHARS

from .world import ADMIN, ANALYST, OUTSIDER, SALT, Governed, governed_world  # noqa: F401

#: the analyst's view of the data, written by hand
VIEW = (
    f"WITH du AS (SELECT user_id, sha256('{SALT}' || email) AS email, country, age "
    "FROM users WHERE country = 'DE'), fo AS (SELECT * FROM orders WHERE country = 'DE') "
)


@pytest.fixture(scope="module")
def session(governed: Governed) -> Iterator[GovernedSession]:
    with GovernedSession(governed.project, resolver=governed.resolver) as opened:
        yield opened


def _run(
    session: GovernedSession, sql: str, principal: Principal = ANALYST
) -> list[tuple[Any, ...]]:
    result = session.run(principal, sql, limit=100_000, timeout=30)
    rows = list(zip(*(c.to_pylist() for c in result.table.columns), strict=True))
    return sorted(rows, key=repr)


def _last(governed: Governed) -> AuditRecord:
    return list(open_audit(governed.project).records())[-1]


# -- filtered: the query runs, and sees only the analyst's view ---------------------------------

FILTERED = {
    "star": ("SELECT * FROM curated.dim_users", "SELECT * FROM du"),
    "star of a join": (
        "SELECT * FROM curated.dim_users u JOIN curated.fact_orders o USING (user_id)",
        "SELECT * FROM du u JOIN fo o USING (user_id)",
    ),
    "quoted and cased names": (
        'SELECT "EMAIL", Country FROM curated."DIM_USERS"',
        "SELECT email, country FROM du",
    ),
    "fully qualified column": (
        "SELECT curated.dim_users.email FROM curated.dim_users",
        "SELECT email FROM du",
    ),
    "comments hiding text": (
        "SELECT /* phone, */ user_id -- , phone\n FROM curated.dim_users",
        "SELECT user_id FROM du",
    ),
    "string functions of a masked column": (
        "SELECT lower(email), upper(email), substr(email, 1, 5), md5(email), length(email), "
        "email LIKE 'user%' FROM curated.dim_users",
        "SELECT lower(email), upper(email), substr(email, 1, 5), md5(email), length(email), "
        "email LIKE 'user%' FROM du",
    ),
    "casts of a masked column": (
        "SELECT CAST(email AS BLOB), email::TEXT, TRY_CAST(email AS INTEGER) FROM curated.dim_users",
        "SELECT CAST(email AS BLOB), email::TEXT, TRY_CAST(email AS INTEGER) FROM du",
    ),
    "distinct count of a masked column": (
        "SELECT count(DISTINCT email), min(email) FROM curated.dim_users",
        "SELECT count(DISTINCT email), min(email) FROM du",
    ),
    "filtering on a masked column's real value finds nothing": (
        "SELECT user_id FROM curated.dim_users WHERE email = 'user2@example.com'",
        "SELECT user_id FROM du WHERE email = 'user2@example.com'",
    ),
    "scalar subquery": (
        "SELECT (SELECT max(email) FROM curated.dim_users) AS m",
        "SELECT (SELECT max(email) FROM du) AS m",
    ),
    "subquery in FROM": (
        "SELECT t.* FROM (SELECT * FROM curated.dim_users) AS t",
        "SELECT * FROM du",
    ),
    "subquery in WHERE": (
        "SELECT order_id FROM curated.fact_orders WHERE user_id IN "
        "(SELECT user_id FROM curated.dim_users WHERE age > 40)",
        "SELECT order_id FROM fo WHERE user_id IN (SELECT user_id FROM du WHERE age > 40)",
    ),
    "CTE of a masked column": (
        "WITH x AS (SELECT email AS e FROM curated.dim_users) SELECT e FROM x",
        "SELECT email FROM du",
    ),
    "CTE named like the table": (
        "WITH dim_users AS (SELECT * FROM curated.dim_users) SELECT * FROM dim_users",
        "SELECT * FROM du",
    ),
    "union with an allowed table": (
        "SELECT email FROM curated.dim_users UNION ALL "
        "SELECT CAST(amount AS VARCHAR) FROM curated.fact_orders",
        "SELECT email FROM du UNION ALL SELECT CAST(amount AS VARCHAR) FROM fo",
    ),
    "row filter under OR": (
        "SELECT user_id FROM curated.dim_users WHERE country <> 'DE' OR true",
        "SELECT user_id FROM du",
    ),
    "row filter under NOT": (
        "SELECT count(*) FROM curated.dim_users WHERE NOT (country = 'DE')",
        "SELECT count(*) FROM du WHERE NOT (country = 'DE')",
    ),
    "row filter under a self-join": (
        "SELECT count(*) FROM curated.dim_users a JOIN curated.dim_users b "
        "ON a.user_id = b.user_id OR a.country <> b.country OR true",
        "SELECT count(*) FROM du a, du b",
    ),
    "row filter under an outer join": (
        "SELECT count(*) FROM curated.fact_orders o FULL JOIN curated.dim_users u "
        "ON o.user_id = u.user_id",
        "SELECT count(*) FROM fo o FULL JOIN du u ON o.user_id = u.user_id",
    ),
    "the row as a struct": ("SELECT u FROM curated.dim_users u", "SELECT du FROM du"),
    "COLUMNS(*)": ("SELECT COLUMNS('.*') FROM curated.dim_users", "SELECT * FROM du"),
    "star EXCLUDE": (
        "SELECT * EXCLUDE (email) FROM curated.dim_users",
        "SELECT * EXCLUDE (email) FROM du",
    ),
    "window over allowed columns": (
        "SELECT user_id, rank() OVER (PARTITION BY country ORDER BY age, user_id) "
        "FROM curated.dim_users",
        "SELECT user_id, rank() OVER (PARTITION BY country ORDER BY age, user_id) FROM du",
    ),
    "lambda over a masked column": (
        "SELECT list_filter(list(email), x -> x LIKE 'user%') FROM curated.dim_users",
        "SELECT list_filter(list(email), x -> x LIKE 'user%') FROM du",
    ),
    "semicolon in a string": ("SELECT ';' AS x", "SELECT ';' AS x"),
    "semicolon in a comment": ("SELECT 1 AS x -- ; DROP TABLE curated.dim_users", "SELECT 1"),
    "trailing semicolons": ("SELECT count(*) FROM curated.dim_users;;", "SELECT count(*) FROM du"),
    "recursive CTE": (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) "
        "SELECT sum(n) FROM r",
        "SELECT 15",
    ),
    "VALUES": ("VALUES (1, 'a'), (2, 'b')", "VALUES (1, 'a'), (2, 'b')"),
    "generators": (
        "SELECT sum(range) FROM range(10) UNION ALL SELECT sum(x) FROM unnest([1, 2]) t(x)",
        "SELECT 45 UNION ALL SELECT 3",
    ),
}


@pytest.mark.parametrize("case", FILTERED)
def test_filtered(governed: Governed, session: GovernedSession, case: str) -> None:
    sql, reference = FILTERED[case]
    assert _run(session, sql) == governed.reference(VIEW + reference)
    record = _last(governed)
    assert record.kind == "query" and record.principal == "ann" and record.data["sql"] == sql
    assert record.data["decision"] == "allow"
    assert record.data["rows"] == len(governed.reference(VIEW + reference))


def test_reference_is_not_trivial(governed: Governed, session: GovernedSession) -> None:
    """The view hides rows and changes values: a leak would change the results above."""
    de = governed.reference("SELECT count(*) FROM users WHERE country = 'DE'")[0][0]
    assert 0 < de < governed.users.num_rows
    emails = _run(session, "SELECT email FROM curated.dim_users")
    assert all(len(e) == 64 and "@" not in e for (e,) in emails)


def test_audit_names_tables_and_columns(governed: Governed, session: GovernedSession) -> None:
    _run(
        session,
        "SELECT u.email, o.amount FROM curated.dim_users u JOIN curated.fact_orders o "
        "ON u.user_id = o.user_id",
    )
    data = _last(governed).data
    assert data["tables"] == ["curated.dim_users", "curated.fact_orders"]
    assert set(data["columns"]) == {
        "curated.dim_users.email",
        "curated.dim_users.user_id",
        "curated.fact_orders.amount",
        "curated.fact_orders.user_id",
    }


def test_admin_sees_everything(governed: Governed, session: GovernedSession) -> None:
    rows = _run(session, "SELECT * FROM curated.dim_users", ADMIN)
    assert rows == governed.reference("SELECT * FROM users")
    assert _last(governed).principal == "root"


# -- denied: refused with the reason ------------------------------------------------------------

PHONE = "permission denied: column curated.dim_users.phone (tag pii) for role analyst"

DENIED: dict[str, tuple[str, type[FluvialError], str]] = {
    "denied column": ("SELECT phone FROM curated.dim_users", PermissionDeniedError, PHONE),
    "quoted and cased denied column": (
        'SELECT "PHONE" FROM curated."Dim_Users"',
        PermissionDeniedError,
        PHONE,
    ),
    "count distinct of a denied column": (
        "SELECT count(DISTINCT phone) FROM curated.dim_users",
        PermissionDeniedError,
        PHONE,
    ),
    "denied column in WHERE": (
        "SELECT user_id FROM curated.dim_users WHERE phone LIKE '+49%'",
        PermissionDeniedError,
        PHONE,
    ),
    "denied column in ORDER BY": (
        "SELECT user_id FROM curated.dim_users ORDER BY phone",
        PermissionDeniedError,
        PHONE,
    ),
    "denied column in JOIN ON": (
        "SELECT count(*) FROM curated.fact_orders o JOIN curated.dim_users u "
        "ON o.user_id = u.user_id AND u.phone IS NOT NULL",
        PermissionDeniedError,
        PHONE,
    ),
    "denied column in a window": (
        "SELECT row_number() OVER (PARTITION BY phone) FROM curated.dim_users",
        PermissionDeniedError,
        PHONE,
    ),
    "denied column in a lambda": (
        "SELECT list_transform([1], x -> phone) FROM curated.dim_users",
        PermissionDeniedError,
        PHONE,
    ),
    "denied column in a cast": (
        "SELECT CAST(phone AS BLOB) FROM curated.dim_users",
        PermissionDeniedError,
        PHONE,
    ),
    "denied column in a scalar subquery": (
        "SELECT (SELECT max(phone) FROM curated.dim_users) FROM curated.fact_orders",
        PermissionDeniedError,
        PHONE,
    ),
    "denied column in EXISTS": (
        "SELECT 1 FROM curated.fact_orders WHERE EXISTS "
        "(SELECT 1 FROM curated.dim_users WHERE phone = '1')",
        PermissionDeniedError,
        PHONE,
    ),
    "CTE laundering": (
        "WITH x AS (SELECT phone AS p FROM curated.dim_users) SELECT p FROM x",
        PermissionDeniedError,
        PHONE,
    ),
    "union laundering": (
        "SELECT email FROM curated.dim_users UNION SELECT phone FROM curated.dim_users",
        PermissionDeniedError,
        PHONE,
    ),
    "fully qualified denied column": (
        "SELECT curated.dim_users.phone FROM curated.dim_users",
        PermissionDeniedError,
        PHONE,
    ),
    "EXPLAIN ANALYZE of a denied column": (
        "EXPLAIN ANALYZE SELECT phone FROM curated.dim_users",
        PermissionDeniedError,
        PHONE,
    ),
    "table without a grant": (
        "SELECT count(*) FROM curated.dim_users",
        PermissionDeniedError,
        "permission denied: table curated.dim_users (no SELECT grant) for eve",
    ),
    # table functions and file paths
    "read_parquet": (
        "SELECT * FROM read_parquet('{data}')",
        PermissionDeniedError,
        "table function read_parquet() for role analyst",
    ),
    "iceberg_scan": (
        "SELECT * FROM iceberg_scan('{metadata}')",
        PermissionDeniedError,
        "table function iceberg_scan() for role analyst",
    ),
    "read_csv_auto": (
        "SELECT * FROM read_csv_auto('/etc/passwd')",
        PermissionDeniedError,
        "table function read_csv_auto()",
    ),
    "read_json": ("FROM read_json('/etc/x.json')", PermissionDeniedError, "read_json()"),
    "glob": ("SELECT * FROM glob('/**')", PermissionDeniedError, "table function glob()"),
    "query_table": (
        "SELECT * FROM query_table('curated.dim_users')",
        PermissionDeniedError,
        "table function query_table()",
    ),
    "query": (
        "SELECT * FROM query('SELECT phone FROM curated.dim_users')",
        PermissionDeniedError,
        "table function query()",
    ),
    "table function in a subquery": (
        "SELECT (SELECT count(*) FROM glob('/*')) AS n",
        PermissionDeniedError,
        "table function glob()",
    ),
    "duckdb_settings()": (
        "SELECT * FROM duckdb_settings()",
        PermissionDeniedError,
        "table function duckdb_settings()",
    ),
    "getvariable": ("SELECT getvariable('x')", PermissionDeniedError, "function getvariable()"),
    "current_setting": (
        "SELECT current_setting('allowed_directories')",
        PermissionDeniedError,
        "function current_setting()",
    ),
    "stats": ("SELECT stats(age) FROM curated.dim_users", PermissionDeniedError, "stats()"),
    "a path as a table": ("FROM '/etc/passwd'", SqlError, "table /etc/passwd does not exist"),
    "a quoted file name as a table": (
        'SELECT * FROM "users.parquet"',
        SqlError,
        "table users.parquet does not exist",
    ),
    "system view": ("SELECT * FROM duckdb_tables", SqlError, "table duckdb_tables does not exist"),
    "information schema": (
        "SELECT * FROM information_schema.tables",
        SqlError,
        "table information_schema.tables does not exist",
    ),
    "three-part name": (
        "SELECT * FROM memory.curated.dim_users",
        SqlError,
        "lake tables are named zone.table",
    ),
    "homoglyph table": (
        "SELECT * FROM curated.dim_us\u0435rs",  # Cyrillic e
        SqlError,
        "table curated.dim_us\u0435rs does not exist; did you mean 'curated.dim_users'?",
    ),
    "homoglyph column": (
        "SELECT \u0440hone FROM curated.dim_users",  # Cyrillic r
        SqlError,
        'column "\u0440hone" not found',
    ),
    "time travel clause": (
        "SELECT * FROM curated.dim_users AT (VERSION => 1)",
        UnsupportedSqlError,
        "is not supported on table curated.dim_users",
    ),
    # statements
    "CREATE VIEW": (
        "CREATE VIEW v AS SELECT phone FROM curated.dim_users",
        UnsupportedSqlError,
        "found CREATE",
    ),
    "CREATE TEMP TABLE": (
        "CREATE TEMP TABLE t AS SELECT * FROM curated.dim_users",
        UnsupportedSqlError,
        "found CREATE",
    ),
    "ATTACH": ("ATTACH '/tmp/fluvial-x.db' AS x", UnsupportedSqlError, "found ATTACH"),
    "COPY": (
        "COPY (SELECT * FROM curated.dim_users) TO '/tmp/fluvial-x.csv'",
        UnsupportedSqlError,
        "found COPY",
    ),
    "INSTALL": ("INSTALL httpfs", UnsupportedSqlError, "found INSTALL"),
    "LOAD": ("LOAD httpfs", UnsupportedSqlError, "found LOAD"),
    "PRAGMA": ("PRAGMA enable_profiling", UnsupportedSqlError, "found PRAGMA"),
    "SET": ("SET enable_external_access = true", UnsupportedSqlError, "found SET"),
    "SET VARIABLE": ("SET VARIABLE x = 1", UnsupportedSqlError, "found SET"),
    "CALL": ("CALL duckdb_settings()", UnsupportedSqlError, "found CALL"),
    "EXPORT": ("EXPORT DATABASE '/tmp/fluvial-x'", SqlError, "does not parse"),
    "CHECKPOINT": ("CHECKPOINT", UnsupportedSqlError, "found CHECKPOINT"),
    "USE": ("USE curated", UnsupportedSqlError, "found USE"),
    "DELETE": ("DELETE FROM curated.dim_users", UnsupportedSqlError, "found DELETE"),
    "two statements": ("SELECT 1; SELECT 2", UnsupportedSqlError, "exactly one statement, found 2"),
    "statement after a query": (
        "SELECT user_id FROM curated.dim_users; SELECT phone FROM curated.dim_users",
        UnsupportedSqlError,
        "exactly one statement, found 2",
    ),
    "ATTACH after a query": (
        "SELECT 1;ATTACH '/tmp/fluvial-x.db'",
        UnsupportedSqlError,
        "exactly one statement, found 2",
    ),
    "EXPLAIN of a table function": (
        "EXPLAIN SELECT * FROM read_parquet('/tmp/x.parquet')",
        PermissionDeniedError,
        "read_parquet()",
    ),
    # malformed
    "malformed": ("SELEC 1", SqlError, "does not parse"),
    "unterminated string": ("SELECT 'abc", SqlError, "does not parse"),
    "missing table": ("SELECT FROM WHERE", SqlError, "does not parse (line 1, column 17)"),
    "deep nesting": ("SELECT " + "(" * 4000 + "1" + ")" * 4000, SqlError, "nested too deeply"),
    "EXPLAIN of nothing": ("EXPLAIN", SqlError, "EXPLAIN needs a query after it"),
}


def _paths(governed: Governed) -> dict[str, str]:
    from fluvial.lake import open_lake

    with open_lake(governed.project) as lake:
        table = lake.table("curated.dim_users")
        data = next(iter(table.inspect.files().column("file_path").to_pylist()))
        return {"data": data, "metadata": table.metadata_location}


@pytest.mark.parametrize("case", DENIED)
def test_denied(governed: Governed, session: GovernedSession, case: str) -> None:
    sql, error, message = DENIED[case]
    sql = sql.format(**_paths(governed)) if "{" in sql else sql
    principal = OUTSIDER if case == "table without a grant" else ANALYST
    with pytest.raises(error) as raised:
        _run(session, sql, principal)
    assert type(raised.value) is error and message in str(raised.value)
    record = _last(governed)
    assert record.kind == "query" and record.principal == principal.name
    assert record.data["sql"] == sql and record.data["reason"] == str(raised.value)
    denied = isinstance(raised.value, (PermissionDeniedError, UnsupportedSqlError))
    assert record.data["decision"] == ("deny" if denied else "error")
    assert "rows" not in record.data


def test_a_megabyte_of_sql(governed: Governed, session: GovernedSession) -> None:
    sql = "SELECT user_id FROM curated.dim_users WHERE " + " OR ".join(["age = 1"] * 150_000)
    assert len(sql) > 1_000_000
    with pytest.raises(UnsupportedSqlError, match=f"at most {MAX_SQL_CHARS:,} run here"):
        _run(session, sql)
    data = _last(governed).data
    assert data["decision"] == "deny" and data["sql_chars"] == len(sql)
    assert data["sql"] == sql[:AUDIT_SQL_CHARS] and len(data["sql_sha256"]) == 64


def test_long_sql_under_the_limit_runs(governed: Governed, session: GovernedSession) -> None:
    ages = ", ".join(str(a) for a in range(18, 5000))
    sql = f"SELECT count(*) FROM curated.dim_users WHERE age IN ({ages})"
    assert _run(session, sql) == governed.reference(VIEW + "SELECT count(*) FROM du")


def test_disabled_principal_is_refused(governed: Governed, session: GovernedSession) -> None:
    gone = Principal("old", roles=frozenset({"analyst"}), disabled=True)
    with pytest.raises(PermissionDeniedError, match="principal old is disabled"):
        _run(session, "SELECT 1", gone)
    assert _last(governed).data["decision"] == "deny"


def test_explain_never_shows_the_salt(governed: Governed, session: GovernedSession) -> None:
    rows = _run(session, "EXPLAIN SELECT md5(email) FROM curated.dim_users")
    assert rows and SALT not in repr(rows)


def test_session_cannot_reach_files_or_settings(
    governed: Governed, session: GovernedSession
) -> None:
    """Below the rewrite, the sandbox itself refuses files, settings and extensions."""
    con = session.sandbox.con.cursor()
    for sql in (
        "SELECT * FROM read_csv('/etc/passwd')",
        "SET enable_external_access = true",
        "INSTALL httpfs",
        "ATTACH '/tmp/fluvial-sandbox.db' AS x",
        "COPY (SELECT 1) TO '/tmp/fluvial-sandbox.csv'",
    ):
        with pytest.raises(duckdb.Error, match=r"disabled|locked|not allowed|Permission"):
            con.execute(sql)
    # the catalog's tables exist only under a hidden name: the zone is not a schema
    with pytest.raises(duckdb.Error, match="does not exist"):
        con.execute("SELECT * FROM curated.dim_users")


def test_run_governed_limits_rows_and_time(governed: Governed) -> None:
    result = run_governed(
        governed.project,
        ANALYST,
        "SELECT * FROM curated.fact_orders",
        resolver=governed.resolver,
        limit=7,
        timeout=30,
    )
    assert result.table.num_rows == 7 and result.truncated
    assert result.tables == ("curated.fact_orders",)
    assert _last(governed).data["rows"] == 7
    with pytest.raises(SqlError, match=r"ran longer than 0\.2 s"):
        run_governed(
            governed.project,
            ANALYST,
            "SELECT count(*) FROM range(1000000000000) t(a) WHERE a % 7 = 3",
            resolver=governed.resolver,
            limit=1,
            timeout=0.2,
        )
    assert _last(governed).data["decision"] == "error"


def test_audit_chain_holds(governed: Governed, session: GovernedSession) -> None:
    _run(session, "SELECT 1")
    assert open_audit(governed.project).verify().ok
