"""The Lambda serving view and reconciliation, on a real log, lake, batch run and pipeline.

The scenario: events of minutes 0-19.5 go to the log, followed by a few page views of
minutes 3-5 that arrive late; the archiver moves them to the raw zone and a batch run
builds the metric (two models: refined page views, then the per-minute aggregate). Then
the events of minutes 19.5-40 arrive and are archived, but the batch does not run again.
The stream pipeline reads the whole log into the operational store, dropping the late
page views into its late-events topic.

The reference is independent: DuckDB's GROUP BY over every raw event, written here. The
view must equal it for every period: the batch layer's rows up to the last closed
minute of its input (they include the late page views the speed layer dropped), the
speed layer's rows after (including the minute the batch saw only half of).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from fluvial.batch import run as batch_run
from fluvial.errors import ConfigError, NotFoundError
from fluvial.events.envelope import EVENT_SCHEMA
from fluvial.lake import Archiver, open_lake
from fluvial.project import Project
from fluvial.serve.lambda_view import (
    batch_coverage,
    get_metric,
    lambda_view,
    load_metrics,
)
from fluvial.serve.reconcile import reconcile
from fluvial.serve.store import open_store
from fluvial.stream.job import load_job
from fluvial.stream.runtime import run_job

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
MINUTE = 60_000
PAGES = ["/", "/c/shoes", "/p/1", "/p/2", "/cart"]

PIPELINE = """
CREATE TABLE events (
  event_type STRING,
  event_time TIMESTAMP_LTZ(3),
  anonymous_id STRING,
  page ROW<url STRING, referrer STRING, title STRING>,
  WATERMARK FOR event_time AS event_time - INTERVAL '5' SECOND
) WITH (
  'connector' = 'fluvial',
  'topic' = 'events',
  'fluvial.late-events.topic' = 'page_views_late'
);

CREATE TABLE page_views_per_minute (
  window_start TIMESTAMP(3),
  url STRING,
  views BIGINT,
  visitors BIGINT,
  PRIMARY KEY (window_start, url) NOT ENFORCED
) WITH ('connector' = 'store', 'table' = 'page_views_per_minute');

CREATE TEMPORARY VIEW page_views AS
SELECT page.url AS url, anonymous_id, event_time FROM events WHERE event_type = 'page_view';

