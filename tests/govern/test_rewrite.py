"""The governance rewrite pass by pass: golden input/output SQL, and what each pass refuses.
(The bypass suite runs the rewritten SQL on DuckDB; these pin its text.)"""

from __future__ import annotations

import pytest

from fluvial.errors import FluvialError, PermissionDeniedError, SqlError, UnsupportedSqlError
from fluvial.govern.model import Mask, TableAccess
from fluvial.govern.rewrite import Governed, forbidden_function, govern

USERS = TableAccess(
    "curated.users",
    ("id", "email"),
    denied={"phone": "tag pii"},
    row_filter="id > 1",
    masks={"email": Mask("redact")},
)
ORDERS = TableAccess("curated.orders", ("order_id", "id", "amount"))
ACCESS = {"curated.users": USERS, "curated.orders": ORDERS}
TABLES = {"curated.users": ("id", "email", "phone"), "curated.orders": ("order_id", "id", "amount")}
USR = (
    '(SELECT "id", CASE WHEN "email" IS NULL THEN NULL ELSE \'****\' END AS "email" '
    'FROM h."curated.users" WHERE (id > 1))'
)
ORD = '(SELECT "order_id", "id", "amount" FROM h."curated.orders")'


def _govern(sql: str) -> Governed:
    return govern(
        sql,
        tables=TABLES,
        access=ACCESS.__getitem__,
        relation=lambda t: f'h."{t}"',
        salt="",
        who="role a",
    )


GOLDEN = {
    "SELECT * FROM curated.users": f'SELECT * FROM {USR} AS "users"',
    "SELECT a.id FROM curated.users AS a JOIN curated.users AS b ON a.id = b.id OR TRUE": (
        f"SELECT a.id FROM {USR} AS a JOIN {USR} AS b ON a.id = b.id OR TRUE"
    ),
    "WITH x AS (SELECT email FROM curated.users) SELECT lower(email) FROM x": (
        f'WITH x AS (SELECT email FROM {USR} AS "users") SELECT LOWER(email) FROM x'
    ),
    "SELECT curated.users.id FROM curated.users": f'SELECT users.id FROM {USR} AS "users"',
    "SELECT id FROM curated.orders UNION ALL SELECT id FROM curated.users": (
        f'SELECT id FROM {ORD} AS "orders" UNION ALL SELECT id FROM {USR} AS "users"'
    ),
    "SELECT (SELECT count(*) FROM curated.orders AS o WHERE o.id = u.id) FROM curated.users AS u": (
        f"SELECT (SELECT COUNT(*) FROM {ORD} AS o WHERE o.id = u.id) FROM {USR} AS u"
    ),
    'SELECT "EMAIL" FROM CURATED."Users"': f'SELECT "EMAIL" FROM {USR} AS "users"',
}


@pytest.mark.parametrize("sql", GOLDEN)
def test_golden(sql: str) -> None:
    assert _govern(sql).sql == GOLDEN[sql]


def test_what_a_query_reads() -> None:
    governed = _govern(
        "SELECT o.amount, u.email FROM curated.orders o JOIN curated.users u USING (id)"
    )
    assert governed.tables == ("curated.orders", "curated.users")
    assert set(governed.columns) == {
        "curated.orders.amount",
        "curated.orders.id",
        "curated.users.email",
        "curated.users.id",
    }


@pytest.mark.parametrize(
    ("sql", "error", "message"),
    [
        ("SELECT phone FROM curated.users", PermissionDeniedError, "curated.users.phone (tag pii)"),
        ("SELECT x.phone AS p FROM curated.users x", PermissionDeniedError, "phone"),
        ("SELECT 1 FROM curated.users WHERE PHONE > ''", PermissionDeniedError, "phone"),
        ("SELECT * FROM read_parquet('x')", PermissionDeniedError, "read_parquet()"),
        ("SELECT current_setting('threads')", PermissionDeniedError, "current_setting()"),
        ("SELECT * FROM users", SqlError, "did you mean 'curated.users'?"),
        ("SELECT * FROM curated.user", SqlError, "did you mean 'curated.users'?"),
        ("SELECT 1; SELECT 2", UnsupportedSqlError, "found 2"),
        ("", UnsupportedSqlError, "found 0"),
        ("INSERT INTO curated.users VALUES (1)", UnsupportedSqlError, "found INSERT"),
        ("SELECT * FROM curated.users AT (VERSION => 1)", UnsupportedSqlError, "not supported"),
    ],
)
def test_refusals(sql: str, error: type[FluvialError], message: str) -> None:
    with pytest.raises(error) as raised:
        _govern(sql)
    assert type(raised.value) is error and message in str(raised.value)


def test_an_alias_named_like_a_denied_column_is_not_denied() -> None:
    governed = _govern("SELECT email AS phone FROM curated.users")
    assert governed.sql == f'SELECT email AS phone FROM {USR} AS "users"'


def test_forbidden_functions() -> None:
    for name in (
        "read_csv_auto",
        "iceberg_scan",
        "glob",
        "getvariable",
        "duckdb_settings",
        "Query",
    ):
        assert forbidden_function(name)
    for name in ("lower", "sha256", "date_trunc", "list_transform", "regexp_matches"):
        assert not forbidden_function(name)
