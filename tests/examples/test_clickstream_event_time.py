"""The clickstream example's stream pipelines on the demo's traffic: event time and outputs.

``fluvial demo`` posts three days of simulated shop traffic to the collector within
seconds; some devices' clocks are off and the simulated period runs past the wall clock,
so some events carry a device ``event_time`` hours after they were received.
Here that traffic (the demo's own :func:`~fluvial.cli.demo.demo_traffic`) is ingested as
the collector would receive it at the demo's rate, and every example pipeline runs over
it in small poll rounds, as when events trickle in live:

- no pipeline's watermark ever runs ahead of the newest ``received_at`` by more than the
  collector's future tolerance (the pipelines' event time is the skew-corrected
  ``derived_time``, not the device clock);
- few events are late (the generator's late fraction, not a watermark in the future);
- the store tables the live dashboard reads equal DuckDB recomputations from the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from fluvial.cli.demo import demo_traffic
from fluvial.events.ingest import Ingestor
from fluvial.examples import example_pipelines
from fluvial.generate import clickstream_batches
from fluvial.project import Project
from fluvial.serve.store import open_store
from fluvial.stream.runtime import MAX_WATERMARK, MIN_WATERMARK, PipelineStats, run_job
from fluvial.stream.versions import resolve_job

NOW_MS = 1_795_000_000_000  # the wall clock when the demo starts posting
DAY_MS = 86_400_000
EVENTS = 6_000
RATE = 2_000  # events per second, the demo's default
BATCH = 100  # events per request, as the demo posts them
PIPELINES = sorted(example_pipelines("clickstream"))
#: each live table and its reference over the log's events (``derived_time`` as TIMESTAMP)
REFERENCES = {
    "funnel_per_minute": """
        SELECT time_bucket(INTERVAL 1 MINUTE, t) AS window_start, event_type,
               count(*) AS events, count(DISTINCT anonymous_id) AS visitors
        FROM ev WHERE event_type IN ('page_view', 'add_to_cart', 'checkout', 'purchase')
        GROUP BY ALL""",
    "revenue_per_minute": """
        SELECT time_bucket(INTERVAL 1 MINUTE, t) AS window_start, count(*) AS orders,
               sum(json_extract(properties, '$.revenue')::DOUBLE) AS revenue
        FROM ev WHERE event_type = 'purchase' GROUP BY ALL""",
    "active_users": """
        SELECT w.window_start, w.window_start + INTERVAL 5 MINUTE AS window_end,
               count(DISTINCT coalesce(user_id, anonymous_id)) AS active_users,
               count(DISTINCT user_id) AS signed_in, count(*) AS events
        FROM ev, (SELECT unnest(range(0, 5)) AS k) AS hops,
             LATERAL (SELECT time_bucket(INTERVAL 1 MINUTE, t) - k * INTERVAL 1 MINUTE
                      AS window_start) AS w
        GROUP BY ALL""",
}
#: the pipeline that writes each live table
WRITERS = {
    "funnel_per_minute": "funnel_per_minute",
    "revenue_per_minute": "revenue_per_minute",
    "active_users": "active_users_hop",
}


@dataclass(frozen=True)
class Demo:
    project: Project
    events: pa.Table
    tolerance_ms: int


def _ingest_demo_traffic(root: Path) -> Demo:
    """A clickstream project holding the demo's traffic, received as the demo posts it."""
    Project.init(root, example="clickstream")
    project = Project(root, env={"FLUVIAL_LOG__FSYNC": "never"})
    (project.data_dir / "out").mkdir(parents=True, exist_ok=True)
    config = demo_traffic(EVENTS, start_ms=NOW_MS - 3 * DAY_MS)
    lines = [line for batch in clickstream_batches(config) for line in batch.lines()]
    with Ingestor.for_project(project) as ingestor:
        for start in range(0, len(lines), BATCH):
            ingestor.ingest(
                lines[start : start + BATCH],
                received_at_ms=NOW_MS + start * 1000 // RATE,
                app_id="demo",
                source="test",
            )
    with project.open_log() as log:
        events = log.snapshot(project.settings.log.events_topic)
    tolerance = round(project.settings.collector.future_tolerance_seconds * 1000)
    return Demo(project, events, tolerance)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return _ingest_demo_traffic(tmp_path_factory.mktemp("demo-time") / "shop")


