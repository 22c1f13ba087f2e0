"""WindowAggregate (TUMBLE / HOP / CUMULATE) against an independent DuckDB batch query."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from fluvial.errors import PipelineError
from fluvial.stream.ops import AggSpec, WindowAggregate, WindowSpec

from .conftest import AGGS, make_stream, reference, rows

TUMBLE_SQL = """
    SELECT *, (floor((t - {off}) / {size}) * {size} + {off})::BIGINT AS ws,
              (floor((t - {off}) / {size}) * {size} + {off})::BIGINT + {size} AS we FROM src
"""
# Every candidate start on the slide grid from t - size to t, kept when it contains t.
HOP_SQL = """
    SELECT * FROM (
        SELECT *, ws + {size} AS we FROM (
            SELECT *, unnest(range(
                (floor((t - {size} - {off}) / {slide}) * {slide} + {off})::BIGINT,
                t + 1, {slide})) AS ws FROM src))
    WHERE ws <= t AND t < we
"""
CUMULATE_SQL = """
    SELECT * FROM (
        SELECT *, unnest(range(ws + {step}, ws + {size} + 1, {step})) AS we FROM (
            SELECT *, (floor((t - {off}) / {size}) * {size} + {off})::BIGINT AS ws FROM src))
    WHERE t < we