INSERT INTO page_views_per_minute
SELECT window_start, url, COUNT(*), COUNT(DISTINCT anonymous_id)
FROM TABLE(TUMBLE(TABLE page_views, DESCRIPTOR(event_time), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, url;
"""

REFINED = """
SELECT event_time, page.url AS url, anonymous_id
FROM raw.events WHERE event_type = 'page_view'
"""
CURATED = """
SELECT time_bucket(INTERVAL 1 MINUTE, event_time) AS window_start, url,
       count(*) AS views, count(DISTINCT anonymous_id) AS visitors
FROM refined.page_views GROUP BY ALL
"""

METRICS = """
[[metric]]
name = "page_views_per_minute"
speed_table = "page_views_per_minute"
batch_table = "curated.page_views_per_minute"
time_column = "window_start"
period = "1 min"
dimensions = ["url"]
values = ["views", "visitors"]
pipeline = "page_views"
"""

#: the reference: the metric over every raw event, written independently of both layers
REFERENCE = """
SELECT date_trunc('minute', event_time AT TIME ZONE 'UTC') AS window_start,
       page.url AS url, count(*)::BIGINT AS views, count(DISTINCT anonymous_id)::BIGINT AS visitors
FROM raw WHERE event_type = 'page_view' GROUP BY ALL
"""


def make_events(n: int, start_ms: int, end_ms: int, *, seed: int, prefix: str) -> pa.Table:
    """*n* events in [start_ms, end_ms), sorted by time, of EVENT_SCHEMA (vectorized)."""
    rng = np.random.default_rng(seed)
    times = np.sort(rng.integers(start_ms, end_ms, n))
    ts = pa.array(times, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    kinds = np.array(["page_view", "page_view", "page_view", "click", "purchase"])
    visitors = np.char.add("a", rng.integers(0, 40, n).astype(str))
    urls = np.char.add("https://shop.example", np.array(PAGES)[rng.integers(0, len(PAGES), n)])
    page = pa.StructArray.from_arrays(
        [pa.array(urls), pa.nulls(n, pa.string()), pa.nulls(n, pa.string())],
        names=["url", "referrer", "title"],
    )
    columns = {
        "event_id": pa.array(np.char.add(prefix, np.arange(n).astype(str))),
        "event_type": pa.array(kinds[rng.integers(0, len(kinds), n)]),
        "event_time": ts,
        "sent_at": ts,
        "received_at": ts,
        "derived_time": ts,
        "app_id": pa.array(["shop"] * n),
        "user_id": pa.nulls(n, pa.string()),
        "anonymous_id": pa.array(visitors),
        "session_id": pa.nulls(n, pa.string()),
        "page": page,
    }
    arrays = [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in EVENT_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def _minute_url(table: pa.Table) -> set[tuple[datetime, str]]:
    minutes = (table["event_time"].cast(pa.int64()).to_numpy() // MINUTE) * MINUTE
    urls = table["page"].combine_chunks().field("url").to_pylist()
    return {
        (datetime.fromtimestamp(m / 1000, tz=UTC).replace(tzinfo=None), u)
        for m, u in zip(minutes.tolist(), urls, strict=True)
    }


@dataclass
class Scenario:
    project: Project
    late: pa.Table
    phase1_max_ms: int

    def raw(self) -> pa.Table:
        with open_lake(self.project) as lake:
            return lake.table("raw.events").scan().to_arrow()

    def reference(self, since: datetime | None = None) -> list[dict[str, object]]:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.register("raw", self.raw())
        rows = con.sql(REFERENCE).to_arrow_table().to_pylist()
        if since is not None:
            rows = [r for r in rows if r["window_start"] >= since]
        return sorted(rows, key=lambda r: (r["window_start"], r["url"]))


def _view_rows(project: Project, **kwargs: datetime) -> list[dict[str, object]]:
    table = lambda_view(project, "page_views_per_minute", **kwargs).rows
    return sorted(
        table.drop_columns(["layer"]).to_pylist(), key=lambda r: (r["window_start"], r["url"])
    )


def _archive(project: Project) -> None:
    with project.open_log() as log, open_lake(project) as lake:
        Archiver(lake, log, settings=project.settings).run(until_idle=True)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    root = tmp_path_factory.mktemp("lambda") / "shop"
    Project.init(root)
    project = Project(root, env={"FLUVIAL_LOG__FSYNC": "never"})
    (root / "pipelines" / "page_views.sql").write_text(PIPELINE, encoding="utf-8")
    (root / "metrics.toml").write_text(METRICS, encoding="utf-8")
    for rel, text in (
        ("refined/page_views.sql", REFINED),
        ("curated/page_views_per_minute.sql", CURATED),
    ):
        path = root / "models" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).strip() + "\n", encoding="utf-8")

    phase1 = make_events(1_500, T0_MS, T0_MS + 19 * MINUTE + 30_000, seed=1, prefix="a")
    late = make_events(40, T0_MS + 3 * MINUTE, T0_MS + 5 * MINUTE, seed=2, prefix="late")
    late = late.set_column(1, "event_type", pa.array(["page_view"] * late.num_rows))
    phase1_max = int(phase1["event_time"].cast(pa.int64()).to_numpy().max())
    phase2 = make_events(1_500, phase1_max + 1, T0_MS + 40 * MINUTE, seed=3, prefix="b")
    with project.open_log() as log:
        # one partition: the log's order is the arrival order, so the late rows are late
        log.create_topic("events", 1, schema=EVENT_SCHEMA)
        log.create_topic("events_failed", 1)
        log.append("events", phase1)
        log.append("events", late)
    _archive(project)
    result = batch_run(project)
    assert result.ok, result.as_dict()
    with project.open_log() as log:
        log.append("events", phase2)
    _archive(project)
    job = load_job(root / "pipelines" / "page_views.sql")
    stats = run_job(job, project=project, until_idle=True, max_rows=200)
    assert stats.pipelines[0].late_rows == late.num_rows  # the pipeline dropped them all
    yield Scenario(project, late, phase1_max)


def test_view_equals_full_batch_recomputation(scenario: Scenario) -> None:
    project = scenario.project
    view = lambda_view(project, "page_views_per_minute")
    assert _view_rows(project) == scenario.reference()
    # both layers served: batch up to the boundary, speed from it on
    layers = view.rows.group_by("layer").aggregate(
        [("window_start", "min"), ("window_start", "max")]
    )
    by_layer = {r["layer"]: r for r in layers.to_pylist()}
    assert set(by_layer) == {"batch", "speed"}
    boundary = view.coverage.boundary
    assert boundary is not None
    assert by_layer["batch"]["window_start_max"] < boundary <= by_layer["speed"]["window_start_min"]
    # the boundary is the minute the batch run saw only part of (its input ended at 19:30)
    expected = datetime.fromtimestamp(
        ((scenario.phase1_max_ms - 5_000 + 1) // MINUTE) * MINUTE / 1000, tz=UTC
    ).replace(tzinfo=None)
    assert boundary == expected == datetime(2026, 5, 1, 10, 19)
    assert view.coverage.how == "positions"


def test_view_over_a_range(scenario: Scenario) -> None:
    since = datetime(2026, 5, 1, 10, 15)
    until = datetime(2026, 5, 1, 10, 25)
    got = _view_rows(scenario.project, since=since, until=until)
    want = [r for r in scenario.reference(since) if r["window_start"] < until]  # type: ignore[operator]
    assert got == want and got


def test_coverage_follows_positions_to_the_raw_snapshot(scenario: Scenario) -> None:
    project = scenario.project
    coverage = batch_coverage(project, get_metric(project, "page_views_per_minute"))
    with open_lake(project) as lake:
        raw = lake.table("raw.events")
        snaps = [s.snapshot_id for s in raw.snapshots()]
    # the archiver committed twice; the batch ran between the two commits
    assert coverage.source_snapshot == snaps[0] and len(snaps) == 2
    assert coverage.source_max_ms == scenario.phase1_max_ms
    assert coverage.lateness_ms == 5_000  # the pipeline's watermark delay


def test_reconcile_explains_the_late_rows(scenario: Scenario) -> None:
    report = reconcile(scenario.project)
    assert report.ok
    (metric,) = report.metrics
    assert metric.status == "late", metric.as_dict()
    assert metric.unexplained == 0 and metric.late == metric.drifted > 0
    assert metric.late_rows == scenario.late.num_rows
    assert metric.late_events == scenario.late.num_rows
    # the drifting rows are exactly the (minute, page) of the late page views
    drifted = {(datetime.fromisoformat(d.period), d.dimensions["url"]) for d in metric.drift}
    assert drifted == _minute_url(scenario.late)
    assert metric.end == "2026-05-01T10:19:00"  # the batch's boundary closes the comparison
    assert metric.matching == metric.rows - metric.drifted > 0


def test_reconcile_since_after_the_late_rows_finds_no_drift(scenario: Scenario) -> None:
    report = reconcile(scenario.project, "page_views_per_minute", since=datetime(2026, 5, 1, 10, 6))
    (metric,) = report.metrics
    assert metric.status == "ok" and metric.drifted == 0 and metric.rows > 0
    assert metric.start == "2026-05-01T10:06:00"


def test_speed_rows_the_batch_covers_are_not_served(scenario: Scenario) -> None:
    """Corrupt one speed row inside the batch's coverage: the view ignores it (no double
    counting, batch wins), and reconciliation reports it as unexplained drift."""
    project = scenario.project
    period = datetime(2026, 5, 1, 10, 10)
    url = "https://shop.example/cart"
    with open_store(project) as store:
        before = store.get("page_views_per_minute", {"window_start": period, "url": url})
        assert before is not None
        store.upsert(
            "page_views_per_minute",
            pa.table(
                {
                    "window_start": pa.array([period], pa.timestamp("ms")),
                    "url": [url],
                    "views": [before["views"] + 1000],
                    "visitors": [before["visitors"]],
                }
            ),
            ["window_start", "url"],
        )
    try:
        assert _view_rows(project) == scenario.reference()
        (metric,) = reconcile(project).metrics
        assert metric.status == "drift" and metric.unexplained == 1
        (bad,) = [d for d in metric.drift if d.cause == "unexplained"]
        assert (bad.period, bad.dimensions["url"]) == (period.isoformat(), url)
        assert bad.speed == {"views": before["views"] + 1000, "visitors": before["visitors"]}
        assert bad.batch == {"views": before["views"], "visitors": before["visitors"]}
    finally:
        with open_store(project) as store:
            store.upsert(
                "page_views_per_minute",
                pa.table(
                    {
                        "window_start": pa.array([period], pa.timestamp("ms")),
                        "url": [url],
                        "views": [before["views"]],
                        "visitors": [before["visitors"]],
                    }
                ),
                ["window_start", "url"],
            )


def test_the_view_serves_the_replayed_version(scenario: Scenario) -> None:
    """After a Kappa replay of the speed pipeline, the view reads the new store table."""
    from fluvial.stream.versions import current_table, replay, rollback

    project = scenario.project
    done = replay(project, "page_views", max_rows=200)
    try:
        assert current_table(project, "page_views_per_minute") == "page_views_per_minute__v2"
        assert _view_rows(project) == scenario.reference()
        (metric,) = reconcile(project).metrics
        assert metric.status == "late" and metric.late_rows == scenario.late.num_rows
    finally:
        rollback(project, "page_views", done.previous)


def test_metrics_file_errors(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "p")
    assert load_metrics(project) == {}
    assert reconcile(project).metrics == ()
    (project.root / "metrics.toml").write_text(
        '[[metric]]\nname = "x"\nspeed_table = "x"\nbatch_table = "curated.x"\n'
        'time_column = "t"\nperiod = "1 parsec"\nvalues = ["n"]\n'
    )
    with pytest.raises(ConfigError, match="period"):
        load_metrics(project)
    (project.root / "metrics.toml").write_text(METRICS)
    with pytest.raises(NotFoundError, match="did you mean 'page_views_per_minute'"):
        get_metric(project, "page_views_per_minut")
    with pytest.raises(NotFoundError, match=r"pipelines/page_views\.sql"):
        reconcile(project)
    (project.root / "pipelines" / "page_views.sql").write_text(PIPELINE)
    (metric,) = reconcile(project).metrics
    assert metric.status == "empty"  # no batch result yet
    assert lambda_view(project, "page_views_per_minute").rows.num_rows == 0


def test_cli_reconcile(scenario: Scenario) -> None:
    import typer
    from typer.testing import CliRunner

    from fluvial.cli import lambda_kappa

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root."""

    lambda_kappa.register(app)
    where = ["--project", str(scenario.project.root)]
    shown = CliRunner().invoke(app, ["reconcile", "--json", *where])
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    assert doc["ok"] and doc["metrics"][0]["status"] == "late"
    assert doc["metrics"][0]["coverage"]["boundary"] == "2026-05-01T10:19:00"
    table = CliRunner().invoke(app, ["reconcile", "-m", "page_views_per_minute", *where])
    assert table.exit_code == 0 and "late" in table.stdout
    unknown = CliRunner().invoke(app, ["reconcile", "-m", "nope", *where])
    assert isinstance(unknown.exception, NotFoundError)
