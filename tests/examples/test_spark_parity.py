"""The clickstream reference project gives the same tables on Spark as on DuckDB.

The same generated events are landed in two projects, each built by two runs (the second
incremental, after a catalogue price change, as ``conftest.py`` builds it): one with
``engine="duckdb"`` (the reference), one with ``engine="spark"``. Every model's output,
lake tables and marts, must be the same multiset of rows once types are normalized
(timestamps to UTC, numbers to 12 significant digits). The SQL passes that make this hold
are also checked on their own, without Spark.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from fluvial.batch import QualityHooks, RunResult, connect_warehouse, run
from fluvial.batch.engines.spark import to_spark_sql
from fluvial.batch.models import existing_tables, load_models
from fluvial.examples.clickstream import load_catalogue
from fluvial.generate.clickstream import KINDS, ClickstreamConfig, clickstream_batches
from fluvial.lake import open_lake
from fluvial.project import Project

from .conftest import FIRST_RUN, PRICE_CHANGES, SECOND_RUN, START_MS, Line, _deliver

#: a few thousand events: every model gets rows, and the build stays short
CONFIG = ClickstreamConfig(events=3_000, seed=23, users=120, days=10, start_ms=START_MS)
ENGINES = ("duckdb", "spark")


def need_spark() -> None:
    """Skip (fail under CI=true) when pyspark is not installed."""
    from conftest import need

    need(importlib.util.find_spec("pyspark") is not None, "pyspark is not installed")


@dataclass
class Build:
    """One engine's build of the reference project: its runs and their seconds."""

    project: Project
    runs: list[RunResult] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def generated_lines(config: ClickstreamConfig) -> list[Line]:
    """The generator's lines, in the order the collector receives them."""
    return [
        Line(
            batch.line(i),
            KINDS[batch.kinds[i]],
            int(batch.send_time_ms[i]),
            int(batch.event_time_ms[i]),
        )
        for batch in clickstream_batches(config)
        for i in range(len(batch))
    ]


def build(root: Path, engine: str, lines: list[Line]) -> Build:
    """Land *lines* in two deliveries and build after each, on *engine*."""
    project = Project.init(root, example="clickstream")
    done = Build(project)
    split = len(lines) * 3 // 5
    deliveries = ((lines[:split], None, FIRST_RUN), (lines[split:], PRICE_CHANGES, SECOND_RUN))
    for part, prices, at in deliveries:
        _deliver(project, part)
        load_catalogue(project, prices, exported_at=at)
        clock = time.perf_counter()
        done.runs.append(run(project, engine=engine, hooks=QualityHooks(project), now=at))
        done.seconds.append(time.perf_counter() - clock)
    return done


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory, java: str) -> Iterator[dict[str, Build]]:
    need_spark()
    from fluvial.batch.engines.spark import spark_session, stop_session

    folder = tmp_path_factory.mktemp("spark-parity")
    lines = generated_lines(CONFIG)
    spark_session()  # the JVM starts outside the timed build
    try:
        out = {engine: build(folder / engine, engine, lines) for engine in ENGINES}
        for engine, done in out.items():
            runs = ", ".join(f"{s:.1f} s" for s in done.seconds)
            print(f"\n{engine}: {len(lines)} lines, two runs: {runs}")
        yield out
    finally:
        stop_session()


def outputs(project: Project) -> dict[str, pa.Table]:
    """Every model's output table: lake tables and marts."""
    models = load_models(project, existing_tables(project))
    with open_lake(project) as lake:
        con = connect_warehouse(project, lake)
        try:
            return {
                name: (
                    lake.table(name).scan().to_arrow()
                    if model.in_lake
                    else con.sql(f"SELECT * FROM {name}").to_arrow_table()
                )
                for name, model in models.items()
            }
        finally:
            con.close()


def canonical(value: Any) -> Any:
    """An engine-neutral value: numbers to 12 significant digits (whole ones as ints),
    times in UTC, nested values likewise."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        number = float(f"{float(value):.12g}")
        return int(number) if number.is_integer() else number
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return tuple(sorted((k, canonical(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(canonical(v) for v in value)
    return value


def same_type(duckdb_type: pa.DataType, spark_type: pa.DataType) -> bool:
    """Whether Spark gave a column DuckDB's type: the same type, a timestamp of the same
    unit in UTC, or a BIGINT where DuckDB's HUGEINT (DECIMAL(38, 0)) sums a list."""
    if duckdb_type == spark_type:
        return True
    if pa.types.is_timestamp(duckdb_type) and pa.types.is_timestamp(spark_type):
        zones = {duckdb_type.tz, spark_type.tz}
        return duckdb_type.unit == spark_type.unit and zones <= {"UTC", "Etc/UTC", "+00:00"}
    return duckdb_type == pa.decimal128(38, 0) and spark_type == pa.int64()


def rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """The rows of *table*, canonical and sorted (a multiset)."""
    for i, column in enumerate(table.columns):
        if pa.types.is_timestamp(column.type):
            table = table.set_column(
                i, table.field(i).name, column.cast(pa.timestamp("us", tz="UTC"))
            )
    columns = [[canonical(v) for v in column.to_pylist()] for column in table.columns]
    return sorted(zip(*columns, strict=True), key=repr)


# -- the build on both engines -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.service
def test_every_model_builds_on_both_engines(builds: dict[str, Build]) -> None:
    for engine, done in builds.items():
        for result in done.runs:
            failed = {m.model: m.error for m in result.models if m.status == "error"}
            assert result.ok, f"{engine}: {failed}"
    statuses = {
        engine: [[(m.model, m.status) for m in r.models] for r in done.runs]
        for engine, done in builds.items()
    }
    assert statuses["spark"] == statuses["duckdb"]


