"""Late rows in pipelines: the late-events side output, allowed lateness (updating
results) and per-record watermarks (``pipeline.auto-watermark-interval`` = 0).

Each check has an independent reference: every source row ends in exactly one place
(counted in a window, or in the side-output topic), so the windows must equal DuckDB's
batch GROUP BY over the rows *not* in the side output; with a lateness larger than the
disorder nothing is dropped, so the upserted result must equal DuckDB over all rows; and
per-record lateness follows from the file order alone (a row is late when its window
ended before the watermark of the rows before it), whatever the micro-batch size.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from tests.stream.helpers import (
    collecting,
    expected_con,
    make_rows,
    multiset,
    read_output,
    sink,
    upserted,
    write_json,
)

from fluvial.errors import SqlError
from fluvial.project import Project
from fluvial.stream.job import plan_text
from fluvial.stream.runtime import run_job

DELAY_MS = 2_000
WINDOW_MS = 10_000


def source(path: Path, **options: str) -> str:
    extra = "".join(f", '{k}' = '{v}'" for k, v in options.items())
    return f"""
CREATE TABLE clicks (
  user_id STRING, page STRING, amount DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json'{extra});
"""


TUMBLE_COUNTS = """
INSERT INTO out
SELECT window_start, user_id, COUNT(*) AS n, SUM(amount) AS s
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, user_id;
"""
EXPECTED = """
SELECT time_bucket(INTERVAL 10 SECOND, ts) AS ws, user_id, count(*), sum(amount)
FROM e GROUP BY ALL
"""


def late_topic_rows(project: Project, topic: str) -> list[tuple[str, int]]:
    log = project.open_log()
    try:
        info = log.topic(topic)
        rows = []
        for p, end in info.end_offsets.items():
            t = log.read(topic, p, 0, end)
            rows += list(
                zip(t["user_id"].to_pylist(), t["ts"].cast(pa.int64()).to_pylist(), strict=True)
            )
        return rows
    finally:
        log.close()


def per_record_late(rows: list[dict]) -> list[bool]:
    """Flink with per-record watermarks: late when the row's window ended before the
    watermark of the rows before it (TUMBLE: the only window containing it)."""
    out, high = [], None
    for r in rows:
        t = _ms(r["ts"])
        end = (t // WINDOW_MS + 1) * WINDOW_MS
        out.append(high is not None and end - 1 <= high - DELAY_MS)
        high = t if high is None else max(high, t)
    return out


def _ms(ts: dt.datetime) -> int:
    return calendar.timegm(ts.timetuple()) * 1000 + ts.microsecond // 1000


@pytest.mark.parametrize("per_record", [False, True])
def test_every_row_is_counted_once_or_sent_to_the_side_output(
    tmp_path: Path, project: Project, per_record: bool
) -> None:
    rows = make_rows(1200, seed=11, disorder_ms=9_000)
    path = write_json(tmp_path / "clicks.json", rows)
    out = tmp_path / "out"
    settings = "SET 'pipeline.auto-watermark-interval' = '0';\n" if per_record else ""
    sql = (
        settings
        + source(path, **{"fluvial.late-events.topic": "clicks_late"})
        + sink(out, "ws TIMESTAMP(3), user_id STRING, n BIGINT, s DOUBLE")
        + TUMBLE_COUNTS
    )
    result = run_job(
        plan_text(sql, source="late.sql"), project=project, until_idle=True, max_rows=97
    )
    late = late_topic_rows(project, "clicks_late")
    assert late, "the input must produce late rows"
    assert result.pipelines[0].late_rows == len(late)
    on_time = Counter((r["user_id"], _ms(r["ts"])) for r in rows) - Counter(late)
    assert sum(on_time.values()) == len(rows) - len(late)  # every late row was a source row
    # drop exactly the late multiset from the input
    remaining = Counter((r["user_id"], _ms(r["ts"])) for r in rows) - Counter(late)
    kept = []
    for r in rows:
        k = (r["user_id"], _ms(r["ts"]))
        if remaining[k] > 0:
            remaining[k] -= 1
            kept.append(r)
    want = expected_con(kept).execute(EXPECTED).fetchall()
    assert multiset(read_output(out, "*")) == multiset(want)
    if per_record:  # exactly the rows Flink's per-record watermarks make late
        model = [
            (r["user_id"], _ms(r["ts"]))
            for r, x in zip(rows, per_record_late(rows), strict=True)
            if x
        ]
        assert Counter(late) == Counter(model)


def test_per_record_lateness_does_not_depend_on_the_batch_size(
    tmp_path: Path, project: Project
) -> None:
    rows = make_rows(800, seed=5, disorder_ms=9_000)
    path = write_json(tmp_path / "clicks.json", rows)
    counts = []
    for size in (1_000, 61, 7):
        sql = (
            "SET 'pipeline.auto-watermark-interval' = '0';\n"
            + source(path)
            + "CREATE TABLE out (ws TIMESTAMP(3), u STRING, n BIGINT, s DOUBLE) "
            "WITH ('connector' = 'blackhole');\n" + TUMBLE_COUNTS
        )
        result = run_job(plan_text(sql), until_idle=True, max_rows=size)
        counts.append(result.pipelines[0].late_rows)
    assert counts[0] == sum(per_record_late(rows)) > 0
    assert len(set(counts)) == 1


@pytest.mark.parametrize(
    "window",
    [
        "TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND)",
        "HOP(TABLE clicks, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND)",
        "CUMULATE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '20' SECOND)",
    ],
)
def test_allowed_lateness_updates_fired_windows(tmp_path: Path, window: str) -> None:
    rows = make_rows(900, seed=3, disorder_ms=9_000)
    path = write_json(tmp_path / "clicks.json", rows)
    sql = (
        source(path, **{"fluvial.allowed-lateness": "1 min"})
        + "CREATE TABLE out (ws TIMESTAMP(3), we TIMESTAMP(3), user_id STRING, n BIGINT, "
        "s DOUBLE, PRIMARY KEY (ws, we, user_id) NOT ENFORCED) WITH ('connector' = 'collect');\n"
        + f"""INSERT INTO out SELECT window_start, window_end, user_id, COUNT(*), SUM(amount)
        FROM TABLE({window}) GROUP BY window_start, window_end, user_id;"""
    )
    with collecting() as committed:
        result = run_job(plan_text(sql), until_idle=True, max_rows=53)
        tables = committed["out"]
    assert result.pipelines[0].late_rows == 0
    ops = Counter(x for t in tables for x in t["_op"].to_pylist())
    assert ops[2] > 0 and ops[1] == ops[2], "late rows must update fired windows"
    final = upserted(tables, ["ws", "we", "user_id"])
    want = _batch_windows(expected_con(rows), window)
    assert multiset(list(final.values())) == multiset(want)


def _batch_windows(con, window: str) -> list[tuple]:
    """The same windows computed in batch by DuckDB with explicit window arithmetic."""
    if window.startswith("TUMBLE"):
        windows = "SELECT t // 10000 * 10000 AS s, t // 10000 * 10000 + 10000 AS e_, * FROM e"
    elif window.startswith("HOP"):
        windows = (
            "SELECT s, s + 10000 AS e_, e.* FROM e, "
            "LATERAL (SELECT (t // 5000 - k) * 5000 AS s FROM range(2) r(k))"
        )
    else:
        windows = (
            "SELECT t // 20000 * 20000 AS s, t // 20000 * 20000 + k * 5000 AS e_, e.* FROM e, "
            "range(1, 5) r(k) WHERE t // 20000 * 20000 + k * 5000 > t"
        )
    return con.execute(
        f"""SELECT make_timestamp(s * 1000), make_timestamp(e_ * 1000), user_id,
        count(*), sum(amount) FROM ({windows}) GROUP BY ALL"""
    ).fetchall()


def test_an_append_only_sink_refuses_updates(tmp_path: Path) -> None:
    path = write_json(tmp_path / "clicks.json", make_rows(10))
    sql = (
        source(path, **{"fluvial.allowed-lateness": "1 min"})
        + sink(tmp_path / "out", "ws TIMESTAMP(3), user_id STRING, n BIGINT, s DOUBLE")
        + TUMBLE_COUNTS
    )
    with pytest.raises(SqlError, match="doesn't support consuming update changes"):
        plan_text(sql)


def test_lateness_options_need_a_watermark(tmp_path: Path) -> None:
    sql = f"""
    CREATE TABLE c (ts TIMESTAMP(3)) WITH ('connector' = 'filesystem', 'path' = '{tmp_path}',
      'format' = 'json', 'fluvial.allowed-lateness' = '1 min');
    CREATE TABLE o (ts TIMESTAMP(3)) WITH ('connector' = 'blackhole');
    INSERT INTO o SELECT ts FROM c;
    """
    with pytest.raises(SqlError, match="needs a WATERMARK"):
        plan_text(sql)
