"""SessionAggregate against a gaps-and-islands DuckDB query, plus Flink's lateness rules."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from fluvial.stream.ops import AggSpec, SessionAggregate, WindowSpec

from .conftest import AGG_SQL, AGGS, make_stream, rows

# Times are even and gaps odd, so no row lands exactly ``gap`` after a fired session's last
# row (Flink's inclusive merge with a session whose state is already gone is order-dependent).
ISLANDS_SQL = """
    WITH src AS (SELECT epoch_ms(ts) AS t, k, x, y, f FROM ev),
    g AS (SELECT *, CASE WHEN t - lag(t) OVER (PARTITION BY k ORDER BY t) <= {gap}
                         THEN 0 ELSE 1 END AS new_session FROM src),
    i AS (SELECT *, sum(new_session) OVER (PARTITION BY k ORDER BY t
                                           ROWS UNBOUNDED PRECEDING) AS sid FROM g)
    SELECT min(t) AS window_start, max(t) + {gap} AS window_end, max(t) + {gap} - 1 AS window_time,
           k, {aggs}
    FROM i GROUP BY k, sid
"""


def run_all(op: SessionAggregate, stream) -> pa.Table:
    out = list(stream.run(op))
    out.append(op.flush())
    return pa.concat_tables(out)


@pytest.mark.parametrize(("seed", "gap"), [(1, 7), (2, 15), (3, 41)])
def test_matches_duckdb(seed: int, gap: int) -> None:
    stream = make_stream(seed, n=2500)
    op = SessionAggregate(WindowSpec.session(gap, ("k",)), "ts", ["k"], AGGS)
    got = run_all(op, stream)
    assert op.late_rows == 0
    assert op.state_rows == 0
    con = duckdb.connect()
    con.register("ev", stream.events)
    expected = con.sql(ISLANDS_SQL.format(gap=gap, aggs=AGG_SQL)).to_arrow_table()
    assert len(got) == len(expected) > 50
    assert rows(got) == rows(expected)


def test_snapshot_restore_mid_stream() -> None:
    stream = make_stream(5)
    spec = WindowSpec.session(9, ("k",))
    whole = run_all(SessionAggregate(spec, "ts", ["k"], AGGS), stream)
    first = SessionAggregate(spec, "ts", ["k"], AGGS)
    half = len(stream.batches) // 2
    out = list(stream.run(first, 0, half))
    second = SessionAggregate(spec, "ts", ["k"], AGGS)
    second.restore(first.snapshot())
    assert second.state_rows == first.state_rows > 0
    out += list(stream.run(second, half))
    out.append(second.flush())
    assert rows(pa.concat_tables(out)) == rows(whole)


def _batch(times: list[int], key: str = "a") -> pa.Table:
    return pa.table({"ts": pa.array(times, pa.timestamp("ms")), "k": [key] * len(times)})


def _sessions(table: pa.Table) -> list[tuple[int, int, int]]:
    start = table.column("window_start").cast(pa.int64()).to_pylist()
    end = table.column("window_end").cast(pa.int64()).to_pylist()
    return list(zip(start, end, table.column("n").to_pylist(), strict=True))


def test_lateness_follows_flink_merging_rule() -> None:
    op = SessionAggregate(WindowSpec.session(10, ("k",)), "ts", ["k"], [AggSpec("n", "count_star")])
    op.process(_batch([100, 110]), None)  # rows exactly gap apart share a session: [100, 120)
    assert _sessions(op.advance(119)) == [(100, 120, 2)]
    op.process(_batch([200]), 119)
    assert op.advance(150).num_rows == 0  # [200, 210) is open
    # watermark 150: t=105 (105+10-1 <= 150) is late and touches only the fired session: dropped;
    # t=145 (145+10-1 > 150) starts a new session; t=195 is late on its own but touches
    # the open [200, 210), so it joins it.
    assert op.process(_batch([105, 145, 195, 130]), 150) == 2
    assert op.late_rows == 2
    assert _sessions(op.flush()) == [(145, 155, 1), (195, 210, 2)]


def test_keys_are_independent_and_null_key_is_a_key() -> None:
    op = SessionAggregate(WindowSpec.session(5, ("k",)), "ts", ["k"], [AggSpec("n", "count_star")])
    table = pa.table(
        {"ts": pa.array([0, 3, 4, 20], pa.timestamp("ms")), "k": ["a", "b", None, None]}
    )
    op.process(table, None)
    got = op.flush()
    assert got.select(["k", "n"]).to_pylist() == [
        {"k": "a", "n": 1},
        {"k": "b", "n": 1},
        {"k": None, "n": 1},
        {"k": None, "n": 1},
    ]