@pytest.mark.slow
@pytest.mark.service
def test_spark_outputs_equal_duckdb_outputs(builds: dict[str, Build]) -> None:
    expected = outputs(builds["duckdb"].project)
    got = outputs(builds["spark"].project)
    assert sorted(got) == sorted(expected)
    differ: dict[str, list[str]] = {}
    for name, table in expected.items():
        assert table.num_rows > 0, f"{name} is empty: the comparison would prove nothing"
        other = got[name]
        assert other.column_names == table.column_names, name
        problems = [
            f"{f.name} is {other.schema.field(f.name).type}, not {f.type}"
            for f in table.schema
            if not same_type(f.type, other.schema.field(f.name).type)
        ]
        want, have = rows(table), rows(other)
        if have != want:
            extra = [r for r in have if r not in want][:2]
            missing = [r for r in want if r not in have][:2]
            problems.append(
                f"{len(have)} rows vs {len(want)}; spark only {extra}; duckdb only {missing}"
            )
        if problems:
            differ[name] = problems
    assert not differ, f"Spark differs from DuckDB: {differ}"


# -- the passes that make it so, without Spark -------------------------------------------

SCHEMAS = {
    "raw.events": {"sent_at": "timestamp", "received_at": "timestamp", "n": "bigint"},
    "refined.orders": {"items": "array<struct<q:bigint>>", "at": "timestamp", "x": "string"},
}
VIEWS = {"raw.events": "raw__events", "refined.orders": "refined__orders"}


def spark_sql(sql: str) -> str:
    return to_spark_sql(sql, VIEWS, SCHEMAS)


def test_epoch_of_a_timestamp_is_a_number() -> None:
    sql = spark_sql("SELECT epoch_ms(sent_at) - epoch_ms(received_at) AS skew FROM raw.events")
    assert "UNIX_MILLIS(events.sent_at) - UNIX_MILLIS(events.received_at)" in sql
    # of a number it is a timestamp, as sqlglot reads it
    assert "TIMESTAMP_MILLIS(events.n)" in spark_sql("SELECT epoch_ms(n) AS t FROM raw.events")
    assert "UNIX_MICROS(events.sent_at)" in spark_sql("SELECT epoch_us(sent_at) FROM raw.events")


def test_interval_constructors_and_infinity() -> None:
    sql = spark_sql("SELECT sent_at - to_milliseconds(n) AS t FROM raw.events")
    assert "events.n * INTERVAL '0.001' SECOND" in sql
    sql = spark_sql("SELECT sent_at < coalesce(NULL, 'infinity'::TIMESTAMPTZ) FROM raw.events")
    assert "'9999-12-31 23:59:59.999999'" in sql


def test_iso_calendar() -> None:
    sql = to_spark_sql("SELECT isoyear(d), week(d), isodow(d), dayname(d), monthname(d) FROM t")
    assert sql == (
        "SELECT CAST(DATE_PART('YEAROFWEEK', d) AS BIGINT), CAST(WEEKOFYEAR(d) AS BIGINT), "
        "CAST((WEEKDAY(d) + 1) AS BIGINT), DATE_FORMAT(d, 'EEEE'), DATE_FORMAT(d, 'MMMM') FROM t"
    )
    # DuckDB's date parts and ranks are BIGINTs
    sql = to_spark_sql("SELECT year(d), row_number() OVER (ORDER BY d) FROM t")
    assert sql == (
        "SELECT CAST(YEAR(d) AS BIGINT), CAST(ROW_NUMBER() OVER (ORDER BY d NULLS LAST) AS BIGINT)"
        " FROM t"
    )


def test_lists_and_json_structures() -> None:
    sql = spark_sql(
        "SELECT len(items) AS n, list_sum(list_transform(items, i -> i.q)) AS q FROM refined.orders"
    )
    assert "CAST(ARRAY_SIZE(orders.items) AS BIGINT) AS n" in sql
    assert "AGGREGATE(SLICE(" in sql and "TRY_ELEMENT_AT(" in sql
    sql = to_spark_sql(
        """SELECT from_json(j, '[{"id": "VARCHAR", "price": "DECIMAL(12,2)"}]') AS l FROM t"""
    )
    assert "'ARRAY<STRUCT<`id`: STRING, `price`: DECIMAL(12, 2)>>'" in sql


def test_subscripts_and_unnest_become_one_generator() -> None:
    sql = to_spark_sql("SELECT x, generate_subscripts(l, 1) AS i, unnest(l) AS v FROM t")
    assert sql == (
        "SELECT x, INLINE(TRANSFORM(l, (__v, __i) -> STRUCT(CAST(__i + 1 AS BIGINT) AS `i`, __v AS `v`)))"
        " FROM t"
    )
    sql = to_spark_sql("SELECT CAST(unnest(l) AS DATE) AS d FROM t")
    assert sql == "SELECT EXPLODE(TRANSFORM(l, __v -> CAST(__v AS DATE))) AS d FROM t"


def test_arg_min_skips_null_values_and_numbers_divide_as_doubles() -> None:
    sql = to_spark_sql("SELECT arg_min(v, k) AS a, avg(x) AS m, a / 1000.0 AS s FROM t")
    assert sql == (
        "SELECT MIN_BY(v, CASE WHEN NOT v IS NULL THEN k END) AS a, AVG(CAST(x AS DOUBLE)) AS m,"
        " CAST(a AS DOUBLE) / 1000.0 AS s FROM t"
    )


def test_union_branches_take_the_first_branchs_names() -> None:
    sql = to_spark_sql("SELECT a, b, NULL AS c FROM t UNION ALL SELECT x, y, x FROM u")
    assert sql == "SELECT a, b, NULL AS c FROM t UNION ALL SELECT x AS a, y AS b, x AS c FROM u"
