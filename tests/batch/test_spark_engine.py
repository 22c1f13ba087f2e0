"""The Spark engine: model SQL in DuckDB's dialect gives DuckDB's results on Spark.

Every query runs on DuckDB (the reference, reading the same Parquet files and Arrow
tables through its own views) and on Spark through :func:`run_select`; the results must
be equal once types and row order are normalized.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fluvial.batch.engines.base import IcebergInput
from fluvial.batch.engines.spark import (
    SparkEngine,
    lake_files,
    run_select,
    to_spark_sql,
    view_name,
)
from fluvial.errors import SqlError, UsageError
from fluvial.lake import append, open_lake
from fluvial.project import Project


def need_spark() -> None:
    """Skip (fail under CI=true) when pyspark is not installed."""
    from conftest import need

    need(importlib.util.find_spec("pyspark") is not None, "pyspark is not installed")


# -- data --------------------------------------------------------------------------------

COUNTRIES = np.array(["FR", "DE", "US", "BR", None], dtype=object)
PAGES = np.array(["/home", "/cart", "/product/shoes", "/product/hats", "/Search?q=x"])
CATEGORIES = np.array(["shoes", "hats", "bags"])


def clicks(n: int = 4000, seed: int = 7) -> pa.Table:
    """Click events over three days, with nulls, ties and fractional amounts."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-03-30T22:00:00", "us")
    at = start + (rng.integers(0, 3 * 86_400_000, n) * 1000).astype("timedelta64[us]")
    amount = np.round(rng.gamma(2.0, 40.0, n), 2)
    amount_mask = rng.random(n) < 0.2
    return pa.table(
        {
            "event_id": pa.array(np.arange(n, dtype=np.int64)),
            "user_id": pa.array(rng.integers(1, 60, n).astype(np.int32)),
            "event_time": pa.array(at, pa.timestamp("us", tz="UTC")),
            "page": pa.array(PAGES[rng.integers(0, len(PAGES), n)]),
            "category": pa.array(CATEGORIES[rng.integers(0, len(CATEGORIES), n)]),
            "amount": pa.array(amount, mask=amount_mask),
        }
    )


def users() -> pa.Table:
    ids = np.arange(1, 60, dtype=np.int32)
    return pa.table(
        {
            "user_id": pa.array(ids),
            "country": pa.array(COUNTRIES[ids % len(COUNTRIES)]),
            "signup": pa.array(
                np.datetime64("2023-01-01", "D") + ids.astype("timedelta64[D]") * 5, pa.date32()
            ),
        }
    )


# -- model-like queries, in DuckDB's dialect ---------------------------------------------

