"""Statements, window TVFs, legacy group windows and error positions."""

from __future__ import annotations

import pyarrow as pa
import pytest
from sqlglot import exp

from fluvial.errors import SqlError, UnsupportedSqlError
from fluvial.stream.sql import interval_ms, parse_query, parse_script, parse_type
from fluvial.stream.sql.ast import WindowTVF
from fluvial.stream.sql.dialect import Flink


def _tvf(sql: str) -> WindowTVF:
    node = parse_query(sql).find(WindowTVF)
    assert node is not None
    return node


def test_create_table_schema_and_watermark() -> None:
    script = parse_script(
        "CREATE TABLE t (id BIGINT NOT NULL, p ROW<a INT, b STRING>, ts TIMESTAMP(3),"
        " d AS id + 1, WATERMARK FOR ts AS ts - INTERVAL '4' SECOND,"
        " PRIMARY KEY (id) NOT ENFORCED) WITH ('connector' = 'datagen')"
    )
    table = script.tables["t"]
    assert table.physical_schema() == pa.schema(
        [
            pa.field("id", pa.int64(), False),
            pa.field("p", pa.struct([("a", pa.int32()), ("b", pa.string())])),
            pa.field("ts", pa.timestamp("ms")),
        ]
    )
    assert [c.name for c in table.columns if c.computed] == ["d"]
    assert table.watermark is not None and table.watermark.delay_ms == 4000
    assert table.primary_key == ("id",)
    assert table.options == {"connector": "datagen"}


@pytest.mark.parametrize(
    ("text", "arrow"),
    [
        ("TIMESTAMP_LTZ(3)", pa.timestamp("ms", tz="UTC")),
        ("TIMESTAMP(3) WITH LOCAL TIME ZONE", pa.timestamp("ms", tz="UTC")),
        ("DECIMAL(10, 2)", pa.decimal128(10, 2)),
        ("MAP<STRING, BIGINT>", pa.map_(pa.string(), pa.int64())),
        ("ARRAY<INT>", pa.list_(pa.int32())),
        ("BYTES", pa.binary()),
        ("ROW(a INT, b DATE)", pa.struct([("a", pa.int32()), ("b", pa.date32())])),
    ],
)
def test_types(text: str, arrow: pa.DataType) -> None:
    assert parse_type(text).to_arrow() == arrow


@pytest.mark.parametrize(
    ("sql", "ms"),
    [
        ("INTERVAL '10' SECOND", 10_000),
        ("INTERVAL '10' MINUTES", 600_000),
        ("INTERVAL '2' HOURS", 7_200_000),
        ("INTERVAL '1' DAY", 86_400_000),
        ("INTERVAL '1.5' SECOND", 1_500),
    ],
)
def test_interval_ms(sql: str, ms: int) -> None:
    import sqlglot

    assert interval_ms(sqlglot.parse_one(sql, read=Flink)) == ms


def test_interval_ms_refuses_months() -> None:
    import sqlglot

    with pytest.raises(SqlError, match="interval unit"):
        interval_ms(sqlglot.parse_one("INTERVAL '1' MONTH", read=Flink))


def test_tvf_forms() -> None:
    hop = _tvf(
        "SELECT * FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '1' MINUTE))"
    )
    assert (hop.kind, hop.args["slide_ms"], hop.args["size_ms"]) == ("HOP", 5000, 60000)
    cum = _tvf(
        "SELECT * FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '1' HOUR))"
    )
    assert (cum.args["step_ms"], cum.args["size_ms"]) == (60_000, 3_600_000)
    tum = _tvf(
        "SELECT * FROM TABLE(TUMBLE(TABLE db.t, DESCRIPTOR(ts), INTERVAL '1' HOUR, INTERVAL '15' MINUTE)) w"
    )
    assert (tum.args["size_ms"], tum.args["offset_ms"], tum.args["alias"]) == (
        3_600_000,
        900_000,
        "w",
    )
    assert isinstance(tum.this, exp.Table) and tum.this.name == "t" and tum.this.db == "db"
    ses = _tvf(
        "SELECT * FROM TABLE(SESSION(TABLE t PARTITION BY a, b, DESCRIPTOR(ts), INTERVAL '30' SECOND))"
    )
    assert (ses.args["gap_ms"], ses.args["partition_by"]) == (30_000, ["a", "b"])
    named = _tvf(
        "SELECT * FROM TABLE(TUMBLE(TIMECOL => DESCRIPTOR(ts), SIZE => INTERVAL '2' SECOND, DATA => TABLE t))"
    )
    assert (named.args["time_col"], named.args["size_ms"]) == ("ts", 2000)
    sub = _tvf(
        "SELECT * FROM TABLE(TUMBLE((SELECT * FROM t WHERE x > 1), DESCRIPTOR(ts), INTERVAL '1' SECOND))"
    )
    assert isinstance(sub.this, exp.Subquery) and sub.this.find(exp.Where) is not None


