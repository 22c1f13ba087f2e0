"""End-to-end pipelines: stateless SQL, views and subqueries, late rows, the events topic,
and planning errors — each checked against an independent expectation."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from tests.stream.helpers import write_json

from fluvial.errors import SqlError, UnsupportedSqlError
from fluvial.events import Ingestor
from fluvial.project import Project
from fluvial.stream.job import plan_text
from fluvial.stream.runtime import JobResult, run_job

BASE = dt.datetime(2026, 11, 24, 10, 0, 0)
PAGES = ["/home", "/p/1", "/p/2", "/cart"]

SOURCE = """CREATE TABLE clicks (
  user_id STRING,
  page STRING,
  amount DOUBLE,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');
"""


def make_rows(n: int, seed: int, start_ms: int = 0, step_ms: int = 250) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "user_id": f"u{rng.randrange(8)}",
            "page": rng.choice(PAGES),
            "amount": None if rng.random() < 0.1 else round(rng.uniform(0, 100), 2),
            "ts": BASE + dt.timedelta(milliseconds=start_ms + i * step_ms - rng.randint(0, 3000)),
        }
        for i in range(n)
    ]


def con_with(rows: list[dict[str, Any]]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register(
        "e",
        pa.table(
            {
                "user_id": [r["user_id"] for r in rows],
                "page": [r["page"] for r in rows],
                "amount": pa.array([r["amount"] for r in rows], pa.float64()),
                "ts": pa.array([r["ts"] for r in rows], pa.timestamp("ms")),
            }
        ),
    )
    return con


def read_output(path: Path, select: str = "*") -> list[tuple[Any, ...]]:
    files = sorted(str(p) for p in path.rglob("*.parquet"))
    if not files:
        return []
    return duckdb.connect().execute(f"SELECT {select} FROM read_parquet({files!r})").fetchall()


def multiset(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    def norm(v: Any) -> Any:
        return round(v, 6) if isinstance(v, float) else v

    return sorted((tuple(norm(v) for v in r) for r in rows), key=repr)


def run(tmp_path: Path, sql: str, **kwargs: Any) -> JobResult:
    job = plan_text(sql, source="test.sql")
    kwargs.setdefault("checkpoint_dir", tmp_path / "checkpoints")
    return run_job(job, until_idle=True, **kwargs)


def parquet_sink(path: Path, columns: str) -> str:
    return (
        f"CREATE TABLE out ({columns}) WITH ('connector' = 'filesystem', "
        f"'path' = '{path}', 'format' = 'parquet');\n"
    )


# --------------------------------------------------------------------------- stateless


def test_filter_and_projection_with_case_cast_and_strings(tmp_path: Path) -> None:
    rows = make_rows(400, seed=1)
    src = write_json(tmp_path / "in.json", rows)
    out = tmp_path / "out"
    run(
        tmp_path,
        SOURCE.format(path=src)
        + parquet_sink(
            out,
            "user_id STRING, page_u STRING, size STRING, cents BIGINT, tag STRING, ts TIMESTAMP(3)",
        )
        + """INSERT INTO out
        SELECT user_id, UPPER(page) AS page_u,
               CASE WHEN amount > 50 THEN 'big' WHEN amount IS NULL THEN 'none' ELSE 'small' END,
               CAST(amount * 100 AS BIGINT), CONCAT(user_id, '@', SUBSTRING(page, 2)), ts
        FROM clicks
        WHERE page <> '/home' AND (amount IS NULL OR amount < 90);""",
    )
    # Flink's CAST(DOUBLE AS INT) truncates toward zero (DuckDB's CAST rounds)
    expected = (
        con_with(rows)
        .execute(
            """SELECT user_id, upper(page),
                  CASE WHEN amount > 50 THEN 'big' WHEN amount IS NULL THEN 'none' ELSE 'small' END,
                  CAST(trunc(amount * 100) AS BIGINT), user_id || '@' || substring(page, 2), ts
            FROM e WHERE page <> '/home' AND (amount IS NULL OR amount < 90)"""
        )
        .fetchall()
    )
    got = read_output(out)
    assert len(got) > 100
    assert multiset(got) == multiset(expected)


def test_cast_double_to_int_truncates_like_flink(tmp_path: Path) -> None:
    rows = make_rows(200, seed=8)
    src = write_json(tmp_path / "in.json", rows)
    out = tmp_path / "out"
    run(
        tmp_path,
        SOURCE.format(path=src)
        + parquet_sink(out, "amount DOUBLE, amount_i INT")
        + "INSERT INTO out SELECT amount, CAST(amount AS INT) FROM clicks;",
    )
    # Flink's CAST(DOUBLE AS INT) truncates toward zero (Java's narrowing conversion)
    expected = con_with(rows).execute("SELECT amount, CAST(trunc(amount) AS INTEGER) FROM e")
    assert multiset(read_output(out)) == multiset(expected.fetchall())


def test_view_and_subquery_in_from(tmp_path: Path) -> None:
    rows = make_rows(400, seed=2)
    src = write_json(tmp_path / "in.json", rows)
    out = tmp_path / "out"
    run(
        tmp_path,
        SOURCE.format(path=src)
        + parquet_sink(out, "page STRING, doubled DOUBLE, ts TIMESTAMP(3)")
        + """CREATE TEMPORARY VIEW big_clicks AS
          SELECT c.user_id, c.page, c.amount, c.ts FROM clicks AS c WHERE c.amount > 20;
        INSERT INTO out
        SELECT s.page, s.doubled, s.ts
        FROM (SELECT page, amount * 2 AS doubled, ts FROM big_clicks WHERE page LIKE '/p/%') AS s
        WHERE s.doubled < 150;""",
    )
    expected = (
        con_with(rows)
        .execute(
            """SELECT page, amount * 2, ts FROM e
            WHERE amount > 20 AND page LIKE '/p/%' AND amount * 2 < 150"""
        )
        .fetchall()
    )
    assert multiset(read_output(out)) == multiset(expected)


def test_window_over_a_view(tmp_path: Path) -> None:
    rows = make_rows(600, seed=3)
    src = write_json(tmp_path / "in.json", rows)
    out = tmp_path / "out"
    run(
        tmp_path,
        SOURCE.format(path=src)
        + parquet_sink(out, "ws TIMESTAMP(3), page STRING, n BIGINT, total DOUBLE")
        + """CREATE VIEW paying AS SELECT page, amount, ts FROM clicks WHERE amount > 20;
        INSERT INTO out
        SELECT window_start, page, COUNT(*), SUM(amount)
        FROM TABLE(TUMBLE(TABLE paying, DESCRIPTOR(ts), INTERVAL '30' SECOND))
        GROUP BY window_start, window_end, page;""",
    )
    expected = (
        con_with(rows)
        .execute(
            """SELECT epoch_ms(ts) // 30000 * 30000 AS ws, page, count(*), sum(amount)
            FROM e WHERE amount > 20 GROUP BY ws, page"""
        )
        .fetchall()
    )
    assert multiset(read_output(out, "epoch_ms(ws), page, n, total")) == multiset(expected)


# --------------------------------------------------------------------------- late rows


def test_rows_beyond_the_watermark_are_dropped_and_counted(tmp_path: Path) -> None:
    on_time = make_rows(800, seed=4)  # ~3.3 minutes, disorder < the 5 s delay
    late = make_rows(25, seed=5, start_ms=0, step_ms=1000)  # the first half minute, again
    late = [{**r, "ts": max(r["ts"], BASE)} for r in late]
    src = write_json(tmp_path / "in.json", on_time + late)
    out = tmp_path / "out"
    result = run(
        tmp_path,
        SOURCE.format(path=src)
        + parquet_sink(out, "ws TIMESTAMP(3), page STRING, n BIGINT")
        + """INSERT INTO out
        SELECT window_start, page, COUNT(*)
        FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
        GROUP BY window_start, window_end, page;""",
        max_rows=100,  # several micro-batches: the late rows arrive after their window fired
    )
    stats = result.pipelines[0]
    assert stats.rows_in == len(on_time) + len(late)
    assert stats.late_rows == len(late)
    expected = (
        con_with(on_time)
        .execute(
            "SELECT epoch_ms(ts) // 60000 * 60000 AS ws, page, count(*) FROM e GROUP BY ws, page"
        )
        .fetchall()
    )
    assert multiset(read_output(out, "epoch_ms(ws), page, n")) == multiset(expected)


def test_window_without_keys_counts_everything(tmp_path: Path) -> None:
    rows = make_rows(300, seed=6)
    src = write_json(tmp_path / "in.json", rows)
    out = tmp_path / "out"
    run(
        tmp_path,
        SOURCE.format(path=src)
        + parquet_sink(out, "ws TIMESTAMP(3), n BIGINT")
        + """INSERT INTO out
        SELECT window_start, COUNT(*)
        FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
        GROUP BY window_start, window_end;""",
    )
    expected = (
        con_with(rows)
        .execute("SELECT epoch_ms(ts) // 60000 * 60000 AS ws, count(*) FROM e GROUP BY ws")
        .fetchall()
    )
    assert multiset(read_output(out, "epoch_ms(ws), n")) == multiset(expected)


# --------------------------------------------------------------------------- events topic


def page_view(at: dt.datetime, anon: str, url: str) -> bytes:
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "page_view",
        "event_time": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
        "sent_at": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
        "app_id": "shop",
        "user_id": None,
        "anonymous_id": anon,
        "session_id": "s-1",
        "page": {"url": url, "referrer": None, "title": "t"},
        "context": {"user_agent": "Mozilla/5.0", "ip": "203.0.113.9", "locale": "en-GB"},
        "properties": {},
    }
    return json.dumps(event).encode()


def test_page_views_per_minute_from_the_events_topic(project: Project) -> None:
    rng = random.Random(9)
    urls = ["https://shop.example/", "https://shop.example/p/1", "https://shop.example/cart"]
    views = [
        (
            BASE + dt.timedelta(milliseconds=i * 400 + rng.randint(0, 2000)),
            f"a{rng.randrange(20)}",
            rng.choice(urls),
        )
        for i in range(600)
    ]
    received = int((BASE + dt.timedelta(minutes=5)).replace(tzinfo=dt.UTC).timestamp() * 1000)
    with Ingestor.for_project(project) as ingestor:
        for chunk in range(0, len(views), 100):
            result = ingestor.ingest(
                [page_view(*v) for v in views[chunk : chunk + 100]], received_at_ms=received
            )
            assert result.rejected == 0
    out = project.root / "out"
    job = plan_text(
        f"""CREATE TABLE events (
          event_type STRING,
          event_time TIMESTAMP_LTZ(3),
          anonymous_id STRING,
          page ROW<url STRING, referrer STRING, title STRING>,
          WATERMARK FOR event_time AS event_time - INTERVAL '5' SECOND
        ) WITH ('connector' = 'fluvial', 'topic' = 'events');
        CREATE TABLE out (ws TIMESTAMP(3), url STRING, views BIGINT, visitors BIGINT)
        WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'parquet');
        INSERT INTO out
        SELECT TUMBLE_START(event_time, INTERVAL '1' MINUTE), url, COUNT(*),
               COUNT(DISTINCT anonymous_id)
        FROM (SELECT page.url AS url, anonymous_id, event_time FROM events
              WHERE event_type = 'page_view') AS v
        GROUP BY TUMBLE(event_time, INTERVAL '1' MINUTE), url;""",
        source="clickstream.sql",
    )
    result = run_job(job, project=project, until_idle=True)
    assert result.pipelines[0].rows_in == len(views)
    expected: dict[tuple[int, str], set[str]] = {}
    counts: dict[tuple[int, str], int] = {}
    for at, anon, url in views:
        ms = int(at.replace(tzinfo=dt.UTC).timestamp() * 1000) // 60_000 * 60_000
        expected.setdefault((ms, url), set()).add(anon)
        counts[(ms, url)] = counts.get((ms, url), 0) + 1
    want = sorted((ms, url, counts[(ms, url)], len(a)) for (ms, url), a in expected.items())
    assert sorted(read_output(out, "epoch_ms(ws), url, views, visitors")) == want
    # a checkpoint was written under the project's data directory
    assert (project.data_dir / "stream" / "clickstream" / "checkpoints").is_dir()


# --------------------------------------------------------------------------- errors


ERR_SOURCE = """CREATE TABLE clicks (
  user_id STRING,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'x.json', 'format' = 'json');
