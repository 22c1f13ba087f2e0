"""Window pipelines checked against independently written DuckDB batch queries.

Seeded click events with bounded disorder (less than the watermark delay, so no row is
late) are written as a JSON file (Flink's SQL timestamp format) for a filesystem source;
each pipeline runs to the end of its input into a parquet sink, and its output must equal,
as a multiset, what a DuckDB batch query computes over the same rows. The expected
queries do the window arithmetic themselves (epoch milliseconds), not through Fluvial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.stream.helpers import (
    SOURCE,
    expected_con,
    make_rows,
    multiset,
    read_output,
    run_pipeline,
    sink,
    write_json,
)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return make_rows()


@pytest.fixture
def source(tmp_path: Path, rows: list[dict[str, Any]]) -> str:
    return SOURCE.format(path=write_json(tmp_path / "clicks.json", rows))


WINDOW_SINK = (
    "window_start TIMESTAMP(3), window_end TIMESTAMP(3), k STRING, n BIGINT, n_amount BIGINT, "
    "total DOUBLE, mean DOUBLE, lo DOUBLE, hi DOUBLE, users BIGINT, big BIGINT"
)
AGGS = (
    "COUNT(*), COUNT(amount), SUM(amount), AVG(amount), MIN(amount), MAX(amount), "
    "COUNT(DISTINCT user_id), COUNT(*) FILTER (WHERE amount > 50)"
)
EXPECTED_AGGS = (
    "count(*), count(amount), sum(amount), avg(amount), min(amount), max(amount), "
    "count(DISTINCT user_id), count(*) FILTER (WHERE amount > 50)"
)
OUT_SELECT = (
    "epoch_ms(window_start), epoch_ms(window_end), k, n, n_amount, total, mean, lo, hi, users, big"
)


def test_tumble_all_aggregates(tmp_path: Path, source: str, rows: list[dict[str, Any]]) -> None:
    out = tmp_path / "out"
    result = run_pipeline(
        tmp_path,
        source
        + sink(out, WINDOW_SINK)
        + f"""INSERT INTO out
        SELECT window_start, window_end, page, {AGGS}
        FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
        GROUP BY window_start, window_end, page;""",
    )
    expected = (
        expected_con(rows)
        .execute(
            f"""SELECT t // 60000 * 60000 AS ws, t // 60000 * 60000 + 60000, page, {EXPECTED_AGGS}
            FROM e GROUP BY ws, page"""
        )
        .fetchall()
    )
    assert multiset(read_output(out, OUT_SELECT)) == multiset(expected)
    stats = result.pipelines[0]
    assert stats.rows_in == len(rows) and stats.late_rows == 0
    assert stats.rows_out == len(expected)


def test_hop(tmp_path: Path, source: str, rows: list[dict[str, Any]]) -> None:
    out = tmp_path / "out"
    run_pipeline(
        tmp_path,
        source
        + sink(out, WINDOW_SINK)
        + f"""INSERT INTO out
        SELECT window_start, window_end, page, {AGGS}
        FROM TABLE(HOP(TABLE clicks, DESCRIPTOR(ts), INTERVAL '30' SECOND, INTERVAL '2' MINUTE))
        GROUP BY window_start, window_end, page;""",
    )
    expected = (
        expected_con(rows)
        .execute(
            f"""SELECT ws, ws + 120000, page, {EXPECTED_AGGS}
            FROM (SELECT *, unnest(range(t // 30000 * 30000 - 90000, t // 30000 * 30000 + 1, 30000)) AS ws FROM e)
            GROUP BY ws, page"""
        )
        .fetchall()
    )
    assert multiset(read_output(out, OUT_SELECT)) == multiset(expected)


def test_cumulate(tmp_path: Path, source: str, rows: list[dict[str, Any]]) -> None:
    out = tmp_path / "out"
    run_pipeline(
        tmp_path,
        source
        + sink(out, WINDOW_SINK)
        + f"""INSERT INTO out
        SELECT window_start, window_end, page, {AGGS}
        FROM TABLE(CUMULATE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '30' SECOND, INTERVAL '2' MINUTE))
        GROUP BY window_start, window_end, page;""",
    )
    expected = (
        expected_con(rows)
        .execute(
            f"""SELECT ws, we, page, {EXPECTED_AGGS}
            FROM (
              SELECT *, t // 120000 * 120000 AS ws,
                unnest(range((t - t // 120000 * 120000) // 30000 * 30000 + 30000 + t // 120000 * 120000,
                             t // 120000 * 120000 + 120000 + 1, 30000)) AS we
              FROM e)
            GROUP BY ws, we, page"""
        )
        .fetchall()
    )
    assert multiset(read_output(out, OUT_SELECT)) == multiset(expected)


def test_session_partitioned(tmp_path: Path, source: str, rows: list[dict[str, Any]]) -> None:
    out = tmp_path / "out"
    run_pipeline(
        tmp_path,
        source
        + sink(out, "ws TIMESTAMP(3), we TIMESTAMP(3), user_id STRING, n BIGINT, total DOUBLE")
        + """INSERT INTO out
        SELECT window_start, window_end, user_id, COUNT(*), SUM(amount)
        FROM TABLE(SESSION(TABLE clicks PARTITION BY user_id, DESCRIPTOR(ts), INTERVAL '20' SECOND))
        GROUP BY window_start, window_end, user_id;""",
    )
    # Flink merges session windows [t, t + gap) that intersect or touch (TimeWindow.intersects)
    expected = (
        expected_con(rows)
        .execute(
            """WITH s AS (
              SELECT *, CASE WHEN t - lag(t) OVER (PARTITION BY user_id ORDER BY t) <= 20000
                        THEN 0 ELSE 1 END AS starts FROM e),
            g AS (SELECT *, sum(starts) OVER (PARTITION BY user_id ORDER BY t, starts DESC
                        ROWS UNBOUNDED PRECEDING) AS sid FROM s)
            SELECT min(t), max(t) + 20000, user_id, count(*), sum(amount) FROM g GROUP BY user_id, sid"""
        )
        .fetchall()
    )
    got = read_output(out, "epoch_ms(ws), epoch_ms(we), user_id, n, total")
    assert multiset(got) == multiset(expected)


def test_legacy_group_window(tmp_path: Path, source: str, rows: list[dict[str, Any]]) -> None:
    out = tmp_path / "out"
    run_pipeline(
        tmp_path,
        source
        + sink(out, "ws TIMESTAMP(3), we TIMESTAMP(3), page STRING, n BIGINT, total DOUBLE")
        + """INSERT INTO out
        SELECT TUMBLE_START(ts, INTERVAL '1' MINUTE), TUMBLE_END(ts, INTERVAL '1' MINUTE),
               page, COUNT(*), SUM(amount)
        FROM clicks
        GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), page;""",
    )
    expected = (
        expected_con(rows)
        .execute(
            """SELECT t // 60000 * 60000 AS ws, t // 60000 * 60000 + 60000, page, count(*), sum(amount)
            FROM e GROUP BY ws, page"""
        )
        .fetchall()
    )
    got = read_output(out, "epoch_ms(ws), epoch_ms(we), page, n, total")
    assert multiset(got) == multiset(expected)


def test_having_and_expressions_over_aggregates(
    tmp_path: Path, source: str, rows: list[dict[str, Any]]
) -> None:
    out = tmp_path / "out"
    run_pipeline(
        tmp_path,
        source
        + sink(out, "ws TIMESTAMP(3), k STRING, per_user DOUBLE, n BIGINT")
        + """INSERT INTO out
        SELECT window_start, UPPER(page), CAST(COUNT(*) AS DOUBLE) / COUNT(DISTINCT user_id), COUNT(*)
        FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
        WHERE amount IS NOT NULL
        GROUP BY window_start, window_end, page
        HAVING COUNT(*) > 10;""",
    )
    expected = (
        expected_con(rows)
        .execute(
            """SELECT t // 60000 * 60000 AS ws, upper(page), count(*) / count(DISTINCT user_id), count(*)
            FROM e WHERE amount IS NOT NULL GROUP BY ws, page HAVING count(*) > 10"""
        )
        .fetchall()
    )
    got = read_output(out, "epoch_ms(ws), k, per_user, n")
    assert got and multiset(got) == multiset(expected)
