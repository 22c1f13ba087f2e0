"""MapReduce jobs on every executor give what independent DuckDB SQL gives.

Word count and sessionization (a new session after 30 minutes without a click) run on
the inline, local (spawned processes) and Spark executors, from Parquet, CSV and NDJSON
files and from a lake table; DuckDB computes the expected rows from the same files.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from fluvial.batch.mapreduce import MapReduceJob, Split, hash_partitioner, splits
from fluvial.errors import BatchError, SchemaError, UsageError
from fluvial.lake import open_lake
from fluvial.project import Project

GAP_US = 30 * 60 * 1_000_000  # 30 minutes of inactivity ends a session

# -- the jobs' functions (module level: spawned workers import them by name) -------------


def words(batch: pa.RecordBatch) -> tuple[pa.Array, pa.Array]:
    """One (word, 1) per word of each line, lower-cased, split on non-word characters."""
    lines = pc.utf8_lower(batch.column("line"))
    found = pc.list_flatten(pc.split_pattern_regex(lines, r"\W+"))
    found = found.filter(pc.not_equal(found, ""))
    return found, pa.array(np.ones(len(found), dtype=np.int64))


def add(key: Any, values: pa.Array) -> int:
    """The reduce of word count: the sum of the key's counts."""
    return int(pc.sum(values).as_py())


def clicks_by_user(batch: pa.RecordBatch) -> pa.Table:
    """(user, event time) for each click."""
    return pa.table({"key": batch.column("user_id"), "event_time": batch.column("event_time")})


def sessions(key: Any, values: pa.Array) -> pa.Table:
    """One user's clicks cut into sessions where 30 minutes pass without a click."""
    times = np.sort(values.cast(pa.int64()).to_numpy())
    new = np.concatenate(([True], np.diff(times) > GAP_US))
    starts = np.flatnonzero(new)
    stops = np.append(starts[1:], len(times))
    return pa.table(
        {
            "session_no": pa.array(np.arange(1, len(starts) + 1, dtype=np.int64)),
            "session_start": pa.array(times[starts], pa.timestamp("us", tz="UTC")),
            "session_end": pa.array(times[stops - 1], pa.timestamp("us", tz="UTC")),
            "events": pa.array((stops - starts).astype(np.int64)),
        }
    )


def everything_to_zero(keys: pa.Array, n: int) -> np.ndarray:
    return np.zeros(len(keys), dtype=np.int64)


def out_of_range(keys: pa.Array, n: int) -> np.ndarray:
    return np.full(len(keys), n, dtype=np.int64)


def no_key(batch: pa.RecordBatch) -> pa.Table:
    return pa.table({"word": batch.column("line")})


# -- data --------------------------------------------------------------------------------

VOCABULARY = np.array(
    ["river", "Delta", "flow", "stream", "lake", "rain", "café", "x", "data", "batch", "it's"]
)


def text(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 9, n)
    picked = VOCABULARY[rng.integers(0, len(VOCABULARY), lengths.sum())]
    seps = np.array([" ", ", ", "; ", " -- ", "! "])[rng.integers(0, 5, lengths.sum())]
    tokens = np.char.add(picked.astype(str), seps.astype(str))
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    lines = ["".join(tokens[a:b]) for a, b in itertools.pairwise(bounds)]
    return pa.table({"line": pa.array(lines)})