QUERIES = {
    "join_group": """
        SELECT u.country, date_trunc('day', c.event_time) AS day,
               count(*) AS clicks, count(DISTINCT c.user_id) AS users,
               sum(c.amount) AS revenue, avg(c.amount) AS avg_amount
        FROM refined.clicks c JOIN refined.users u ON c.user_id = u.user_id
        GROUP BY u.country, date_trunc('day', c.event_time)
    """,
    "left_join_filter": """
        SELECT c.event_id, u.country, c.amount
        FROM refined.clicks AS c LEFT JOIN refined.users AS u
          ON c.user_id = u.user_id AND u.country <> 'US'
        WHERE c.amount IS NULL OR c.amount > 150
    """,
    "windows": """
        SELECT user_id, event_id, event_time,
               row_number() OVER (PARTITION BY user_id ORDER BY event_time, event_id) AS n,
               lag(page) OVER (PARTITION BY user_id ORDER BY event_time, event_id) AS prev_page,
               sum(amount) OVER (PARTITION BY user_id ORDER BY event_time, event_id
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running,
               rank() OVER (PARTITION BY category ORDER BY amount DESC) AS amount_rank
        FROM refined.clicks
    """,
    "top_per_user": """
        SELECT user_id, event_id, amount FROM (
            SELECT user_id, event_id, amount,
                   row_number() OVER (PARTITION BY user_id ORDER BY amount DESC, event_id) AS r
            FROM refined.clicks WHERE amount IS NOT NULL
        ) ranked WHERE r <= 3
    """,
    "rollup": """
        SELECT u.country, c.category, count(*) AS clicks, sum(c.amount) AS revenue,
               grouping(u.country) AS g_country, grouping(c.category) AS g_category
        FROM refined.clicks c JOIN refined.users u USING (user_id)
        GROUP BY ROLLUP (u.country, c.category)
    """,
    "case_strings": """
        SELECT event_id,
               CASE WHEN amount >= 100 THEN 'big' WHEN amount > 0 THEN 'small'
                    ELSE 'none' END AS size,
               upper(substr(page, 2, 4)) AS head, lower(page) AS low, length(page) AS len,
               replace(page, '/', '_') AS flat, concat(category, '-', page) AS label,
               regexp_replace(page, '[?].*', '') AS path, split_part(page, '/', 3) AS part,
               trim('  ' || category || '  ') AS trimmed, page LIKE '/product%' AS is_product
        FROM refined.clicks
    """,
    "dates_timestamps": """
        SELECT event_id, CAST(event_time AS DATE) AS d,
               date_trunc('hour', event_time) AS hour, extract(hour FROM event_time) AS h,
               strftime(event_time, '%Y-%m-%d %H:%M') AS minute,
               event_time + INTERVAL 30 MINUTE AS plus_30m,
               date_diff('day', DATE '2024-03-01', CAST(event_time AS DATE)) AS days_since,
               date_diff('second', TIMESTAMPTZ '2024-03-31 00:00:00+00', event_time) AS secs,
               date_diff('hour', TIMESTAMPTZ '2024-03-31 00:30:00+00', event_time) AS hours,
               date_diff('day', TIMESTAMPTZ '2024-03-30 23:00:00+00', event_time) AS days,
               date_diff('month', DATE '2024-01-15', CAST(event_time AS DATE)) AS months,
               event_time >= TIMESTAMPTZ '2024-03-31 12:00:00+00' AS after_noon
        FROM refined.clicks
    """,
    "count_distinct_having": """
        SELECT category, date_trunc('day', event_time) AS day,
               count(DISTINCT user_id) AS users, count(DISTINCT page) AS pages,
               min(event_time) AS first_at, max(event_time) AS last_at
        FROM refined.clicks
        GROUP BY category, date_trunc('day', event_time)
        HAVING count(DISTINCT user_id) > 10
    """,
    "cte_dates": """
        WITH firsts AS (
            SELECT user_id, min(event_time) AS first_at FROM refined.clicks GROUP BY user_id
        )
        SELECT f.user_id, u.signup, date_diff('day', u.signup, CAST(f.first_at AS DATE)) AS lag
        FROM firsts f JOIN refined.users u ON f.user_id = u.user_id
    """,
}


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark(java: str) -> Iterator[Any]:
    """One SparkSession for the module (skipped without pyspark or Java, failed under CI)."""
    need_spark()
    from fluvial.batch.engines.spark import spark_session, stop_session

    session = spark_session("local[2]")
    yield session
    stop_session()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The clicks as two Parquet files, the users as an Arrow table."""
    folder = tmp_path_factory.mktemp("spark-data")
    table = clicks()
    half = table.num_rows // 2
    files = [str(folder / "a.parquet"), str(folder / "b.parquet")]
    pq.write_table(table.slice(0, half), files[0])
    pq.write_table(table.slice(half), files[1])
    return {"refined.clicks": files, "refined.users": users()}


def duckdb_reference(sql: str, data: dict[str, Any]) -> pa.Table:
    """*sql* on DuckDB, with the inputs as views in their own schemas."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, value in data.items():
        schema, table = name.split(".")
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        if isinstance(value, pa.Table):
            con.register(f"arrow_{table}", value)
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM arrow_{table}")
        else:
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({value!r})")
    return con.sql(sql).to_arrow_table()


def normalized(table: pa.Table) -> list[tuple[Any, ...]]:
    """Rows with engine-neutral types (int64, rounded float64, UTC µs timestamps), sorted."""
    columns = []
    for column in table.itercolumns():
        t = column.type
        if pa.types.is_integer(t) or pa.types.is_boolean(t):
            column = column.cast(pa.int64())
        elif pa.types.is_floating(t) or pa.types.is_decimal(t):
            # sums in another order differ in the last bits
            values = column.cast(pa.float64()).to_pylist()
            columns.append([None if v is None else round(v, 6) for v in values])
            continue
        elif pa.types.is_timestamp(t):
            column = column.cast(pa.timestamp("us", tz="UTC"))
        elif pa.types.is_large_string(t):
            column = column.cast(pa.string())
        columns.append(column.to_pylist())
    rows = list(zip(*columns, strict=True))
    return sorted(rows, key=lambda row: tuple((v is None, str(v)) for v in row))


