"""The Python dataflow API against the SQL engine and independent DuckDB queries.

Same seeded click events as ``test_windows_vs_duckdb`` (disorder below the watermark
delay, so no row is late); each dataflow pipeline runs through ``run_job`` into a parquet
sink, and its output must equal, as a multiset, the equivalent SQL pipeline's output or a
DuckDB batch query written independently (window arithmetic in epoch milliseconds).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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

from fluvial.errors import PipelineError, UsageError
from fluvial.stream.dataflow import (
    Stream,
    UserWindowOperator,
    WindowSpec,
    avg,
    count,
    count_distinct,
    max_,
    min_,
    sum_,
)

MINUTE = 60_000


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return make_rows()


@pytest.fixture
def source(tmp_path: Path, rows: list[dict[str, Any]]) -> str:
    return SOURCE.format(path=write_json(tmp_path / "clicks.json", rows))


def out_ddl(path: Path, columns: str) -> str:
    return sink(path, columns).rstrip().rstrip(";")


class Median:
    """A median of ``amount`` (NULLs ignored): state is a list of value arrays."""

    def initialize(self) -> list[np.ndarray]:
        return []

    def accumulate(self, state: list[np.ndarray], batch: pa.Table) -> list[np.ndarray]:
        values = pc.drop_null(batch["amount"]).to_numpy()
        return [*state, values]

    def merge(self, a: list[np.ndarray], b: list[np.ndarray]) -> list[np.ndarray]:
        return [*a, *b]

    def result(self, state: list[np.ndarray]) -> float | None:
        values = np.concatenate(state) if state else np.array([])
        return float(np.median(values)) if len(values) else None


class Top3:
    """The three largest amounts (descending) and the row count, as two columns."""

    def initialize(self) -> tuple[list[float], int]:
        return [], 0

    def accumulate(self, state: tuple[list[float], int], batch: pa.Table) -> tuple[Any, int]:
        values = pc.drop_null(batch["amount"]).to_numpy()
        top = np.sort(np.concatenate([np.asarray(state[0]), values]))[::-1][:3]
        return top.tolist(), state[1] + batch.num_rows

    def merge(self, a: tuple[list[float], int], b: tuple[list[float], int]) -> tuple[Any, int]:
        return sorted([*a[0], *b[0]], reverse=True)[:3], a[1] + b[1]

    def result(self, state: tuple[list[float], int]) -> dict[str, Any]:
        return {"top": ",".join(f"{v:.2f}" for v in state[0]), "n": state[1]}


def test_map_filter_select_equal_sql(tmp_path: Path, source: str) -> None:
    sql_out, df_out = tmp_path / "sql", tmp_path / "df"
    cols = "user_id STRING, page STRING, amount DOUBLE, ts TIMESTAMP(3)"
    run_pipeline(
        tmp_path / "a",
        source
        + sink(sql_out, cols)
        + """INSERT INTO out SELECT UPPER(user_id), page, amount * 2, ts FROM clicks
        WHERE amount > 20 AND page <> '/home';""",
    )

    def double(t: pa.Table) -> pa.Table:
        i = t.column_names.index("amount")
        return t.set_column(i, "amount", pc.multiply(t["amount"], 2.0))

    stream = (
        Stream.from_sql(source)
        .where("amount > 20")
        .filter(lambda t: pc.not_equal(t["page"], "/home"))
        .map(double)
        .select("UPPER(user_id) AS user_id", "page", "amount", "ts")
    )
    result = stream.to(out_ddl(df_out, cols)).run(checkpoint_dir=tmp_path / "b")
    select = "user_id, page, amount, epoch_ms(ts)"
    got = read_output(df_out, select)
    assert got and multiset(got) == multiset(read_output(sql_out, select))
    assert result.pipelines[0].rows_out == len(got)


def test_builtin_window_aggregates_equal_sql_and_duckdb(
    tmp_path: Path, source: str, rows: list[dict[str, Any]]
) -> None:
    cols = (
        "window_start TIMESTAMP(3), window_end TIMESTAMP(3), wt TIMESTAMP(3), page STRING, "
        "n BIGINT, n_amount BIGINT, total DOUBLE, mean DOUBLE, lo DOUBLE, hi DOUBLE, users BIGINT"
    )
    sql_out, df_out = tmp_path / "sql", tmp_path / "df"
    run_pipeline(
        tmp_path / "a",
        source
        + sink(sql_out, cols)
        + """INSERT INTO out SELECT window_start, window_end, window_time, page, COUNT(*),
        COUNT(amount), SUM(amount), AVG(amount), MIN(amount), MAX(amount),
        COUNT(DISTINCT user_id)
        FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
        GROUP BY window_start, window_end, page;""",
    )
    stream = (
        Stream.from_sql(source)
        .key_by("page")
        .window(WindowSpec.tumble(MINUTE))
        .aggregate(
            n=count(),
            n_amount=count("amount"),
            total=sum_("amount"),
            mean=avg("amount"),
            lo=min_("amount"),
            hi=max_("amount"),
            users=count_distinct("user_id"),
        )
    )
    assert stream.columns is not None and stream.columns[3:5] == ("page", "n")
    stream.to(out_ddl(df_out, cols)).run(checkpoint_dir=tmp_path / "b")
    select = "epoch_ms(window_start), epoch_ms(window_end), epoch_ms(wt), page, n, n_amount, "
    select += "total, mean, lo, hi, users"
    got = multiset(read_output(df_out, select))
    assert got == multiset(read_output(sql_out, select))
    expected = (
        expected_con(rows)
        .execute(
            """SELECT t // 60000 * 60000 AS ws, ws + 60000, ws + 59999, page, count(*),
            count(amount), sum(amount), avg(amount), min(amount), max(amount),
            count(DISTINCT user_id) FROM e GROUP BY ws, page"""
        )
        .fetchall()
    )
    assert got == multiset(expected)


def test_user_aggregate_median_tumble(
    tmp_path: Path, source: str, rows: list[dict[str, Any]]
) -> None:
    out = tmp_path / "out"
    cols = "window_start TIMESTAMP(3), window_end TIMESTAMP(3), page STRING, med DOUBLE"
    stream = (
        Stream.from_sql(source)
        .key_by("page")
        .window(WindowSpec.tumble(MINUTE))
        .reduce(Median(), name="med")
        .select("window_start", "window_end", "page", "med")
    )
    stream.to(out_ddl(out, cols)).run(checkpoint_dir=tmp_path / "c", max_rows=97)
    expected = (
        expected_con(rows)
        .execute(
            """SELECT t // 60000 * 60000 AS ws, ws + 60000, page, median(amount)
            FROM e GROUP BY ws, page"""
        )
        .fetchall()
    )
    got = read_output(out, "epoch_ms(window_start), epoch_ms(window_end), page, med")
    assert multiset(got) == multiset(expected)


def test_user_aggregate_top3_hop_merges_slices(
    tmp_path: Path, source: str, rows: list[dict[str, Any]]
) -> None:
    out = tmp_path / "out"
    cols = "window_start TIMESTAMP(3), window_end TIMESTAMP(3), top STRING, n BIGINT"
    stream = (
        Stream.from_sql(source)
        .window(WindowSpec.hop(size_ms=MINUTE, slide_ms=20_000))
        .reduce(Top3())
        .select("window_start", "window_end", "top", "n")
    )
    stream.to(out_ddl(out, cols)).run(checkpoint_dir=tmp_path / "c", max_rows=131)
    expected = (
        expected_con(rows)
        .execute(
            """WITH w AS (SELECT e.*, s.ws FROM e, (SELECT unnest(range(
                  (t // 20000) * 20000 - 40000, (t // 20000) * 20000 + 1, 20000)) AS ws) s)
            SELECT ws, ws + 60000,
              array_to_string(list_transform(
                list_slice(list(amount ORDER BY amount DESC) FILTER (WHERE amount IS NOT NULL),
                1, 3), lambda x: printf('%.2f', x)), ','),
              count(*)
            FROM w GROUP BY ws"""
        )
        .fetchall()
    )
    got = read_output(out, "epoch_ms(window_start), epoch_ms(window_end), top, n")
    assert multiset(got) == multiset(expected)


@pytest.mark.parametrize("kind", ["builtin", "user"])
def test_stop_and_resume_equals_uninterrupted(tmp_path: Path, source: str, kind: str) -> None:
    """Stop after a few batches (a final checkpoint is taken), resume from it: the sink
    holds exactly the rows of an uninterrupted run."""

    def build(out: Path, on_batch: Any = None) -> Any:
        s = Stream.from_sql(source)
        if on_batch is not None:
            s = s.map(on_batch)
        keyed = s.key_by("page").window(WindowSpec.hop(size_ms=MINUTE, slide_ms=30_000))
        if kind == "builtin":
            w = keyed.aggregate(n=count(), total=sum_("amount"))
            w = w.select("window_start", "page", "CAST(n AS DOUBLE) AS n", "total")
        else:
            w = keyed.reduce(Median(), name="med").select(
                "window_start", "page", "med", "med AS med2"
            )
        cols = "window_start TIMESTAMP(3), page STRING, a DOUBLE, b DOUBLE"
        return w.to(out_ddl(out, cols))

    settings = {"execution.checkpointing.interval": "0"}
    build(tmp_path / "full").run(checkpoint_dir=tmp_path / "c1", max_rows=50, settings=settings)

    stop = threading.Event()
    seen = [0]

    def stop_after_five(t: pa.Table) -> pa.Table:
        seen[0] += 1
        if seen[0] == 5:
            stop.set()
        return t

    out = tmp_path / "resumed"
    first = build(out, stop_after_five).run(
        checkpoint_dir=tmp_path / "c2", max_rows=50, settings=settings, stop=stop
    )
    assert 0 < first.pipelines[0].rows_in < 1500
    second = build(out, stop_after_five).run(
        checkpoint_dir=tmp_path / "c2", max_rows=50, settings=settings, from_checkpoint=True
    )
    assert second.pipelines[0].rows_in == 1500  # counters continue from the checkpoint
    select = "epoch_ms(window_start), page, a, b"
    full = multiset(read_output(tmp_path / "full", select))
    assert full and multiset(read_output(out, select)) == full


def test_operator_snapshot_restore_and_lateness() -> None:
    ts = pa.array([1, 5, 12, 15], pa.timestamp("ms"))
    op = UserWindowOperator(WindowSpec.tumble(10), "ts", ["k"], Median(), "med")
    batch = pa.table({"ts": ts, "k": ["a", "a", "b", "b"], "amount": [1.0, 3.0, 10.0, None]})
    assert op.process(batch, None) == 0
    clone = UserWindowOperator(WindowSpec.tumble(10), "ts", ["k"], Median(), "med")
    clone.restore(op.snapshot())
    for o in (op, clone):
        assert o.advance(9).select(["k", "med"]).to_pylist() == [{"k": "a", "med": 2.0}]
        late = pa.table({"ts": pa.array([3], pa.timestamp("ms")), "k": ["a"], "amount": [9.0]})
        assert o.process(late, 9) == 1 and o.late_rows == 1
        assert o.flush().select(["k", "med"]).to_pylist() == [{"k": "b", "med": 10.0}]


def test_bad_input_is_named(tmp_path: Path, source: str) -> None:
    s = Stream.from_sql(source)
    with pytest.raises(UsageError, match="no columns \\['nope'\\]"):
        s.key_by("nope")
    with pytest.raises(UsageError, match="initialize/accumulate/merge/result"):
        s.window(WindowSpec.tumble(MINUTE)).reduce(object())  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="expects 1"):
        s.to(out_ddl(tmp_path / "x", "a STRING"))
    bad = s.filter(lambda t: t["page"]).to(
        out_ddl(tmp_path / "y", "user_id STRING, page STRING, amount DOUBLE, ts TIMESTAMP(3)")
    )
    with pytest.raises(PipelineError, match="must return a boolean array, found string"):
        bad.run(checkpoint_dir=tmp_path / "c")


def test_from_topic_counts_per_window(tmp_path: Path) -> None:
    from fluvial.project import Project

    project = Project.init(tmp_path / "proj")
    ts = np.arange(0, 50_000, 500, dtype=np.int64)  # 100 rows over 50 s
    data = pa.table(
        {
            "k": pa.array([f"k{i % 3}" for i in range(len(ts))]),
            "ts": pa.array(ts).cast(pa.timestamp("ms")),
        }
    )
    with project.open_log() as log:
        log.create_topic("ticks", 1, schema=data.schema)
        log.append("ticks", data, partition=0)
    out = tmp_path / "out"
    cols = "window_start TIMESTAMP(3), k STRING, n BIGINT"
    stream = (
        Stream.from_topic(project, "ticks", "ts", watermark_delay_ms=1000)
        .key_by("k")
        .window(WindowSpec.tumble(10_000))
        .aggregate(n=count())
        .select("window_start", "k", "n")
    )
    stream.to(out_ddl(out, cols)).run(project, name="ticks_job")
    got = read_output(out, "epoch_ms(window_start), k, n")
    expected = {}
    for t, k in zip(ts.tolist(), data["k"].to_pylist(), strict=True):
        expected[(t // 10_000 * 10_000, k)] = expected.get((t // 10_000 * 10_000, k), 0) + 1
    assert multiset(got) == multiset([(*key, n) for key, n in expected.items()])


def test_explain_shows_python_steps(tmp_path: Path) -> None:
    from fluvial.stream.plan.explain import explain

    src = tmp_path / "in.json"
    src.write_text('{"page": "/a", "amount": 1.0, "ts": "2024-01-01 00:00:00.000"}\n')
    flow = (
        Stream.from_sql(
            f"""CREATE TABLE clicks (page STRING, amount DOUBLE, ts TIMESTAMP(3),
            WATERMARK FOR ts AS ts) WITH ('connector' = 'filesystem', 'path' = '{src}',
            'format' = 'json')"""
        )
        .map(lambda t: t)
        .to(
            "CREATE TABLE out (page STRING, amount DOUBLE, ts TIMESTAMP(3)) WITH ('connector' = 'blackhole')"
        )
    )
    text = explain(flow.job("flow"))
    assert "PyStep(name=[" in text and "TableSourceScan(table=[clicks]" in text
