"""Drain (Flink's ``stop --drain``): a job resumed from its checkpoint with ``until_idle``
fires every open window exactly once, and a later resume counts new events as usual."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.project import Project
from fluvial.stream.job import load_job
from fluvial.stream.runtime import PipelineStats, run_job

BASE_MS = int(dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC).timestamp() * 1000)
INPUT = pa.schema([("page", pa.string()), ("ts", pa.timestamp("ms"))])
SQL = """SET 'execution.checkpointing.interval' = '100 ms';
CREATE TABLE clicks (page STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH ('connector' = 'fluvial', 'topic' = 'clicks');
CREATE TABLE counts (window_start TIMESTAMP(3), page STRING, n BIGINT)
WITH ('connector' = 'fluvial', 'topic' = 'counts');
INSERT INTO counts SELECT window_start, page, COUNT(*)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, page;
"""


def clicks(start_s: int, end_s: int) -> pa.Table:
    """One click every 250 ms on two pages, in order (none is late)."""
    ms = list(range(BASE_MS + start_s * 1000, BASE_MS + end_s * 1000, 250))
    pages = [f"/p/{i % 2}" for i in range(len(ms))]
    return pa.table({"page": pages, "ts": pa.array(ms, pa.timestamp("ms"))}, schema=INPUT)


def test_drain_fires_every_window_once_and_a_resume_goes_on(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "p")
    (project.root / "job.sql").write_text(SQL, encoding="utf-8")
    job = load_job(project.root / "job.sql")
    first, second = clicks(0, 25), clicks(31, 57)
    with project.open_log() as log:
        log.create_topic("clicks", 1, schema=INPUT)
        log.append("clicks", first)
    # the worker's run, stopped gracefully once it read everything: the watermark is at
    # 22.75 s, so [0,10) and [10,20) fired and [20,30) is still open
    stop = threading.Event()

    def read_all(stats: list[PipelineStats]) -> None:
        if sum(s.rows_in for s in stats) >= first.num_rows:
            stop.set()

    run_job(job, project=project, stop=stop, on_progress=read_all, progress_interval=0.0)
    assert _counts(project) == _expected(first.filter(pc.less(first["ts"], first["ts"][80])))
    # the drain: resumes, reads to the end, fires every open window ([0,10) … [20,30))
    drained = run_job(job, project=project, from_checkpoint=True, until_idle=True)
    assert drained.pipelines[0].late_rows == 0
    assert _counts(project) == _expected(first)
    # new events after the drain: a later run resumes after the drained checkpoint, counts
    # them (not late against the drain's +infinity) and never re-emits a drained window
    with project.open_log() as log:
        log.append("clicks", second)
    again = run_job(job, project=project, from_checkpoint=True, until_idle=True)
    assert again.pipelines[0].late_rows == 0
    assert _counts(project) == _expected(pa.concat_tables([first, second]))


def _counts(project: Project) -> Counter[tuple[object, ...]]:
    with project.open_log() as log:
        if "counts" not in {t.name for t in log.list_topics()}:
            return Counter()
        table = log.snapshot("counts")
    return Counter(zip(*(table[c].to_pylist() for c in ("window_start", "page", "n")), strict=True))


def _expected(events: pa.Table) -> Counter[tuple[object, ...]]:
    db = duckdb.connect()
    db.register("events", events)
    rows = db.execute(
        "SELECT time_bucket(INTERVAL 10 SECOND, ts), page, count(*) FROM events GROUP BY ALL"
    ).fetchall()
    return Counter(rows)