CREATE TABLE out (a STRING, b BIGINT) WITH ('connector' = 'blackhole');
"""


def where(exc: SqlError, text: str, needle: str) -> None:
    """The error points at the first occurrence of *needle* after the DDL."""
    offset = text.index(needle, len(ERR_SOURCE))
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    assert (exc.line, exc.column) == (line, column), str(exc)


@pytest.mark.parametrize(
    ("query", "needle", "message"),
    [
        ("INSERT INTO out SELECT user_id, 1 FROM clickz;", "clickz", "unknown table 'clickz'"),
        ("INSERT INTO out SELECT usr_id, 1 FROM clicks;", "usr_id", "unknown column 'usr_id'"),
        (
            "INSERT INTO out\nSELECT a, MAX(c)\n"
            "FROM (SELECT user_id AS a, COUNT(*) AS c FROM clicks GROUP BY user_id)\nGROUP BY a;",
            "a, MAX",
            "MAX in a GROUP BY over an updating input",
        ),
    ],
)
def test_errors_point_at_line_and_column(query: str, needle: str, message: str) -> None:
    text = ERR_SOURCE + query
    with pytest.raises(SqlError) as info:
        plan_text(text, source="bad.sql")
    assert message in str(info.value)
    assert str(info.value).startswith("bad.sql:")
    if needle != "GROUP BY":
        where(info.value, text, needle)
    else:
        assert (
            isinstance(info.value, UnsupportedSqlError)
            and info.value.line == text.count("\n", 0, text.index("GROUP BY")) + 1
        )


@pytest.mark.parametrize(
    ("query", "what"),
    [
        (
            "INSERT INTO out SELECT a.user_id, 1 FROM clicks a LEFT JOIN clicks b "
            "ON a.user_id = b.user_id AND a.ts BETWEEN b.ts - INTERVAL '1' SECOND AND b.ts;",
            "LEFT interval join",
        ),
        (
            "INSERT INTO out SELECT user_id, COUNT(*) OVER (PARTITION BY user_id ORDER BY ts) FROM clicks;",
            "OVER",
        ),
    ],
)
def test_unsupported_shapes_are_refused_by_name(query: str, what: str) -> None:
    with pytest.raises(UnsupportedSqlError, match=f"{what}.*not supported"):
        plan_text(ERR_SOURCE + query, source="bad.sql")


def test_column_count_mismatch_names_both_sides() -> None:
    with pytest.raises(
        SqlError, match=r"produces 1 columns \(user_id\) but the sink expects 2 \(a, b\)"
    ):
        plan_text(ERR_SOURCE + "INSERT INTO out SELECT user_id FROM clicks;", source="bad.sql")


def test_computed_column_reads_a_row_field(tmp_path: Path) -> None:
    """Nexmark's ``dateTime AS CASE … person.dateTime …``: a ROW field, not a table column."""
    src = tmp_path / "in.json"
    src.write_text(
        '{"kind": 0, "p": {"id": 1, "at": "2024-01-01 00:00:01.000"}, "b": null}\n'
        '{"kind": 2, "p": null, "b": {"id": 7, "at": "2024-01-01 00:00:02.500"}}\n'
    )
    out = tmp_path / "out"
    run(
        tmp_path,
        f"""
        CREATE TABLE e (
          kind INT,
          p ROW<id BIGINT, at TIMESTAMP(3)>,
          b ROW<id BIGINT, at TIMESTAMP(3)>,
          at AS CASE WHEN kind = 0 THEN p.at ELSE b.at END,
          WATERMARK FOR at AS at - INTERVAL '1' SECOND
        ) WITH ('connector' = 'filesystem', 'path' = '{src}', 'format' = 'json');
        """
        + parquet_sink(out, "kind INT, id BIGINT, at TIMESTAMP(3)")
        + "INSERT INTO out SELECT kind, COALESCE(p.id, b.id), at FROM e;",
    )
    got = sorted(read_output(out, 'kind, id, epoch_ms("at")'))
    assert got == [(0, 1, 1_704_067_201_000), (2, 7, 1_704_067_202_500)]


