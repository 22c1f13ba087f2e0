"""Unbounded GROUP BY: an updating result whose upserted end state equals DuckDB's batch
GROUP BY over the same rows, whatever the micro-batch size; ``table.exec.state.ttl``."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from tests.stream.helpers import (
    SOURCE,
    collecting,
    expected_con,
    make_rows,
    multiset,
    sink,
    upserted,
    write_json,
)

from fluvial.errors import SqlError
from fluvial.stream.job import plan_text
from fluvial.stream.ops.group import GroupAggregate
from fluvial.stream.ops.spec import AggSpec
from fluvial.stream.runtime import run_job

CASES = {
    "per_page": (
        "page STRING, n BIGINT, s DOUBLE, mx DOUBLE, users BIGINT, PRIMARY KEY (page) NOT ENFORCED",
        """SELECT page, COUNT(*), SUM(amount), MAX(amount), COUNT(DISTINCT user_id)
           FROM clicks WHERE user_id <> 'u3' GROUP BY page""",
        """SELECT page, count(*), sum(amount), max(amount), count(DISTINCT user_id)
           FROM e WHERE user_id <> 'u3' GROUP BY page""",
        ["page"],
    ),
    "having_can_leave": (
        "user_id STRING, page STRING, n BIGINT, PRIMARY KEY (user_id, page) NOT ENFORCED",
        """SELECT user_id, page, COUNT(amount) AS n FROM clicks GROUP BY user_id, page
           HAVING COUNT(*) < 24""",
        """SELECT user_id, page, count(amount) FROM e GROUP BY user_id, page
           HAVING count(*) < 24""",
        ["user_id", "page"],
    ),
    "global": (
        "n BIGINT, a DOUBLE",
        "SELECT COUNT(*), AVG(amount) FROM clicks",
        "SELECT count(*), avg(amount) FROM e",
        [],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("batch", [37, 100_000])
def test_upserted_result_equals_batch_group_by(tmp_path: Path, case: str, batch: int) -> None:
    columns, query, reference, key = CASES[case]
    rows = make_rows(1500, seed=4)
    path = write_json(tmp_path / "clicks.json", rows)
    sql = (
        SOURCE.format(path=path)
        + f"CREATE TABLE out ({columns}) WITH ('connector' = 'collect');\n"
        + f"INSERT INTO out {query};"
    )
    with collecting() as committed:
        run_job(plan_text(sql), until_idle=True, max_rows=batch)
        tables = committed["out"]
    names = tables[0].column_names[:-1]
    final = upserted(tables, [names[i] for i in range(len(key))] if key else [])
    want = expected_con(rows).execute(reference).fetchall()
    assert multiset(list(final.values())) == multiset(want)
    if batch < 100 and case == "per_page":
        ops = {x for t in tables for x in t["_op"].to_pylist()}
        assert ops == {0, 1, 2}, "small batches must update results"


@pytest.mark.parametrize("batch", [23, 100_000])
def test_group_by_over_an_updating_result_retracts(tmp_path: Path, batch: int) -> None:
    rows = make_rows(1200, seed=9)
    path = write_json(tmp_path / "clicks.json", rows)
    sql = (
        SOURCE.format(path=path)
        + "CREATE TABLE out (n BIGINT, users BIGINT, total BIGINT, avg_n BIGINT, "
        "PRIMARY KEY (n) NOT ENFORCED) WITH ('connector' = 'collect');\n"
        + """INSERT INTO out SELECT n % 5, COUNT(*), SUM(n), AVG(n) FROM (
               SELECT user_id, COUNT(*) AS n FROM clicks GROUP BY user_id) GROUP BY n % 5;"""
    )
    with collecting() as committed:
        run_job(plan_text(sql), until_idle=True, max_rows=batch)
        tables = committed["out"]
    final = upserted(tables, ["n"])
    want = (
        expected_con(rows)
        .execute(
            """SELECT n % 5, count(*), sum(n), CAST(trunc(avg(n)) AS BIGINT) FROM (
                 SELECT user_id, count(*) AS n FROM e GROUP BY user_id) GROUP BY n % 5"""
        )
        .fetchall()
    )
    assert multiset(list(final.values())) == multiset(want)
    if batch < 100:  # users move between buckets: buckets empty out and are deleted
        assert any(3 in t["_op"].to_pylist() for t in tables)


def test_max_over_an_updating_result_is_refused(tmp_path: Path) -> None:
    sql = (
        SOURCE.format(path=tmp_path / "x.json")
        + "CREATE TABLE out (n BIGINT) WITH ('connector' = 'blackhole');\n"
        + "INSERT INTO out SELECT MAX(c) FROM (SELECT page, COUNT(*) AS c FROM clicks "
        "GROUP BY page);"
    )
    with pytest.raises(SqlError, match="only COUNT, SUM and AVG retract"):
        plan_text(sql)


def test_an_append_only_sink_refuses_group_by(tmp_path: Path) -> None:
    sql = (
        SOURCE.format(path=tmp_path / "x.json")
        + sink(tmp_path / "out", "page STRING, n BIGINT")
        + "INSERT INTO out SELECT page, COUNT(*) FROM clicks GROUP BY page;"
    )
    with pytest.raises(SqlError, match=r"doesn't support consuming update changes.*GroupAggregate"):
        plan_text(sql)


def test_state_ttl_forgets_idle_keys() -> None:
    now = [1000.0]
    op = GroupAggregate(["k"], [AggSpec("n", "count_star")], ttl_ms=60_000, clock=lambda: now[0])
    op.process(pa.table({"k": ["a", "b"]}), None)
    op.advance(0)
    now[0] += 30
    op.process(pa.table({"k": ["a"]}), None)
    assert op.advance(0)["_op"].to_pylist() == [1, 2]  # a: 1 -> 2
    now[0] += 45  # b idle for 75 s > ttl, a for 45 s
    op.process(pa.table({"k": ["a", "b"]}), None)
    out = op.advance(0).to_pylist()
    assert {(r["k"], r["n"], r["_op"]) for r in out} == {
        ("a", 2, 1),
        ("a", 3, 2),
        ("b", 1, 0),  # forgotten: starts again
    }


def test_snapshot_restore_continues() -> None:
    aggs = [AggSpec("n", "count_star"), AggSpec("s", "sum", "v")]
    a, b = GroupAggregate(["k"], aggs), GroupAggregate(["k"], aggs)
    t1 = pa.table({"k": ["x", "y", "x"], "v": [1, 2, 3]})
    t2 = pa.table({"k": ["x", "z"], "v": [4, 5]})
    for op in (a, b):
        op.process(t1, None)
        op.advance(0)
    c = GroupAggregate(["k"], aggs)
    c.restore(b.snapshot())
    a.process(t2, None)
    c.process(t2, None)
    assert a.advance(0).to_pylist() == c.advance(0).to_pylist()


def test_ttl_setting_is_planned(tmp_path: Path) -> None:
    sql = (
        "SET 'table.exec.state.ttl' = '1 h';\n"
        + SOURCE.format(path=tmp_path / "x.json")
        + "CREATE TABLE out (page STRING, n BIGINT) WITH ('connector' = 'blackhole');\n"
        + "INSERT INTO out SELECT page, COUNT(*) FROM clicks GROUP BY page;"
    )
    (step,) = [s for s in plan_text(sql).pipelines[0].steps if hasattr(s, "ttl_ms")]
    assert step.ttl_ms == 3_600_000