# -- tests without Spark -----------------------------------------------------------------


def test_inputs_are_rewritten_to_views_and_keep_their_alias() -> None:
    sql = to_spark_sql(
        "SELECT clicks.page, u.country FROM refined.clicks JOIN refined.users u USING (user_id)",
        {name: view_name(name) for name in ("refined.clicks", "refined.users")},
    )
    assert sql == (
        "SELECT clicks.page, u.country FROM refined__clicks AS clicks "
        "JOIN refined__users AS u USING (user_id)"
    )


def test_a_cte_shadows_an_unqualified_input() -> None:
    sql = to_spark_sql("WITH t AS (SELECT 1 AS x) SELECT x FROM t", {"t": "t_view"})
    assert "t_view" not in sql


def test_date_diff_counts_boundaries_as_duckdb_does() -> None:
    sql = to_spark_sql("SELECT date_diff('hour', a, b) AS h FROM t")
    assert sql == "SELECT DATEDIFF(HOUR, DATE_TRUNC('HOUR', a), DATE_TRUNC('HOUR', b)) AS h FROM t"


def test_bad_sql_says_where() -> None:
    with pytest.raises(SqlError) as info:
        to_spark_sql("SELECT a,\n  FROM WHERE")
    assert info.value.line is not None
    with pytest.raises(SqlError, match="one SELECT"):
        to_spark_sql("SELECT 1; SELECT 2")


def test_tables_with_delete_files_are_refused() -> None:
    task = SimpleNamespace(file=SimpleNamespace(file_path="file:///x.parquet"), delete_files={1})
    table = SimpleNamespace(
        name=lambda: ("refined", "orders"),
        scan=lambda snapshot_id=None: SimpleNamespace(plan_files=lambda: [task]),
    )
    with pytest.raises(UsageError, match=r"refined\.orders.*delete file"):
        lake_files(table)  # type: ignore[arg-type]


# -- Spark against DuckDB ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.service
def test_model_queries_equal_duckdb(spark: Any, data: dict[str, Any]) -> None:
    failures = []
    for name, sql in QUERIES.items():
        expected = duckdb_reference(sql, data)
        got = run_select(sql, data, session=spark)
        assert got.column_names == expected.column_names, name
        assert expected.num_rows > 0, name
        if normalized(got) != normalized(expected):
            failures.append(name)
    assert not failures, f"Spark differs from DuckDB on: {failures}"


@pytest.mark.slow
@pytest.mark.service
def test_spark_errors_are_sql_errors(spark: Any, data: dict[str, Any]) -> None:
    with pytest.raises(SqlError, match="nope"):
        run_select("SELECT nope FROM refined.users", data, session=spark)


@pytest.mark.slow
@pytest.mark.service
def test_lake_tables_are_read_as_their_data_files(spark: Any, project: Project) -> None:
    table = clicks(1500, seed=3)
    with open_lake(project) as lake:
        lake.create_table("refined.clicks", table.schema, time_column="event_time")
        append(lake.table("refined.clicks"), table.slice(0, 700))
        append(lake.table("refined.clicks"), table.slice(700))
        iceberg = lake.table("refined.clicks")
        assert len(lake_files(iceberg)) > 2  # partitioned by day, two commits
        lake.create_table("refined.empty", pa.schema([("user_id", pa.int32())]))
        engine = SparkEngine(project, lake, master="local[2]")
        sql = QUERIES["count_distinct_having"]
        inputs = {"refined.clicks": IcebergInput(iceberg.metadata_location)}
        got = engine.run_select(sql, inputs)
        assert normalized(got) == normalized(duckdb_reference(sql, {"refined.clicks": table}))
        # the first snapshot only, by snapshot id
        first = iceberg.history()[0].snapshot_id
        pinned = {"refined.clicks": IcebergInput(iceberg.metadata_location, first)}
        got = engine.run_select("SELECT count(*) AS n FROM refined.clicks", pinned)
        assert got.column("n").to_pylist() == [700]
        empty = {"refined.empty": lake.table("refined.empty").metadata_location}
        got = engine.run_select("SELECT count(*) AS n FROM refined.empty", empty)
        assert got.column("n").to_pylist() == [0]