def test_views_and_projections_fuse_into_one_query(tmp_path: Path) -> None:
    """A view, a subquery and a projection run as one DuckDB query per micro-batch."""
    from fluvial.stream.plan.nodes import Calc, WindowAgg

    rows = make_rows(50, seed=9)
    src = write_json(tmp_path / "in.json", rows)
    text = (
        SOURCE.format(path=src)
        + parquet_sink(tmp_path / "out", "page STRING, amount DOUBLE")
        + """CREATE VIEW big AS SELECT page, amount, ts FROM clicks WHERE amount > 10;
        INSERT INTO out SELECT UPPER(page), amount * 2 FROM (SELECT * FROM big WHERE page <> 'x');"""
    )
    (pipeline,) = plan_text(text).pipelines
    assert len(pipeline.steps) == 1 and isinstance(pipeline.steps[0], Calc)
    windowed = (
        SOURCE.format(path=src)
        + parquet_sink(tmp_path / "w", "ws TIMESTAMP(3), n BIGINT")
        + """CREATE VIEW big AS SELECT page, amount, ts FROM clicks WHERE amount > 10;
        INSERT INTO out SELECT window_start, COUNT(*) FROM
        TABLE(TUMBLE(TABLE big, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;"""
    )
    (pipeline,) = plan_text(windowed).pipelines
    assert [type(s) for s in pipeline.steps] == [WindowAgg]  # the view fused into its pre step
    run(tmp_path, windowed)
    expected = (
        con_with(rows)
        .execute(
            "SELECT epoch_ms(ts) // 60000 * 60000, count(*) FROM e WHERE amount > 10 GROUP BY 1"
        )
        .fetchall()
    )
    assert multiset(read_output(tmp_path / "w", "epoch_ms(ws), n")) == multiset(expected)


