"""Joins and UNION ALL, checked against the same queries in DuckDB batch over the same
rows: interval, window (inner and outer) and regular joins; bare window TVFs as rows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tests.stream.helpers import (
    SOURCE,
    collecting,
    expected_con,
    make_rows,
    multiset,
    read_output,
    sink,
    write_json,
)

from fluvial.errors import UnsupportedSqlError
from fluvial.stream.job import plan_text
from fluvial.stream.runtime import run_job

SECOND_SOURCE = SOURCE.replace("CREATE TABLE clicks", "CREATE TABLE views").replace(
    "{path}", "{path2}"
)

CASES: dict[str, tuple[str, str, str]] = {
    "interval": (
        "u STRING, p1 STRING, p2 STRING, t1 TIMESTAMP(3), t2 TIMESTAMP(3)",
        """SELECT c.user_id, c.page, v.page, c.ts, v.ts FROM clicks c JOIN views v
           ON c.user_id = v.user_id
          AND c.ts BETWEEN v.ts - INTERVAL '2' SECOND AND v.ts + INTERVAL '1' SECOND""",
        """SELECT c.user_id, c.page, v.page, c.ts, v.ts FROM e c JOIN v v
           ON c.user_id = v.user_id
          AND c.ts BETWEEN v.ts - INTERVAL 2 SECOND AND v.ts + INTERVAL 1 SECOND""",
    ),
    "interval_comparisons": (
        "u STRING, a DOUBLE, b DOUBLE",
        """SELECT c.user_id, c.amount, v.amount FROM clicks c, views v
           WHERE c.user_id = v.user_id AND v.ts >= c.ts AND v.ts < c.ts + INTERVAL '3' SECOND
             AND c.page = '/cart'""",
        """SELECT c.user_id, c.amount, v.amount FROM e c, v v
           WHERE c.user_id = v.user_id AND v.ts >= c.ts AND v.ts < c.ts + INTERVAL 3 SECOND
             AND c.page = '/cart'""",
    ),
    "window_join_tvf": (
        "ws TIMESTAMP(3), u STRING, p1 STRING, p2 STRING",
        """SELECT L.window_start, L.user_id, L.page, R.page FROM
             (SELECT * FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '5' SECOND))) L
           JOIN
             (SELECT * FROM TABLE(TUMBLE(TABLE views, DESCRIPTOR(ts), INTERVAL '5' SECOND))) R
           ON L.user_id = R.user_id AND L.window_start = R.window_start
          AND L.window_end = R.window_end""",
        """SELECT time_bucket(INTERVAL 5 SECOND, c.ts), c.user_id, c.page, v.page FROM e c
           JOIN v v ON c.user_id = v.user_id
            AND time_bucket(INTERVAL 5 SECOND, c.ts) = time_bucket(INTERVAL 5 SECOND, v.ts)""",
    ),
    "window_full_join_of_aggregates": (
        "ws TIMESTAMP(3), u1 STRING, u2 STRING, n1 BIGINT, n2 BIGINT",
        """SELECT COALESCE(L.window_start, R.window_start), L.user_id, R.user_id, L.n, R.n FROM
             (SELECT window_start, window_end, user_id, COUNT(*) AS n
              FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND))
              WHERE page = '/cart' GROUP BY window_start, window_end, user_id) L
           FULL JOIN
             (SELECT window_start, window_end, user_id, COUNT(*) AS n
              FROM TABLE(TUMBLE(TABLE views, DESCRIPTOR(ts), INTERVAL '10' SECOND))
              WHERE page = '/checkout' GROUP BY window_start, window_end, user_id) R
           ON L.window_start = R.window_start AND L.window_end = R.window_end
          AND L.user_id = R.user_id""",
        """WITH L AS (SELECT time_bucket(INTERVAL 10 SECOND, ts) AS ws, user_id, count(*) AS n
                     FROM e WHERE page = '/cart' GROUP BY ALL),
                R AS (SELECT time_bucket(INTERVAL 10 SECOND, ts) AS ws, user_id, count(*) AS n
                     FROM v WHERE page = '/checkout' GROUP BY ALL)
           SELECT COALESCE(L.ws, R.ws), L.user_id, R.user_id, L.n, R.n
           FROM L FULL JOIN R ON L.ws = R.ws AND L.user_id = R.user_id""",
    ),
    "regular": (
        "u STRING, p1 STRING, p2 STRING",
        """SELECT c.user_id, c.page, v.page FROM clicks c JOIN views v
           ON c.user_id = v.user_id AND c.page = '/checkout' AND v.page = '/cart'""",
        """SELECT c.user_id, c.page, v.page FROM e c JOIN v v
           ON c.user_id = v.user_id AND c.page = '/checkout' AND v.page = '/cart'""",
    ),
    "union_all": (
        "u STRING, what STRING, t TIMESTAMP(3)",
        """SELECT user_id, page, ts FROM clicks WHERE page = '/cart'
           UNION ALL SELECT user_id, 'viewed', ts FROM views WHERE amount > 50""",
        """SELECT user_id, page, ts FROM e WHERE page = '/cart'
           UNION ALL SELECT user_id, 'viewed', ts FROM v WHERE amount > 50""",
    ),
    "tvf_rows": (
        "ws TIMESTAMP(3), we TIMESTAMP(3), u STRING",
        """SELECT window_start, window_end, user_id
           FROM TABLE(HOP(TABLE clicks, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '4' SECOND))
           WHERE page = '/home'""",
        """SELECT make_timestamp((t // 2000 - k) * 2000 * 1000),
                  make_timestamp((t // 2000 - k) * 2000 * 1000 + 4000000), user_id
           FROM e, range(2) r(k) WHERE page = '/home'""",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("batch", [53, 100_000])
def test_join_equals_batch(tmp_path: Path, case: str, batch: int) -> None:
    columns, query, reference = CASES[case]
    clicks = make_rows(700, seed=21, disorder_ms=3000)
    views = make_rows(650, seed=22, disorder_ms=3000)
    path, path2 = tmp_path / "clicks.json", tmp_path / "views.json"
    write_json(path, clicks)
    write_json(path2, views)
    out = tmp_path / "out"
    sql = (
        SOURCE.format(path=path)
        + SECOND_SOURCE.format(path2=path2)
        + sink(out, columns)
        + f"INSERT INTO out {query};"
    )
    result = run_job(plan_text(sql), until_idle=True, max_rows=batch)
    assert result.pipelines[0].late_rows == 0
    con = expected_con(clicks)
    con.register("views_raw", expected_con(views).execute("SELECT * FROM e").arrow())
    con.execute("CREATE TABLE v AS SELECT * FROM views_raw")
    want = con.execute(reference).fetchall()
    assert len(want) > 5, f"the reference is too small to test {case}"
    assert multiset(read_output(out, "*")) == multiset(want)


@pytest.mark.parametrize(
    ("query", "what"),
    [
        (
            "SELECT c.user_id, 'a', 'b', c.ts, c.ts FROM clicks c JOIN views v ON c.ts > v.ts",
            "a lower and an upper time bound",
        ),
    ],
)
def test_unsupported_joins_are_refused_by_name(tmp_path: Path, query: str, what: str) -> None:
    sql = (
        SOURCE.format(path=tmp_path / "c.json")
        + SECOND_SOURCE.format(path2=tmp_path / "v.json")
        + sink(tmp_path / "o", CASES["interval"][0])
        + f"INSERT INTO out {query};"
    )
    with pytest.raises(UnsupportedSqlError, match=what):
        plan_text(sql)


@pytest.mark.parametrize("how", ["LEFT", "RIGHT", "FULL"])
@pytest.mark.parametrize("batch", [29, 100_000])
def test_outer_regular_joins_equal_batch(tmp_path: Path, how: str, batch: int) -> None:
    """A row without a match is emitted NULL-padded and retracted (-D) when its first
    match arrives: the changelog applied equals DuckDB's outer join."""
    clicks = make_rows(300, seed=41)
    views = make_rows(200, seed=42)
    path, path2 = tmp_path / "clicks.json", tmp_path / "views.json"
    write_json(path, clicks)
    write_json(path2, views)
    sql = (
        SOURCE.format(path=path)
        + SECOND_SOURCE.format(path2=path2)
        + "CREATE TABLE out (u1 STRING, p1 STRING, u2 STRING, p2 STRING) "
        "WITH ('connector' = 'collect');\n"
        + f"""INSERT INTO out SELECT c.user_id, c.page, v.user_id, v.page
              FROM clicks c {how} JOIN views v ON c.user_id = v.user_id AND c.page = v.page
              WHERE c.page IS NULL OR c.page <> '/home';"""
    )
    with collecting() as committed:
        run_job(plan_text(sql), until_idle=True, max_rows=batch)
        tables = committed["out"]
    rows: Counter[tuple[Any, ...]] = Counter()
    for t in tables:
        for r in t.to_pylist():
            op = r.pop("_op")
            rows[tuple(r.values())] += -1 if op in (1, 3) else 1
    assert all(n >= 0 for n in rows.values()), "a retraction without its row"
    con = expected_con(clicks)
    con.register("views_raw", expected_con(views).execute("SELECT * FROM e").arrow())
    con.execute("CREATE TABLE v AS SELECT * FROM views_raw")
    want = con.execute(
        f"""SELECT c.user_id, c.page, v.user_id, v.page FROM e c {how} JOIN v v
            ON c.user_id = v.user_id AND c.page = v.page
            WHERE c.page IS NULL OR c.page <> '/home'"""
    ).fetchall()
    assert Counter(+rows) == Counter(want)
    if how != "RIGHT":
        assert any(3 in t["_op"].to_pylist() for t in tables), "padded rows must be retracted"


SELF_JOINS = {
    "interval": """SELECT c.user_id, c.page, v.page FROM clicks c JOIN clicks v
        ON c.user_id = v.user_id AND v.ts BETWEEN c.ts AND c.ts + INTERVAL '2' SECOND
       WHERE c.page = '/cart' AND v.page <> '/cart'""",
    "regular": """SELECT c.user_id, c.page, v.page FROM clicks c JOIN clicks v
        ON c.user_id = v.user_id WHERE c.page = '/cart' AND v.page = '/checkout'""",
}


@pytest.mark.parametrize("case", list(SELF_JOINS))
@pytest.mark.parametrize("batch", [37, 100_000])
def test_a_table_joined_with_itself_is_read_once(tmp_path: Path, case: str, batch: int) -> None:
    """Both sides scan one source: it is read and decoded once (Flink's source reuse), each
    batch feeding both sides, and the join equals DuckDB's self-join."""
    clicks = make_rows(600, seed=23, disorder_ms=3000)
    path = tmp_path / "clicks.json"
    write_json(path, clicks)
    out = tmp_path / "out"
    sql = (
        SOURCE.format(path=path)
        + sink(out, "u STRING, p1 STRING, p2 STRING")
        + f"INSERT INTO out {SELF_JOINS[case]};"
    )
    result = run_job(plan_text(sql), until_idle=True, max_rows=batch)
    assert result.pipelines[0].rows_in == len(clicks)  # not twice
    reference = (
        SELF_JOINS[case].replace("clicks", "e").replace("INTERVAL '2' SECOND", "INTERVAL 2 SECOND")
    )
    want = expected_con(clicks).execute(reference).fetchall()
    assert len(want) > 5
    assert multiset(read_output(out, "*")) == multiset(want)


def test_operators_are_snapshotted_only_when_checkpoints_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job without a checkpoint store never restores, so its checkpoints (which still
    hand each outbox to its sink) skip serializing operator state; with a store they keep it."""
    from fluvial.stream.ops import join as join_ops

    clicks = make_rows(300, seed=5)
    path = tmp_path / "clicks.json"
    write_json(path, clicks)
    calls: list[int] = []
    real = join_ops._TwoSided.snapshot

    def counting(self: Any) -> bytes:
        calls.append(1)
        return real(self)

    monkeypatch.setattr(join_ops._TwoSided, "snapshot", counting)
    sql = (
        "SET 'execution.checkpointing.interval' = '1 ms';\n"
        + SOURCE.format(path=path)
        + "CREATE TABLE out (u STRING) WITH ('connector' = 'blackhole');\n"
        + "INSERT INTO out SELECT c.user_id FROM clicks c JOIN clicks v ON c.user_id = v.user_id;"
    )
    run_job(plan_text(sql), until_idle=True, max_rows=50)
    assert calls == []
    run_job(plan_text(sql), until_idle=True, max_rows=50, checkpoint_dir=tmp_path / "cp")
    assert calls, "a job that keeps checkpoints must snapshot its join state"
