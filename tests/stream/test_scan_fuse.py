"""The scan-fusion plan pass: computed columns run inside the first step's query, and the
watermark still sees every row, including the ones the query filters out."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from fluvial.stream.job import plan_text
from fluvial.stream.plan.nodes import Calc, Scan, WindowAgg
from fluvial.stream.plan.scan_fuse import fuse_scan_steps
from fluvial.stream.runtime import run_job
from fluvial.stream.sql.ast import CreateTable

SOURCE = """CREATE TABLE e (
  kind INT,
  p ROW<id BIGINT, at TIMESTAMP(3)>,
  b ROW<id BIGINT, at TIMESTAMP(3)>,
  at AS CASE WHEN kind = 0 THEN p.at ELSE b.at END,
  WATERMARK FOR at AS at - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');
"""


def _sink(path: Path, columns: str) -> str:
    return (
        f"CREATE TABLE out ({columns}) WITH ('connector' = 'filesystem', "
        f"'path' = '{path}', 'format' = 'parquet');\n"
    )


def _line(kind: int, at: str) -> str:
    row = f'{{"id": 1, "at": "2024-01-01 {at}"}}'
    return (
        f'{{"kind": {kind}, "p": {row if kind == 0 else "null"}, "b": {row if kind else "null"}}}\n'
    )


def test_computed_columns_fuse_into_the_first_step_and_the_watermark_query(
    tmp_path: Path,
) -> None:
    text = SOURCE.format(path=tmp_path) + _sink(tmp_path / "o", "id BIGINT, at TIMESTAMP(3)")
    (p,) = plan_text(text + "INSERT INTO out SELECT b.id, at FROM e WHERE kind = 2;").pipelines
    assert p.scan.computed_sql is None  # no query of its own per micro-batch
    (step,) = p.steps
    assert isinstance(step, Calc) and "CASE WHEN" in step.sql and "kind = 2" in step.sql
    assert p.scan.watermark_sql is not None and "CASE WHEN" in p.scan.watermark_sql
    assert "kind = 2" not in p.scan.watermark_sql  # the filter must not hide rows from it
    windowed = text + (
        "INSERT INTO out SELECT COUNT(*), window_start FROM TABLE(TUMBLE(TABLE e, "
        "DESCRIPTOR(at), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;"
    )
    (w,) = plan_text(windowed).pipelines
    assert w.scan.computed_sql is None
    assert isinstance(w.steps[0], WindowAgg) and "CASE WHEN" in w.steps[0].pre.sql


def test_the_watermark_query_equals_max_rowtime_over_all_rows() -> None:
    """Run the generated queries on a batch: the candidate is the max over every row."""
    text = SOURCE.format(path="/nonexistent") + _sink(Path("/o"), "id BIGINT")
    (p,) = plan_text(text + "INSERT INTO out SELECT b.id FROM e WHERE kind = 2;").pipelines
    row = pa.struct([("id", pa.int64()), ("at", pa.timestamp("ms"))])
    batch = pa.table(
        {
            "kind": pa.array([2, 0, 2], pa.int32()),
            "p": pa.array([None, {"id": 5, "at": 9_000}, None], row),
            "b": pa.array([{"id": 1, "at": 1_000}, None, {"id": 2, "at": 2_000}], row),
        }
    )
    con = duckdb.connect()
    con.register("batch", batch)
    (wm,) = con.execute(p.scan.watermark_sql).fetchone()  # type: ignore[misc]
    assert int(pa.scalar(wm, pa.timestamp("us")).cast(pa.int64()).as_py()) == 9_000 * 1000
    assert sorted(con.execute(p.steps[0].sql).fetchall()) == [(1,), (2,)]  # type: ignore[union-attr]


def test_rows_the_query_filters_out_still_advance_the_watermark(tmp_path: Path) -> None:
    src = tmp_path / "in.json"
    # batch 1: a kept row at 00:00:01 and a filtered-out person row at 00:10:00 (watermark
    # 00:09:59 fires [00:00, 00:01)); batch 2: a kept row at 00:00:02, late for that window
    src.write_text(_line(2, "00:00:01.000") + _line(0, "00:10:00.000") + _line(2, "00:00:02.000"))
    out = tmp_path / "out"
    text = (
        SOURCE.format(path=src)
        + _sink(out, "n BIGINT, ws TIMESTAMP(3)")
        + "CREATE VIEW bids AS SELECT at FROM e WHERE kind = 2;\n"
        "INSERT INTO out SELECT COUNT(*), window_start FROM TABLE(TUMBLE(TABLE bids, "
        "DESCRIPTOR(at), INTERVAL '1' MINUTE)) "
        "GROUP BY window_start, window_end;"
    )
    job = plan_text(text, source="t.sql")
    result = run_job(job, until_idle=True, checkpoint_dir=tmp_path / "cp", max_rows=2)
    assert result.pipelines[0].late_rows == 1
    files = sorted(str(f) for f in out.rglob("*.parquet"))
    got = duckdb.connect().execute(f"SELECT n, epoch_ms(ws) FROM read_parquet({files!r})")
    assert got.fetchall() == [(1, 1_704_067_200_000)]


def test_a_volatile_computed_column_is_not_evaluated_twice() -> None:
    scan = Scan(
        CreateTable("t", (), {}),
        ("a", "ts"),
        computed_sql="SELECT a, now() AS ts FROM batch",
        rowtime="ts",
        watermark_delay_ms=0,
    )
    steps = (Calc("SELECT a FROM batch", ("a",)),)
    assert fuse_scan_steps(scan, steps) == (scan, steps)
