"""Processing-time windows (``PROCTIME()``): they fire by the wall clock, and windows still
open when a bounded input ends are not emitted (as Flink's processing-time timers)."""

from __future__ import annotations

from pathlib import Path

from tests.stream.helpers import make_rows, read_output, sink, write_json

from fluvial.stream.job import plan_text
from fluvial.stream.runtime import run_job

SQL = """
CREATE TABLE clicks (user_id STRING, page STRING, amount DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');
CREATE VIEW timed AS SELECT *, PROCTIME() AS p_time FROM clicks;
"""
QUERY = """INSERT INTO out SELECT user_id, COUNT(*), window_start, window_end
FROM TABLE(TUMBLE(TABLE timed, DESCRIPTOR(p_time), INTERVAL '1' HOUR))
GROUP BY user_id, window_start, window_end;"""


def test_windows_open_at_the_end_of_input_are_not_emitted(tmp_path: Path) -> None:
    path = write_json(tmp_path / "clicks.json", make_rows(300))
    out = tmp_path / "out"
    sql = SQL.format(path=path) + sink(out, "u STRING, n BIGINT, s TIMESTAMP(3), e TIMESTAMP(3)")
    result = run_job(plan_text(sql + QUERY), until_idle=True)
    assert result.pipelines[0].rows_in == 300
    assert not list(out.rglob("*.parquet")) or read_output(out, "*") == []