def click_events(n: int, seed: int) -> pa.Table:
    """Clicks of 40 users over a day: bursts with gaps around the 30 minute mark."""
    rng = np.random.default_rng(seed)
    gaps = rng.choice([5, 60, 600, 1700, 1800, 1801, 2400, 7200], n) * 1_000_000
    users = rng.integers(1, 41, n)
    times = np.zeros(n, dtype=np.int64)
    for user in np.unique(users):  # cumulative gaps per user (test data, not a hot path)
        mask = users == user
        times[mask] = 1_711_929_600_000_000 + np.cumsum(gaps[mask])
    order = rng.permutation(n)  # files hold clicks out of order
    return pa.table(
        {
            "user_id": pa.array(users[order].astype(np.int64)),
            "event_time": pa.array(times[order], pa.timestamp("us", tz="UTC")),
            "page": pa.array(np.array(["/a", "/b", "/c"])[rng.integers(0, 3, n)]),
        }
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("mapreduce")
    (folder / "text").mkdir()
    pq.write_table(text(3000, 1), folder / "text" / "a.parquet", row_group_size=700)
    pcsv.write_csv(text(2000, 2), folder / "text" / "b.csv")
    lines = text(1000, 3).column("line").to_pylist()
    ndjson = "\n".join(json.dumps({"line": line}) for line in lines)
    (folder / "text" / "c.ndjson").write_text(ndjson + "\n", encoding="utf-8")
    (folder / "clicks").mkdir()
    clicks = click_events(6000, 4)
    pq.write_table(clicks.slice(0, 3500), folder / "clicks" / "a.parquet", row_group_size=1000)
    pq.write_table(clicks.slice(3500), folder / "clicks" / "b.parquet")
    return {"text": folder / "text", "clicks": folder / "clicks", "click_table": clicks}


# -- DuckDB references -------------------------------------------------------------------


def word_count_reference(folder: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    sql = f"""
        WITH lines AS (
            SELECT line FROM read_parquet('{folder}/*.parquet')
            UNION ALL SELECT line FROM read_csv('{folder}/*.csv', header = true)
            UNION ALL SELECT line FROM read_json('{folder}/*.ndjson', format = 'newline_delimited')
        ), split AS (
            SELECT unnest(regexp_split_to_array(lower(line), '\\W+')) AS word FROM lines
        )
        SELECT word, count(*) FROM split WHERE word <> '' GROUP BY word ORDER BY word
    """
    return con.sql(sql).fetchall()


def sessions_reference(clicks: pa.Table) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    con.register("clicks", clicks)
    sql = """
        WITH flagged AS (
            SELECT user_id, event_time,
                   CASE WHEN lag(event_time) OVER w IS NULL
                          OR event_time - lag(event_time) OVER w > INTERVAL 30 MINUTE
                        THEN 1 ELSE 0 END AS starts
            FROM clicks WINDOW w AS (PARTITION BY user_id ORDER BY event_time)
        ), numbered AS (
            SELECT *, sum(starts) OVER (PARTITION BY user_id ORDER BY event_time
                                        ROWS UNBOUNDED PRECEDING) AS session_no
            FROM flagged
        )
        SELECT user_id, session_no::BIGINT, min(event_time), max(event_time), count(*)
        FROM numbered GROUP BY user_id, session_no
    """
    return rows(con.sql(sql).to_arrow_table())


def rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return sorted(zip(*(c.to_pylist() for c in table.itercolumns()), strict=True))


WORD_COUNT = MapReduceJob(words, add, combine_fn="sum", num_partitions=3, key_column="word")
SESSIONS = MapReduceJob(clicks_by_user, sessions, num_partitions=4, key_column="user_id")


# -- inline and local executors ----------------------------------------------------------


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_word_count_equals_duckdb(executor: Any, files: dict[str, Any]) -> None:
    result = WORD_COUNT.run(files["text"], executor=executor, workers=2)
    assert result.column_names == ["word", "value"]
    expected = word_count_reference(files["text"])
    assert len(expected) > 5
    assert rows(result) == expected


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_sessionization_equals_duckdb(executor: Any, files: dict[str, Any]) -> None:
    result = SESSIONS.run(files["clicks"], executor=executor, workers=2)
    expected = sessions_reference(files["click_table"])
    assert len(expected) > 100
    assert rows(result) == expected


def test_aggregate_names_and_a_custom_partitioner_give_the_same_counts(
    files: dict[str, Any],
) -> None:
    job = MapReduceJob(words, "sum", combine_fn="sum", partitioner=everything_to_zero)
    result = job.run(files["text"], executor="inline")
    assert rows(result) == word_count_reference(files["text"])


def test_parquet_splits_follow_row_groups(files: dict[str, Any]) -> None:
    parts = splits(files["clicks"] / "a.parquet", split_rows=2000)
    assert [s.row_groups for s in parts] == [(0, 1), (2, 3)]
    table = files["click_table"]
    assert sum(b.num_rows for s in splits(table, parts=4) for b in s.batches()) == 6000


def test_hash_partitioner_is_stable_and_in_range() -> None:
    keys = pa.array([f"k{i}" for i in range(1000)])
    first, again = hash_partitioner(keys, 7), hash_partitioner(keys, 7)
    assert (first == again).all() and first.min() >= 0 and first.max() < 7
    assert len(np.unique(first)) == 7


def test_lake_table_in_and_out(project: Project, files: dict[str, Any]) -> None:
    clicks = files["click_table"]
    with open_lake(project) as lake:
        lake.create_table("refined.clicks", clicks.schema, time_column="event_time")
        from fluvial.lake import append

        append(lake.table("refined.clicks"), clicks.slice(0, 2500))
        append(lake.table("refined.clicks"), clicks.slice(2500))
        result = SESSIONS.run(
            lake.table("refined.clicks"),
            executor="inline",
            lake=lake,
            append_to="curated.sessions",
        )
        expected = sessions_reference(clicks)
        assert rows(result) == expected
        stored = lake.table("curated.sessions").scan().to_arrow()
        assert rows(stored.select(result.column_names)) == expected


def test_mistakes_are_reported(files: dict[str, Any]) -> None:
    table = text(10, 5)
    with pytest.raises(UsageError, match="did you mean 'local'"):
        WORD_COUNT.run(table, executor="locale")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="module level"):
        MapReduceJob(lambda b: words(b), add).run(table, executor="local", workers=1)
    with pytest.raises(SchemaError, match="without a 'key' column"):
        MapReduceJob(no_key, add).run(table, executor="inline")
    with pytest.raises(UsageError, match="partitioner"):
        MapReduceJob(words, add, partitioner=out_of_range).run(table, executor="inline")
    with pytest.raises(UsageError, match="format"):
        splits(Path("notes.txt"))
    with pytest.raises(UsageError, match="num_partitions"):
        MapReduceJob(words, add, num_partitions=0)
    assert isinstance(splits(table)[0], Split)


# -- Spark -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark(java: str) -> Iterator[Any]:
    """One SparkSession for the module (skipped without pyspark, failed under CI)."""
    from conftest import need

    need(importlib.util.find_spec("pyspark") is not None, "pyspark is not installed")
    from fluvial.batch.engines.spark import spark_session, stop_session

    yield spark_session("local[2]")
    stop_session()


@pytest.mark.slow
@pytest.mark.service
def test_spark_executor_equals_duckdb(spark: Any, files: dict[str, Any]) -> None:
    counted = WORD_COUNT.run(files["text"], executor="spark")
    assert rows(counted) == word_count_reference(files["text"])
    cut = SESSIONS.run(files["clicks"], executor="spark")
    assert rows(cut) == sessions_reference(files["click_table"])
    with pytest.raises(BatchError, match="key"):
        MapReduceJob(no_key, add).run(text(10, 5), executor="spark")