"""

CASES = [
    (WindowSpec.tumble(100), TUMBLE_SQL.format(size=100, off=0)),
    (WindowSpec.tumble(100, offset_ms=30), TUMBLE_SQL.format(size=100, off=30)),
    (WindowSpec.hop(size_ms=120, slide_ms=30), HOP_SQL.format(size=120, slide=30, off=0)),
    (WindowSpec.hop(size_ms=100, slide_ms=40), HOP_SQL.format(size=100, slide=40, off=0)),
    (WindowSpec.cumulate(size_ms=200, step_ms=50), CUMULATE_SQL.format(size=200, step=50, off=0)),
]
IDS = ["tumble", "tumble-offset", "hop", "hop-uneven", "cumulate"]


def run_all(spec: WindowSpec, stream, keys=("k",), aggs=AGGS) -> tuple[pa.Table, WindowAggregate]:
    op = WindowAggregate(spec, "ts", list(keys), aggs)
    out = list(stream.run(op))
    out.append(op.flush())
    return pa.concat_tables(out), op


@pytest.mark.parametrize(("spec", "sql"), CASES, ids=IDS)
@pytest.mark.parametrize("seed", [1, 2])
def test_matches_duckdb(spec: WindowSpec, sql: str, seed: int) -> None:
    stream = make_stream(seed)
    got, op = run_all(spec, stream)
    assert op.late_rows == 0
    assert op.state_rows == 0
    expected = reference(stream.events, sql)
    assert len(got) == len(expected) > 0
    assert rows(got) == rows(expected)


@pytest.mark.parametrize(("spec", "sql"), CASES, ids=IDS)
def test_late_rows_dropped_only_when_every_window_fired(spec: WindowSpec, sql: str) -> None:
    stream = make_stream(7, late=0.08)
    got, op = run_all(spec, stream)
    expected = reference(stream.events, sql)
    assert rows(got) == rows(expected)
    # a row is late exactly when none of its windows is still open (DuckDB counts those)
    con = duckdb.connect()
    con.register("ev", stream.events)
    con.execute(
        f"CREATE VIEW w AS WITH src AS (SELECT row_number() OVER () AS i, "
        f"epoch_ms(ts) AS t, k, x, y, f, wm FROM ev) {sql}"
    )
    total = con.execute("SELECT count(*) FROM ev").fetchall()[0][0]
    kept = con.execute("SELECT count(DISTINCT i) FROM w WHERE wm IS NULL OR we - 1 > wm")
    n_late = total - kept.fetchall()[0][0]
    assert op.late_rows == n_late > 0


@pytest.mark.parametrize(
    ("spec", "sql"), CASES[:1] + CASES[2:3] + CASES[4:], ids=["tumble", "hop", "cumulate"]
)
def test_snapshot_restore_mid_stream(spec: WindowSpec, sql: str) -> None:
    stream = make_stream(3)
    whole, _ = run_all(spec, stream)
    first = WindowAggregate(spec, "ts", ["k"], AGGS)
    half = len(stream.batches) // 2
    out = list(stream.run(first, 0, half))
    data = first.snapshot()
    second = WindowAggregate(spec, "ts", ["k"], AGGS)
    second.restore(data)
    assert second.state_rows == first.state_rows > 0
    out += list(stream.run(second, half))
    out.append(second.flush())
    resumed = pa.concat_tables(out)
    assert rows(resumed) == rows(whole)
    assert resumed.schema == whole.schema


def test_single_key_many_windows() -> None:
    stream = make_stream(4, n=5000, keys=1)
    got, _ = run_all(WindowSpec.tumble(10), stream)
    expected = reference(stream.events, TUMBLE_SQL.format(size=10, off=0))
    assert len(got) > 500
    assert rows(got) == rows(expected)


def test_no_keys_groups_by_window_only() -> None:
    stream = make_stream(6)
    got, _ = run_all(WindowSpec.hop(size_ms=100, slide_ms=50), stream, keys=())
    con = duckdb.connect()
    con.register("e", reference(stream.events, HOP_SQL.format(size=100, slide=50, off=0)))
    expected = con.sql("SELECT window_start, window_end, sum(n) AS n FROM e GROUP BY ALL")
    assert rows(got.select(["window_start", "window_end", "n"])) == rows(expected.to_arrow_table())


def test_output_types_follow_flink() -> None:
    table = pa.table(
        {
            "ts": pa.array([0, 1, 2], pa.timestamp("ms", tz="UTC")),
            "i": pa.array([1, 2, 2], pa.int32()),
            "b": pa.array([-7, 2, None], pa.int64()),
            "r": pa.array([1.0, 2.5, None], pa.float32()),
        }
    )
    aggs = [
        AggSpec("n", "count_star"),
        AggSpec("si", "sum", "i"),
        AggSpec("ab", "avg", "b"),
        AggSpec("ar", "avg", "r"),
        AggSpec("mr", "max", "r"),
        AggSpec("d", "count_distinct", "i"),
        AggSpec("e", "sum", "b", "f"),
    ]
    op = WindowAggregate(WindowSpec.tumble(10), "ts", [], aggs)
    op.process(table.append_column("f", pa.array([False, None, False])), None)
    out = op.flush()
    assert out.schema.field("window_start").type == pa.timestamp("ms")
    assert out.schema.field("window_time").type == pa.timestamp("ms", tz="UTC")
    assert [out.schema.field(a.name).type for a in aggs] == [
        pa.int64(),
        pa.int32(),
        pa.int64(),
        pa.float32(),
        pa.float32(),
        pa.int64(),
        pa.int64(),
    ]
    # AVG(BIGINT) of -7 and 2 is -5 / 2 = -2 in Java (truncation), not floor's -3
    assert out.select(["n", "si", "ab", "ar", "d", "e"]).to_pylist() == [
        {"n": 3, "si": 5, "ab": -2, "ar": 1.75, "d": 2, "e": None}
    ]


def test_empty_input_and_bad_input() -> None:
    op = WindowAggregate(WindowSpec.tumble(10), "ts", ["k"], AGGS)
    assert op.process(pa.table({"ts": pa.array([], pa.timestamp("ms"))}), 5) == 0
    assert op.advance(100).num_rows == 0
    assert op.flush().column_names[:4] == ["window_start", "window_end", "window_time", "k"]
    with pytest.raises(PipelineError, match="lacks columns"):
        op.process(pa.table({"ts": pa.array([1], pa.timestamp("ms"))}), None)
    bad = pa.table(
        {
            "ts": pa.array([1, None], pa.timestamp("ms")),
            "k": ["a", "b"],
            "x": [1, 2],
            "y": [1.0, 2.0],
            "f": [True, True],
        }
    )
    with pytest.raises(PipelineError, match="NULL"):
        op.process(bad, None)
    with pytest.raises(PipelineError, match="multiple of its step"):
        WindowAggregate(WindowSpec.cumulate(100, 30), "ts", [], AGGS)


def test_count_star_without_keys_or_arguments() -> None:
    """The event time is the only input column: nothing else to build the frame from."""
    times = pa.array([0, 1_000, 9_999, 10_000, 15_000], pa.int64()).cast(pa.timestamp("ms"))
    op = WindowAggregate(WindowSpec.tumble(10_000), "ts", [], [AggSpec("n", "count_star")])
    op.process(pa.table({"ts": times}), None)
    out = op.flush()
    assert out.column("n").to_pylist() == [3, 2]
    starts = out.column("window_start").cast(pa.int64()).to_pylist()
    assert starts == [0, 10_000]
