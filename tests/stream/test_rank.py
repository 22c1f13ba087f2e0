"""Window Top-N, window deduplication on a TVF, and rowtime deduplication, checked against
DuckDB batch queries (and a Python model for deduplication's tie rule: the earlier arrival
for ASC, the later for DESC)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from tests.stream.helpers import (
    SOURCE,
    collecting,
    expected_con,
    make_rows,
    multiset,
    read_output,
    sink,
    upserted,
    write_json,
)

from fluvial.stream.job import plan_text
from fluvial.stream.runtime import run_job

TOP_AGG = """
INSERT INTO out
SELECT window_start, window_end, page, n, rownum FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end
                               ORDER BY n DESC, page) AS rownum
  FROM (SELECT window_start, window_end, page, COUNT(*) AS n
        FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND))
        GROUP BY window_start, window_end, page))
WHERE rownum <= 2;
"""
TOP_AGG_REF = """
SELECT * FROM (
  SELECT ws, ws + INTERVAL 10 SECOND, page, n,
         row_number() OVER (PARTITION BY ws ORDER BY n DESC, page) AS rn
  FROM (SELECT time_bucket(INTERVAL 10 SECOND, ts) AS ws, page, count(*) AS n
        FROM e GROUP BY ALL))
WHERE rn <= 2
"""
TOP_TVF = """
INSERT INTO out
SELECT window_start, user_id, amount, rownum FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, page
                               ORDER BY amount DESC, user_id, ts) AS rownum
  FROM TABLE(HOP(TABLE clicks, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND))
  WHERE amount IS NOT NULL)
