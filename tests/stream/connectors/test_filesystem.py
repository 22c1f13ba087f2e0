"""The filesystem connector and Flink's formats: round trips, parsing rules, resume."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from fluvial.errors import PipelineError, SqlError, UnsupportedSqlError
from fluvial.stream.connectors import ConnectorContext, Source, create_sink, create_source
from fluvial.stream.connectors.filesystem import list_files

from .conftest import table

UTC = dt.UTC
COLUMNS = """
  id BIGINT, name STRING, price DOUBLE, ok BOOLEAN, day DATE,
  ts TIMESTAMP(3), lts TIMESTAMP_LTZ(3){nested}
"""
NESTED = ", page ROW<url STRING, n INT, at TIMESTAMP(3)>, tags ARRAY<STRING>"


def ddl(path: Path, fmt: str, extra: str = "", nested: bool = True) -> str:
    cols = COLUMNS.format(nested=NESTED if nested else "")
    return (
        f"CREATE TABLE f ({cols}) WITH ('connector' = 'filesystem', 'path' = '{path}', "
        f"'format' = '{fmt}'{extra})"
    )


def sample(nested: bool = True) -> pa.Table:
    schema = table(ddl(Path("/x"), "json", nested=nested)).physical_schema()
    ts = [dt.datetime(2024, 1, 31, 10, 0, 0, 123000), None, dt.datetime(1999, 12, 31, 23, 59, 59)]
    data = {
        "id": [1, 2, None],
        "name": ['a, "quoted"', None, ""],
        "price": [1.5, None, -2.0],
        "ok": [True, False, None],
        "day": [dt.date(2024, 1, 31), None, dt.date(1970, 1, 1)],
        "ts": ts,
        "lts": [t.replace(tzinfo=UTC) if t else None for t in ts],
    }
    if nested:
        data["page"] = [
            {"url": "/p/1", "n": 3, "at": ts[0]},
            None,
            {"url": None, "n": None, "at": None},
        ]
        data["tags"] = [["x", "y"], None, []]
    return pa.table(data, schema=schema)


def drain(source: Source, max_rows: int = 65_536) -> pa.Table:
    tables = []
    while not source.finished():
        tables.extend(b.table for b in source.poll(max_rows=max_rows))
    return pa.concat_tables(tables) if tables else source.schema.empty_table()


def round_trip(tmp_path: Path, text: str, expected: pa.Table) -> pa.Table:
    sink = create_sink(table(text), ConnectorContext())
    sink.open()
    sink.write(expected.slice(0, 2))
    sink.write(expected.slice(2))
    sink.commit(1)
    sink.close()
    source = create_source(table(text), ConnectorContext())
    source.open()
    got = drain(source)
    source.close()
    return got


@pytest.mark.parametrize(
    ("fmt", "extra", "nested"),
    [
        ("json", "", True),
        ("json", ", 'json.timestamp-format.standard' = 'ISO-8601'", True),
        ("parquet", "", True),
        ("csv", "", False),
        ("csv", ", 'csv.field-delimiter' = ';', 'csv.null-literal' = 'N/A'", False),
    ],
)
def test_round_trip(tmp_path: Path, fmt: str, extra: str, nested: bool) -> None:
    out = tmp_path / "out"
    expected = sample(nested)
    got = round_trip(tmp_path, ddl(out, fmt, extra, nested), expected)
    if fmt == "csv" and "null-literal" not in extra:
        # without a null literal, CSV cannot tell a null string from an empty one (Flink too)
        expected = expected.set_column(1, "name", pa.array(['a, "quoted"', "", ""]))
    assert got.equals(expected), (got.to_pylist(), expected.to_pylist())
    assert [p.name for p in out.iterdir()] == [f"part-1-0.{fmt}"]


def test_json_timestamp_standards_in_the_file(tmp_path: Path) -> None:
    for standard, ts, lts in [
        ("SQL", "2024-01-31 10:00:00.123", "2024-01-31 10:00:00.123Z"),
        ("ISO-8601", "2024-01-31T10:00:00.123", "2024-01-31T10:00:00.123Z"),
    ]:
        out = tmp_path / standard
        text = ddl(out, "json", f", 'json.timestamp-format.standard' = '{standard}'", False)
        round_trip(tmp_path, text, sample(False))
        first = (out / "part-1-0.json").read_text().splitlines()[0]
        assert f'"ts":"{ts}"' in first and f'"lts":"{lts}"' in first


def read_json(tmp_path: Path, lines: list[str], extra: str = "") -> pa.Table:
    path = tmp_path / "in.json"
    path.write_text("\n".join(lines) + "\n")
    source = create_source(table(ddl(path, "json", extra, nested=True)), ConnectorContext())
    source.open()
    return drain(source)


def test_json_fields_by_name_missing_is_null(tmp_path: Path) -> None:
    got = read_json(
        tmp_path,
        [
            '{"tags": ["t"], "id": 7, "extra": {"x": 1}, "ts": "2024-02-29 23:59:59.5",'
            ' "lts": "2024-02-29 23:59:59Z", "page": {"at": "2024-01-01 00:00:00", "url": "/u"}}',
            '{"name": "only"}',
        ],
    )
    row, other = got.to_pylist()
    assert row["id"] == 7 and row["tags"] == ["t"] and row["name"] is None
    assert row["ts"] == dt.datetime(2024, 2, 29, 23, 59, 59, 500000)
    assert row["lts"] == dt.datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)
    assert row["page"] == {"url": "/u", "n": None, "at": dt.datetime(2024, 1, 1)}
    assert other == {**dict.fromkeys(got.column_names), "name": "only"}


def test_json_bad_lines(tmp_path: Path) -> None:
    lines = [
        '{"id": 1, "name": "a"}',
        "{not json",
        '{"id": "x", "name": "b"}',
        '{"id": 3, "ts": "2024-01-01T00:00:00"}',
    ]
    with pytest.raises(PipelineError, match=r"json\.ignore-parse-errors"):
        read_json(tmp_path, lines)
    got = read_json(tmp_path, lines, ", 'json.ignore-parse-errors' = 'true'")
    assert got.select(["id", "name", "ts"]).to_pylist() == [
        {"id": 1, "name": "a", "ts": None},
        {"id": None, "name": "b", "ts": None},  # bad fields are null
        {"id": 3, "name": None, "ts": None},  # an ISO timestamp under the SQL standard
    ]


def test_json_timestamp_in_the_wrong_standard_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(
        PipelineError,
        match=r"expected a timestamp like yyyy-MM-dd HH:mm:ss.SSS.*'2024-01-01T00:00:00'",
    ):
        read_json(tmp_path, ['{"ts": "2024-01-01T00:00:00"}'])
    got = read_json(
        tmp_path,
        ['{"ts": "2024-01-01T00:00:00"}'],
        ", 'json.timestamp-format.standard' = 'ISO-8601'",
    )
    assert got["ts"].to_pylist() == [dt.datetime(2024, 1, 1)]


def test_json_fail_on_missing_field(tmp_path: Path) -> None:
    full = '{"id":1,"name":null,"price":1,"ok":true,"day":null,"ts":null,"lts":null,"page":null,"tags":null}'
    assert read_json(tmp_path, [full], ", 'json.fail-on-missing-field' = 'true'").num_rows == 1
    with pytest.raises(PipelineError, match="line 2 has no field 'price'"):
        read_json(
            tmp_path, [full, '{"id": 2, "name": "x"}'], ", 'json.fail-on-missing-field' = 'true'"
        )
    with pytest.raises(SqlError, match="cannot both be true"):
        read_json(
            tmp_path,
            [full],
            ", 'json.fail-on-missing-field' = 'true', 'json.ignore-parse-errors' = 'true'",
        )


def read_csv(tmp_path: Path, text: str, extra: str = "") -> pa.Table:
    path = tmp_path / "in.csv"
    path.write_text(text)
    source = create_source(table(ddl(path, "csv", extra, nested=False)), ConnectorContext())
    source.open()
    return drain(source)


def test_csv_by_position_with_options(tmp_path: Path) -> None:
    got = read_csv(
        tmp_path,
        "1|'a|b'|2.5|true|2024-01-31|2024-01-31 10:00:00.123|2024-01-31 10:00:00Z\n2|-|||||\n",
        ", 'csv.field-delimiter' = '|', 'csv.quote-character' = '''', 'csv.null-literal' = '-'",
    )
    assert got.to_pylist() == [
        {
            "id": 1,
            "name": "a|b",
            "price": 2.5,
            "ok": True,
            "day": dt.date(2024, 1, 31),
            "ts": dt.datetime(2024, 1, 31, 10, 0, 0, 123000),
            "lts": dt.datetime(2024, 1, 31, 10, tzinfo=UTC),
        },
        dict.fromkeys(got.column_names) | {"id": 2},
    ]


def test_csv_bad_rows(tmp_path: Path) -> None:
    text = "1,a,1.0,true,,,\nx,b,2.0,false,,,\n3,c\n4,d,4.0,maybe,,,\n"
    with pytest.raises(PipelineError, match=r"csv\.ignore-parse-errors"):
        read_csv(tmp_path, text)
    got = read_csv(tmp_path, text, ", 'csv.ignore-parse-errors' = 'true'")
    assert got.select(["id", "name", "ok"]).to_pylist() == [
        {"id": 1, "name": "a", "ok": True},
        {"id": None, "name": "b", "ok": False},
        {"id": 4, "name": "d", "ok": None},
    ]


def test_csv_refuses_nested_columns(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedSqlError, match="format 'csv' does not support ROW"):
        create_source(table(ddl(tmp_path, "csv")), ConnectorContext())


def test_directory_order_hidden_files_and_resume(tmp_path: Path) -> None:
    root = tmp_path / "in"
    (root / "b").mkdir(parents=True)
    (root / "_tmp").mkdir()
    files = {"b/2.json": range(0, 5), "a.json": range(5, 12), "b/1.json": range(12, 13)}
    for name, ids in files.items():
        (root / name).write_text("".join(f'{{"id": {i}}}\n' for i in ids))
    for hidden in (".x.json", "_SUCCESS", "_tmp/c.json", "b/.part-1.inprogress"):
        (root / hidden).write_text('{"id": 99}\n')
    assert [p.relative_to(root).as_posix() for p in list_files(root)] == [
        "a.json",
        "b/1.json",
        "b/2.json",
    ]
    text = ddl(root, "json", nested=False)
    source = create_source(table(text), ConnectorContext())
    source.open()
    assert source.splits() == ["a.json", "b/1.json", "b/2.json"]
    first = source.poll(max_rows=3)
    first += source.poll(max_rows=3)
    assert [b.position for b in first] == [3, 6]
    saved = source.positions()
    assert saved == {"a.json": 6, "b/1.json": 0, "b/2.json": 0}
    resumed = create_source(table(text), ConnectorContext())
    resumed.open(saved)
    rest = drain(resumed, max_rows=2)
    ids = [i for b in first for i in b.table["id"].to_pylist()] + rest["id"].to_pylist()
    assert ids == [*range(5, 12), 12, *range(0, 5)]
    assert resumed.finished() and resumed.poll() == []


def test_file_sink_is_exactly_once_per_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "out"
    text = ddl(out, "parquet", ", 'sink.rolling-policy.file-size' = '1'", nested=False)
    sink = create_sink(table(text), ConnectorContext())
    sink.open()
    sink.write(sample(False).slice(0, 1))
    sink.write(sample(False).slice(1, 1))
    hidden = sorted(p.name for p in out.iterdir())
    assert len(hidden) == 2 and all(
        n.startswith(".part-") and n.endswith(".inprogress") for n in hidden
    )
    sink.commit(5)
    sink.write(sample(False).slice(2, 1))
    sink.commit(5)  # a replay of checkpoint 5: skipped, its staged file removed
    sink.write(sample(False).slice(2, 1))
    sink.commit(6)
    sink.write(sample(False))
    sink.close()  # uncommitted rows are discarded
    assert sorted(p.name for p in out.iterdir()) == [
        "part-5-0.parquet",
        "part-5-1.parquet",
        "part-6-0.parquet",
    ]
    source = create_source(table(text), ConnectorContext())
    source.open()
    assert drain(source).equals(sample(False))


def test_decimal_in_parquet(tmp_path: Path) -> None:
    text = f"CREATE TABLE d (x DECIMAL(10, 2)) WITH ('connector' = 'filesystem', 'path' = '{tmp_path}', 'format' = 'parquet')"
    data = pa.table({"x": pa.array([Decimal("1.25"), None], pa.decimal128(10, 2))})
    assert round_trip(tmp_path, text, data).equals(data)


def test_format_and_path_errors(tmp_path: Path) -> None:
    with pytest.raises(SqlError, match="did you mean 'json'"):
        create_source(table(ddl(tmp_path, "jsn")), ConnectorContext())
    with pytest.raises(SqlError, match=r"'csv\.field-delimiter' does not apply to format 'json'"):
        create_source(
            table(ddl(tmp_path, "json", ", 'csv.field-delimiter' = ';'")), ConnectorContext()
        )
    source = create_source(table(ddl(tmp_path / "nope", "json")), ConnectorContext())
    with pytest.raises(SqlError, match="found nothing"):
        source.open()
