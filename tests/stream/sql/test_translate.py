"""Flink functions translated to DuckDB and executed on a small Arrow table.

Expected values are Flink's documented results (Flink docs, "System (Built-in) Functions").
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from fluvial.errors import UnsupportedSqlError
from fluvial.stream.sql import parse_query, to_duckdb

TS = dt.datetime(2024, 3, 5, 14, 7, 9, 123_000)
TABLE = pa.table(
    {
        "s": pa.array(["hello"]),
        "csv": pa.array(["a,b,c"]),
        "n": pa.array([None], pa.string()),
        "ts": pa.array([TS], pa.timestamp("ms")),
        "r": pa.array([{"f": 7, "g": {"h": "deep"}}]),
        "arr": pa.array([[10, 20, 30]]),
        "m": pa.array([[("k", 1), ("z", 2)]], pa.map_(pa.string(), pa.int64())),
        "j": pa.array(['{"a": {"b": 42}, "s": "x"}']),
        "x": pa.array([7], pa.int64()),
    }
)


def _eval(expr: str) -> Any:
    sql = to_duckdb(parse_query(f"SELECT {expr} AS v FROM tbl"))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("tbl", TABLE)
    return con.execute(sql).fetchone()[0]  # type: ignore[index]


CASES = [
    ("CONCAT('a', 'b', s)", "abhello"),
    ("CONCAT('a', n)", None),  # NULL if any argument is NULL
    ("CONCAT_WS('-', 'a', n, 'b')", "a-b"),  # NULL arguments skipped
    ("UPPER(s)", "HELLO"),
    ("LOWER('HeLLo')", "hello"),
    ("SUBSTRING(s, 2, 3)", "ell"),
    ("SUBSTRING(s FROM 2 FOR 3)", "ell"),
    ("SUBSTR(s, 2)", "ello"),
    ("CHAR_LENGTH(s)", 5),
    ("TRIM('  hi  ')", "hi"),
    ("TRIM(BOTH 'x' FROM 'xxhixx')", "hi"),
    ("REPLACE('hello world', 'o', '0')", "hell0 w0rld"),
    ("REGEXP_EXTRACT('foothebar', 'foo(.*?)(bar)', 2)", "bar"),
    ("REGEXP_EXTRACT('foothebar', 'foo(.*?)(bar)', 0)", "foothebar"),
    ("REGEXP_EXTRACT('foothebar', 'zzz(.*)', 1)", None),
    ("SPLIT_INDEX(csv, ',', 1)", "b"),
    ("SPLIT_INDEX(csv, ',', 0)", "a"),
    ("SPLIT_INDEX(csv, ',', 3)", None),
    ("SPLIT_INDEX(csv, ',', -1)", None),
    ("s LIKE 'he%'", True),
    ("POSITION('ll' IN s)", 3),
    ("POSITION('zz' IN s)", 0),
    ("INITCAP('hello wORLD')", "Hello World"),
    ("DATE_FORMAT(ts, 'yyyy-MM-dd HH:mm')", "2024-03-05 14:07"),
    ("DATE_FORMAT(ts, 'yyyy-MM-dd''T''HH:mm:ss.SSS')", "2024-03-05T14:07:09.123"),
    ("TO_TIMESTAMP('2024-03-05 14:07:09')", dt.datetime(2024, 3, 5, 14, 7, 9)),
    ("TO_TIMESTAMP('05/03/2024', 'dd/MM/yyyy')", dt.datetime(2024, 3, 5)),
    ("TIMESTAMPADD(HOUR, 2, ts)", TS + dt.timedelta(hours=2)),
    ("TIMESTAMPDIFF(DAY, TIMESTAMP '2003-01-02 10:00:00', TIMESTAMP '2003-01-03 10:00:00')", 1),
    ("TIMESTAMPDIFF(HOUR, TIMESTAMP '2003-01-02 10:00:00', TIMESTAMP '2003-01-02 11:59:00')", 1),
    ("EXTRACT(HOUR FROM ts)", 14),
    ("EXTRACT(DAY FROM ts)", 5),
    ("FLOOR(ts TO HOUR)", dt.datetime(2024, 3, 5, 14)),
    ("CEIL(ts TO HOUR)", dt.datetime(2024, 3, 5, 15)),
    ("CEIL(TIMESTAMP '2024-03-05 14:00:00' TO HOUR)", dt.datetime(2024, 3, 5, 14)),
    ("UNIX_TIMESTAMP('1970-01-01 00:01:40')", 100),
    ("FROM_UNIXTIME(100)", "1970-01-01 00:01:40"),
    ("FROM_UNIXTIME(100, 'yyyy/MM/dd HH')", "1970/01/01 00"),
    ("ts - INTERVAL '4' SECOND", TS - dt.timedelta(seconds=4)),
    ("ts + INTERVAL '10' MINUTES", TS + dt.timedelta(minutes=10)),
    ("COALESCE(n, 'd')", "d"),
    ("NULLIF(x, 7)", None),
    ("IF(x > 5, 'big', 'small')", "big"),
    ("n IS NULL", True),
    ("x IS NOT NULL", True),
    ("x IN (1, 7)", True),
    ("x BETWEEN 1 AND 6", False),
    ("CASE WHEN x = 7 THEN 'seven' ELSE 'other' END", "seven"),
    ("CAST(x AS STRING)", "7"),
    ("CAST('42' AS INT) + 1", 43),
    ("CAST('1.50' AS DECIMAL(10, 2))", __import__("decimal").Decimal("1.50")),
    ("CAST('2024-03-05 14:07:09.123' AS TIMESTAMP(3))", TS),
    ("JSON_VALUE(j, '$.a.b')", "42"),
    ("JSON_VALUE(j, '$.a.b' RETURNING INT) + 1", 43),
    ("r.f", 7),
    ("r.g.h", "deep"),
    ("arr[1]", 10),
    ("ARRAY[1, 2, 3][3]", 3),
    ("m['z']", 2),
    ("MAP['a', 1, 'b', 2]['b']", 2),
    ("CARDINALITY(arr)", 3),
    ("MOD(x, 4)", 3),
    ("7 / 2", 3),  # integer division truncates toward zero, as in Flink (Java)
    ("-7 / 2", -3),
    ("CAST(7 AS BIGINT) / -2", -3),
    ("CAST(7 AS DOUBLE) / 2", 3.5),
    ("x / 2.0", 3.5),
]


@pytest.mark.parametrize(("expr", "expected"), CASES, ids=[c[0] for c in CASES])
def test_function_matches_flink(expr: str, expected: Any) -> None:
    assert _eval(expr) == expected


def test_aggregate_query_runs() -> None:
    sql = to_duckdb(
        parse_query(
            "SELECT COUNT(*) AS c, COUNT(DISTINCT x) AS d, SUM(x) FILTER (WHERE x > 100) AS f FROM tbl"
        )
    )
    con = duckdb.connect()
    con.register("tbl", TABLE)
    assert con.execute(sql).fetchone() == (1, 1, None)


def test_unknown_function_did_you_mean() -> None:
    with pytest.raises(
        UnsupportedSqlError,
        match="function SPLIT_INDX is not supported; did you mean 'SPLIT_INDEX'",
    ) as info:
        to_duckdb(parse_query("SELECT\n  SPLIT_INDX(s, ',', 1) FROM t"))
    assert (info.value.line, info.value.column) == (2, 3)


@pytest.mark.parametrize(
    ("value", "sql_type", "expected"),
    [
        ("CAST(71.6 AS DOUBLE)", "INT", 71),
        ("CAST(-71.6 AS DOUBLE)", "INT", -71),
        ("CAST(2.5 AS DECIMAL(10, 2))", "BIGINT", 2),
        ("CAST(-2.5 AS DECIMAL(10, 2))", "SMALLINT", -2),
        ("'12'", "INT", 12),
        ("CAST(9007199254740993 AS BIGINT)", "BIGINT", 9007199254740993),
    ],
)
def test_cast_to_integers_truncates_toward_zero(value: str, sql_type: str, expected: int) -> None:
    """Flink (Java) truncates; DuckDB's own CAST would round 71.6 to 72."""
    import duckdb

    from fluvial.stream.sql import parse_query, to_duckdb

    sql = to_duckdb(parse_query(f"SELECT CAST({value} AS {sql_type}) AS v"))
    assert duckdb.connect().execute(sql).fetchone() == (expected,)