WHERE rownum = 1;
"""
TOP_TVF_REF = """
SELECT ws, user_id, amount, rn FROM (
  SELECT ws, user_id, amount,
         row_number() OVER (PARTITION BY ws, page ORDER BY amount DESC, user_id, ts) AS rn
  FROM (SELECT make_timestamp((t // 5000 - k) * 5000 * 1000) AS ws, *
        FROM e, range(2) r(k) WHERE amount IS NOT NULL))
WHERE rn = 1
"""


@pytest.mark.parametrize(
    ("columns", "query", "reference"),
    [
        ("ws TIMESTAMP(3), we TIMESTAMP(3), page STRING, n BIGINT, r BIGINT", TOP_AGG, TOP_AGG_REF),
        ("ws TIMESTAMP(3), user_id STRING, amount DOUBLE, r BIGINT", TOP_TVF, TOP_TVF_REF),
    ],
    ids=["over_window_aggregate", "over_window_tvf"],
)
@pytest.mark.parametrize("batch", [41, 100_000])
def test_window_top_n_equals_batch(
    tmp_path: Path, columns: str, query: str, reference: str, batch: int
) -> None:
    rows = make_rows(1200, seed=8)
    path = write_json(tmp_path / "clicks.json", rows)
    out = tmp_path / "out"
    sql = SOURCE.format(path=path) + sink(out, columns) + query
    result = run_job(plan_text(sql), until_idle=True, max_rows=batch)
    assert result.pipelines[0].late_rows == 0
    want = expected_con(rows).execute(reference).fetchall()
    assert len(want) > 20
    assert multiset(read_output(out, "*")) == multiset(want)


def _ms(t: dt.datetime) -> int:
    return int((t - dt.datetime(1970, 1, 1)).total_seconds() * 1000)


@pytest.mark.parametrize("order", ["ASC", "DESC"])
@pytest.mark.parametrize("batch", [29, 100_000])
def test_deduplication_keeps_the_first_or_last_row(tmp_path: Path, order: str, batch: int) -> None:
    rows = make_rows(900, seed=2, disorder_ms=6000)
    path = write_json(tmp_path / "clicks.json", rows)
    sql = (
        SOURCE.format(path=path)
        + "CREATE TABLE out (user_id STRING, page STRING, ts TIMESTAMP(3), rn BIGINT, "
        "PRIMARY KEY (user_id) NOT ENFORCED) WITH ('connector' = 'collect');\n"
        + f"""INSERT INTO out SELECT user_id, page, ts, rn FROM (
              SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY ts {order}) AS rn
              FROM clicks) WHERE rn = 1;"""
    )
    with collecting() as committed:
        run_job(plan_text(sql), until_idle=True, max_rows=batch)
        tables = committed["out"]
    final = upserted(tables, ["user_id"])
    best: dict[str, tuple[int, int, dict]] = {}
    for i, r in enumerate(rows):  # the model: by time, ties by arrival
        rank = (_ms(r["ts"]), i) if order == "DESC" else (-_ms(r["ts"]), -i)
        if r["user_id"] not in best or rank > best[r["user_id"]][:2]:
            best[r["user_id"]] = (*rank, r)
    want = [(r["user_id"], r["page"], r["ts"], 1) for _, _, r in best.values()]
    assert multiset(list(final.values())) == multiset(want)
    if batch < 100 and order == "DESC":
        assert any(2 in t["_op"].to_pylist() for t in tables), "later rows must replace"


@pytest.mark.parametrize("batch", [31, 100_000])
def test_top_n_without_window_upserts_to_the_batch_ranking(tmp_path: Path, batch: int) -> None:
    rows = make_rows(900, seed=12)
    path = write_json(tmp_path / "clicks.json", rows)
    sql = (
        SOURCE.format(path=path) + "CREATE TABLE out (u STRING, a DOUBLE, p STRING, rn BIGINT, "
        "PRIMARY KEY (u, rn) NOT ENFORCED) WITH ('connector' = 'collect');\n"
        + """INSERT INTO out SELECT user_id, amount, page, rn FROM (
               SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id
                                            ORDER BY amount DESC NULLS LAST, ts) AS rn
               FROM clicks WHERE amount IS NOT NULL) WHERE rn <= 3;"""
    )
    with collecting() as committed:
        run_job(plan_text(sql), until_idle=True, max_rows=batch)
        tables = committed["out"]
    final = upserted(tables, ["u", "rn"])
    want = (
        expected_con(rows)
        .execute(
            """SELECT user_id, amount, page, rn FROM (
                 SELECT *, row_number() OVER (PARTITION BY user_id
                                              ORDER BY amount DESC, ts) AS rn
                 FROM e WHERE amount IS NOT NULL) WHERE rn <= 3"""
        )
        .fetchall()
    )
    assert multiset(list(final.values())) == multiset(want)
    if batch < 100:
        assert any(1 in t["_op"].to_pylist() for t in tables), "ranks must change"


def test_cascaded_window_aggregation_equals_batch(tmp_path: Path) -> None:
    """GROUP BY the (renamed) window bounds of a window aggregation: append-only, one
    result per window, as Flink's cascaded window aggregation."""
    rows = make_rows(1000, seed=14)
    path = write_json(tmp_path / "clicks.json", rows)
    out = tmp_path / "out"
    sql = (
        SOURCE.format(path=path)
        + sink(out, "s TIMESTAMP(3), e TIMESTAMP(3), most BIGINT, pages BIGINT")
        + """INSERT INTO out SELECT starttime, endtime, MAX(n), COUNT(*) FROM (
               SELECT page, COUNT(*) AS n, window_start AS starttime, window_end AS endtime
               FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND))
               GROUP BY page, window_start, window_end)
             GROUP BY starttime, endtime;"""
    )
    run_job(plan_text(sql), until_idle=True, max_rows=61)
    want = (
        expected_con(rows)
        .execute(
            """SELECT ws, ws + INTERVAL 10 SECOND, max(n), count(*) FROM (
                 SELECT time_bucket(INTERVAL 10 SECOND, ts) AS ws, page, count(*) AS n
                 FROM e GROUP BY ALL) GROUP BY ws"""
        )
        .fetchall()
    )
    assert multiset(read_output(out, "*")) == multiset(want)


def test_dedup_and_top_n_survive_a_snapshot() -> None:
    """A restored operator continues exactly as the one it was taken from."""
    import pyarrow as pa

    from fluvial.stream.ops.dedup import Deduplicate
    from fluvial.stream.ops.topn import TopN

    def batch(rows: list[tuple[str, int]]) -> pa.Table:
        return pa.table(
            {
                "k": [r[0] for r in rows],
                "ts": pa.array([r[1] for r in rows], pa.timestamp("ms")),
                "v": [r[1] % 7 for r in rows],
            }
        )

    first, second = batch([("a", 5), ("b", 3), ("a", 9)]), batch([("a", 2), ("b", 11), ("c", 1)])
    for make in (
        lambda: Deduplicate(["k"], "ts", keep_last=True),
        lambda: TopN(["k"], [("v", True, False)], 2, "rn"),
    ):
        whole, moved = make(), make()
        for op in (whole, moved):
            op.process(first, None)
            op.advance(0)
        restored = make()
        restored.restore(moved.snapshot())
        whole.process(second, None)
        restored.process(second, None)
        assert whole.advance(0).to_pylist() == restored.advance(0).to_pylist()
