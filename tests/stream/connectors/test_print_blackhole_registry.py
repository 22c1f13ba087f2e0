"""The print and blackhole sinks, and the registry's checks on connectors and options."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from fluvial.errors import SqlError, UnsupportedSqlError
from fluvial.stream.connectors import ConnectorContext, create_sink, create_source
from fluvial.stream.connectors.blackhole import BlackholeSink

from .conftest import table

UTC = dt.UTC


def print_table(extra: str = "") -> str:
    return (
        "CREATE TABLE p (n INT, x DOUBLE, s STRING, ok BOOLEAN, ts TIMESTAMP(3), "
        "lts TIMESTAMP_LTZ(3), r ROW<a INT, b STRING>, l ARRAY<INT>) "
        f"WITH ('connector' = 'print'{extra})"
    )


def print_rows() -> pa.Table:
    schema = table(print_table()).physical_schema()
    return pa.table(
        {
            "n": [1, None],
            "x": [2.0, 0.25],
            "s": ["a b", None],
            "ok": [True, None],
            "ts": [dt.datetime(2024, 1, 31, 10, 0), dt.datetime(2024, 1, 31, 10, 0, 5, 120000)],
            "lts": [dt.datetime(2024, 1, 31, 10, 0, 1, tzinfo=UTC), None],
            "r": [{"a": 1, "b": "z"}, None],
            "l": [[1, 2], []],
        },
        schema=schema,
    )


def test_print_sink_renders_rows_like_flink(capsys: pytest.CaptureFixture[str]) -> None:
    sink = create_sink(table(print_table()), ConnectorContext())
    sink.open()
    sink.write(print_rows())
    sink.commit(1)
    assert capsys.readouterr().out.splitlines() == [
        "+I[1, 2.0, a b, true, 2024-01-31T10:00, 2024-01-31T10:00:01Z, +I[1, z], [1, 2]]",
        "+I[null, 0.25, null, null, 2024-01-31T10:00:05.120, null, null, []]",
    ]


def test_print_identifier_and_standard_error(capsys: pytest.CaptureFixture[str]) -> None:
    sink = create_sink(
        table(print_table(", 'print-identifier' = 'out', 'standard-error' = 'true'")),
        ConnectorContext(),
    )
    sink.write(print_rows().slice(0, 1))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("out> +I[1, 2.0, a b,")


def test_blackhole_counts() -> None:
    sink = create_sink(
        table("CREATE TABLE b (n INT) WITH ('connector' = 'blackhole')"), ConnectorContext()
    )
    assert isinstance(sink, BlackholeSink)
    sink.write(pa.table({"n": pa.array([1, 2, 3], pa.int32())}))
    sink.commit(1)
    sink.write(pa.table({"n": pa.array([4], pa.int32())}))
    assert (sink.rows, sink.committed) == (4, 3)


@pytest.mark.parametrize(
    ("with_", "error", "match"),
    [
        ("'connector' = 'filesytem', 'path' = 'x'", SqlError, "did you mean 'filesystem'"),
        (
            "'connector' = 'kafka', 'topic' = 'x'",
            UnsupportedSqlError,
            "use 'connector' = 'fluvial'",
        ),
        ("'connector' = 'print'", UnsupportedSqlError, "can only be a sink"),
        ("'topic' = 'x'", SqlError, "no 'connector' option; expected one of filesystem, fluvial"),
        ("'connector' = 'fluvial'", SqlError, "needs the option 'topic'"),
        ("'connector' = 'fluvial', 'topc' = 'x'", SqlError, "needs the option 'topic'"),
        (
            "'connector' = 'fluvial', 'topic' = 'x', 'scan.startup.modes' = 'x'",
            SqlError,
            "did you mean 'scan.startup.mode'",
        ),
    ],
)
def test_registry_errors(with_: str, error: type[Exception], match: str) -> None:
    ddl = f"\n\n  CREATE TABLE t (a INT) WITH ({with_})"
    with pytest.raises(error, match=match) as info:
        create_source(table(ddl), ConnectorContext())
    assert type(info.value) is error
    assert str(info.value).startswith("3:3: table 't': ")


def test_unknown_option_lists_the_known_ones() -> None:
    ddl = "CREATE TABLE t (a INT) WITH ('connector' = 'print', 'print-identifer' = 'x')"
    with pytest.raises(SqlError, match="did you mean 'print-identifier'") as info:
        create_sink(table(ddl), ConnectorContext())
    assert "expected one of" in str(info.value) and "standard-error" in str(info.value)