@pytest.fixture(scope="module")
def at_once(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The same traffic in another project, for pipelines that read it in one round."""
    return _ingest_demo_traffic(tmp_path_factory.mktemp("demo-once") / "shop")


def _ms(column: pa.ChunkedArray) -> list[int]:
    return column.cast(pa.int64()).to_pylist()


def test_the_demo_traffic_has_device_times_hours_ahead_of_their_receipt(demo: Demo) -> None:
    device = _ms(demo.events["event_time"])
    received = _ms(demo.events["received_at"])
    ahead = [d - r for d, r in zip(device, received, strict=True) if d - r > demo.tolerance_ms]
    assert len(ahead) > 0.01 * len(device) and max(ahead) > 3_600_000
    # the skew-corrected time never is: a device sends an event after it happened
    derived = _ms(demo.events["derived_time"])
    assert max(d - r for d, r in zip(derived, received, strict=True)) <= 0


@pytest.mark.parametrize("name", PIPELINES)
def test_no_watermark_runs_ahead_of_the_received_time(demo: Demo, name: str) -> None:
    project = demo.project
    job = resolve_job(project, project.root / "pipelines" / name)
    marks: list[int] = []  # every watermark reported, round after round

    def progress(stats: list[PipelineStats]) -> None:
        marks.extend(
            s.watermark_ms
            for s in stats
            if s.watermark_ms is not None and MIN_WATERMARK < s.watermark_ms < MAX_WATERMARK
        )

    result = run_job(
        job,
        project=project,
        until_idle=True,
        max_rows=BATCH * 5,
        on_progress=progress,
        progress_interval=0.0,
    )
    newest_received = max(_ms(demo.events["received_at"]))
    assert marks, "the pipeline never reported a watermark"
    assert max(marks) - newest_received <= demo.tolerance_ms, (
        f"{name}: watermark {max(marks) - newest_received} ms ahead of the newest received_at"
    )
    # late rows are the generator's late arrivals (2 %), not a watermark in the future
    for stats in result.pipelines:
        assert stats.rows_in == demo.events.num_rows
        assert stats.late_rows <= 0.03 * stats.rows_in, stats


@pytest.mark.parametrize("table", sorted(WRITERS))
def test_the_live_tables_equal_their_reference(at_once: Demo, table: str) -> None:
    """Read in one round, nothing is late: each store table the live page reads equals its
    DuckDB recomputation from the log, window by window."""
    project = at_once.project
    job = resolve_job(project, project.root / "pipelines" / f"{WRITERS[table]}.sql")
    result = run_job(job, project=project, until_idle=True, max_rows=10 * EVENTS)
    assert all(s.late_rows == 0 for s in result.pipelines)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("events", at_once.events)
    con.execute("CREATE VIEW ev AS SELECT *, derived_time::TIMESTAMP AS t FROM events")
    reference = con.sql(REFERENCES[table]).to_arrow_table()
    with open_store(project) as store:
        got = store.scan(table)
    key = [c for c in ("window_start", "window_end", "event_type") if c in reference.column_names]
    want = {tuple(r[k] for k in key): r for r in reference.to_pylist()}
    rows = {tuple(r[k] for k in key): r for r in got.to_pylist()}
    assert rows.keys() == want.keys() and rows
    for k, row in rows.items():
        for column in set(reference.column_names) - set(key):
            assert row[column] == pytest.approx(want[k][column]), (table, row, want[k])