def test_parallelism_default_sets_the_threads_of_a_step(tmp_path: Path) -> None:
    from fluvial.errors import PipelineError
    from fluvial.stream.runtime import _connect, _parallelism

    assert _connect(1).execute("SELECT current_setting('threads')").fetchone() == (1,)
    rows = make_rows(20, seed=2)
    text = (
        "SET 'parallelism.default' = '1';\n"
        + SOURCE.format(path=write_json(tmp_path / "in.json", rows))
        + parquet_sink(tmp_path / "out", "page STRING")
        + "INSERT INTO out SELECT page FROM clicks;"
    )
    assert _parallelism(plan_text(text)) == 1
    run(tmp_path, text)
    assert len(read_output(tmp_path / "out")) == 20
    with pytest.raises(PipelineError, match="positive integer"):
        _parallelism(plan_text(text.replace("'1'", "'many'", 1)))


def test_fluvial_toml_stream_settings_are_defaults_that_set_overrides(tmp_path: Path) -> None:
    from fluvial.config import load_settings

    (tmp_path / "fluvial.toml").write_text(
        '[stream]\nparallelism = 1\nidle_timeout = "2 s"\ncheckpoint_interval = "1 min"\n'
    )
    defaults = load_settings(tmp_path, env={}).stream.flink_options()
    assert defaults == {
        "execution.checkpointing.interval": "1 min",
        "table.exec.source.idle-timeout": "2 s",
        "parallelism.default": "1",
        "table.exec.mini-batch.size": "65536",
    }
    text = (
        "SET 'execution.checkpointing.interval' = '5 s';\n"
        + SOURCE.format(path=write_json(tmp_path / "in.json", make_rows(5, seed=1)))
        + parquet_sink(tmp_path / "out", "page STRING")
        + "INSERT INTO out SELECT page FROM clicks;"
    )
    job = plan_text(text, defaults=defaults)
    assert job.settings["execution.checkpointing.interval"] == "5 s"  # the file's SET wins
    assert job.settings["parallelism.default"] == "1"
    assert job.pipelines[0].scan.idle_timeout_ms == 2_000  # used while planning
    assert plan_text(text).pipelines[0].scan.idle_timeout_ms is None