def test_nested_tvf_inside_subquery() -> None:
    q = parse_query(
        "SELECT * FROM (SELECT window_start, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts),"
        " INTERVAL '1' SECOND)) GROUP BY window_start, window_end) WHERE n > 1"
    )
    assert len(list(q.find_all(WindowTVF))) == 1


def test_legacy_group_windows_are_anonymous() -> None:
    q = parse_query(
        "SELECT TUMBLE_START(ts, INTERVAL '1' MINUTE), COUNT(*) FROM t GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE)"
    )
    group = q.args["group"].expressions[0]
    assert isinstance(group, exp.Anonymous) and group.name == "TUMBLE"
    assert isinstance(q.selects[0], exp.Anonymous) and q.selects[0].name == "TUMBLE_START"
    assert isinstance(q.selects[1], exp.Count)


def test_aggregates_are_typed() -> None:
    q = parse_query(
        "SELECT COUNT(*), COUNT(DISTINCT x), SUM(x) FILTER (WHERE x > 1), AVG(x), MIN(x), MAX(x) FROM t"
    )
    kinds = [type(s).__name__ for s in q.selects]
    assert kinds == ["Count", "Count", "Filter", "Avg", "Min", "Max"]
    assert isinstance(q.selects[1].this, exp.Distinct)


def _err(text: str, cls: type[SqlError] = SqlError) -> SqlError:
    with pytest.raises(cls) as info:
        parse_script(text, source="p.sql")
    return info.value


def test_error_position_in_query_after_tvf() -> None:
    # The bad token sits after a (longer) window TVF on the same line: columns must not shift.
    text = "INSERT INTO o\nSELECT a FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND)) w WHERE a = = 1"
    err = _err(text)
    assert (err.line, err.column) == (2, 87)  # the second "="
    assert str(err).startswith("p.sql:2:87:")


def test_error_position_in_ddl_type() -> None:
    err = _err(
        "CREATE TABLE t (\n  a INT,\n  b ROW<x INT y STRING>\n) WITH ('connector' = 'datagen')"
    )
    assert (err.line, err.column) == (3, 15)


def test_error_position_in_computed_column() -> None:
    err = _err("CREATE TABLE t (a INT, b AS a +* 2) WITH ()")
    assert (err.line, err.column) == (1, 34)  # sqlglot stops at "2"


def test_metadata_refused_by_name() -> None:
    err = _err(
        "CREATE TABLE t (\n a INT,\n ts TIMESTAMP(3) METADATA FROM 'timestamp') WITH ()",
        UnsupportedSqlError,
    )
    assert "METADATA" in str(err) and (err.line, err.column) == (3, 18)


def test_match_recognize_follows_a_table_name() -> None:
    err = _err(
        "INSERT INTO o SELECT * FROM (SELECT * FROM t) MATCH_RECOGNIZE (PARTITION BY a)",
        UnsupportedSqlError,
    )
    assert "must follow a table or view name" in str(err) and err.column == 47
    tree = parse_query(
        "SELECT * FROM t MATCH_RECOGNIZE (PARTITION BY a ORDER BY ts MEASURES LAST(A.x) AS x "
        "PATTERN (A B) DEFINE A AS A.x > 1) AS m"
    )
    (table,) = list(tree.find_all(exp.Table))
    assert table.name == "t" and table.alias == "m"
    assert table.meta["match_recognize"].partition_by == ("a",)


def test_over_windows_refused_except_row_number() -> None:
    parse_query("SELECT ROW_NUMBER() OVER (PARTITION BY a ORDER BY b) FROM t")
    with pytest.raises(UnsupportedSqlError, match="ROW_NUMBER"):
        parse_query("SELECT SUM(a) OVER (PARTITION BY b) FROM t")


def test_bad_tvf_arguments() -> None:
    with pytest.raises(SqlError, match="missing its SIZE") as info:
        parse_query("SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts)))")
    assert info.value.column == 21
    with pytest.raises(SqlError, match="DESCRIPTOR"):
        parse_query("SELECT * FROM TABLE(TUMBLE(TABLE t, ts, INTERVAL '1' SECOND))")
    with pytest.raises(SqlError, match="integral multiple"):
        parse_query(
            "SELECT * FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '7' SECOND, INTERVAL '1' MINUTE))"
        )


def test_unknown_statement() -> None:
    err = _err("CREATE TABLE t (a INT) WITH ();\n  DROP TABLE t;", UnsupportedSqlError)
    assert (err.line, err.column) == (2, 3) and "DROP" in str(err)
    err = _err("FOO bar")
    assert "expected CREATE, INSERT, SET" in str(err)


def test_options_must_be_quoted() -> None:
    err = _err("CREATE TABLE t (a INT) WITH (connector = 'datagen')")
    assert "quoted option key" in str(err) and err.column == 30


def test_joins_are_left_in_the_tree() -> None:
    q = parse_query("SELECT * FROM a JOIN b ON a.k = b.k")
    assert q.find(exp.Join) is not None
