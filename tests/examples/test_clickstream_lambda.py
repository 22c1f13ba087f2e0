"""The clickstream example's Lambda metric, ``page_views_per_minute``, end to end.

The example project as ``fluvial init --example clickstream`` writes it: the generator's
shop events (with late arrivals, retries and invalid lines) reach the log through the
ingestor in two deliveries; the archiver lands the first in the raw zone and the batch
layer (``models/curated/page_views_per_minute.sql``) is built from it; then the second
delivery is archived, and the speed layer (``pipelines/page_views_per_minute.sql``)
reads the whole log into the operational store.

The reference is a full batch recomputation written here in DuckDB over every raw event,
by minute of the collector's skew-corrected ``derived_time``, as both layers count.
The serving view must equal it for every minute, apart from the declared late rows: the
page views the pipeline routed to its late-events topic are missing from the minutes
the speed layer serves (and only from those), and reconciliation attributes every
difference to them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fluvial.batch import run as batch_run
from fluvial.events.ingest import Ingestor
from fluvial.events.validate import ValidationResult
from fluvial.examples.clickstream import load_catalogue
from fluvial.generate.clickstream import ClickstreamConfig, clickstream_batches
from fluvial.lake import Archiver, open_lake
from fluvial.project import Project
from fluvial.serve.lambda_view import lambda_view
from fluvial.serve.reconcile import reconcile
from fluvial.stream.runtime import run_job
from fluvial.stream.versions import resolve_job

METRIC = "page_views_per_minute"
#: the metric over raw events, written independently of both layers
REFERENCE = """
SELECT date_trunc('minute', derived_time AT TIME ZONE 'UTC') AS window_start,
       page.url AS url, count(*)::BIGINT AS views,
       count(DISTINCT anonymous_id)::BIGINT AS visitors
FROM events WHERE event_type = 'page_view' GROUP BY ALL
"""
Key = tuple[datetime, str]


@dataclass
class Built:
    project: Project
    raw: pa.Table
    late: pa.Table


def _deliver(project: Project, lines: list[tuple[bytes, int]]) -> None:
    """Ingest (line, time sent) pairs as a live collector receives them: each when sent."""
    with Ingestor.for_project(project) as ingestor:
        for start in range(0, len(lines), 2_000):
            chunk = lines[start : start + 2_000]
            result = ingestor.validator.validate(
                [line for line, _ in chunk], received_at_ms=0, app_id="demo", source="test"
            )
            rejected = {e.index for e in result.errors}
            received = pa.array([sent for i, (_, sent) in enumerate(chunk) if i not in rejected])
            valid = result.valid
            ts = valid.schema.field("received_at").type
            skew = pc.subtract(valid["sent_at"].cast(pa.int64()), received)
            derived = pc.subtract(valid["event_time"].cast(pa.int64()), skew)
            for name, values in (("received_at", received), ("derived_time", derived)):
                at = valid.schema.get_field_index(name)
                valid = valid.set_column(at, valid.schema.field(name), values.cast(ts))
            ingestor.append(ValidationResult(valid, result.failed, result.errors))
    with project.open_log() as log, open_lake(project) as lake:
        Archiver(lake, log, settings=project.settings).run(until_idle=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("lambda") / "shop"
    Project.init(root, example="clickstream")
    project = Project(root, env={"FLUVIAL_LOG__FSYNC": "never"})
    config = ClickstreamConfig(
        events=12_000,
        seed=5,
        users=300,
        days=0.5,
        late_fraction=0.03,
        duplicate_fraction=0.01,
        invalid_fraction=0.01,
        app_id="demo",
    )
    lines = [
        (batch.line(i), int(batch.send_time_ms[i]))
        for batch in clickstream_batches(config)
        for i in range(len(batch))
    ]
    cut = len(lines) * 3 // 5
    _deliver(project, lines[:cut])
    load_catalogue(project)  # the other models read it: the project must load whole
    result = batch_run(project, select=f"curated.{METRIC}")
    assert result.ok, result.as_dict()
    _deliver(project, lines[cut:])
    # small poll rounds, as when events trickle in live: arrivals older than the
    # watermark are late
    job = resolve_job(project, root / "pipelines" / f"{METRIC}.sql")
    run_job(job, project=project, until_idle=True, max_rows=200)
    with open_lake(project) as lake:
        raw = lake.table("raw.events").scan().to_arrow()
    with project.open_log() as log:
        late = log.snapshot("page_views_late")
    yield Built(project, raw, late)


def _rows(table: pa.Table) -> dict[Key, tuple[int, int]]:
    return {(r["window_start"], r["url"]): (r["views"], r["visitors"]) for r in table.to_pylist()}


def _reference(events: pa.Table) -> dict[Key, tuple[int, int]]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("events", events)
    return _rows(con.sql(REFERENCE).to_arrow_table())


def _late_page_views(late: pa.Table) -> Counter[Key]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("late", late)
    found = con.sql(
        "SELECT date_trunc('minute', derived_time AT TIME ZONE 'UTC') AS w, page.url AS url, "
        "count(*) AS n FROM late WHERE event_type = 'page_view' GROUP BY ALL"
    ).fetchall()
    return Counter({(w, url): n for w, url, n in found})


def _covered(project: Project) -> tuple[datetime, pa.Table]:
    """The coverage boundary and the raw events the last batch run read."""
    from fluvial.serve.lambda_view import batch_coverage, get_metric

    coverage = batch_coverage(project, get_metric(project, METRIC))
    assert coverage.how == "positions" and coverage.boundary is not None
    with open_lake(project) as lake:
        raw = lake.table("raw.events").scan(snapshot_id=coverage.source_snapshot).to_arrow()
    return coverage.boundary, raw


def test_the_view_equals_a_full_batch_recomputation_apart_from_late_rows(built: Built) -> None:
    view = lambda_view(built.project, METRIC)
    boundary, covered = _covered(built.project)
    assert view.coverage.boundary == boundary
    assert 0 < covered.num_rows < built.raw.num_rows  # the batch ran on the first delivery
    layers = Counter(view.rows["layer"].to_pylist())
    assert layers["batch"] > 0 and layers["speed"] > 0  # both layers serve
    served = _rows(view.rows.drop_columns(["layer"]))
    late = _late_page_views(built.late)
    assert late, "the generator's late arrivals reach the late-events topic"
    # minutes the batch closed: the recomputation over the events it read
    before = {k: v for k, v in _reference(covered).items() if k[0] < boundary}
    assert {k: v for k, v in served.items() if k[0] < boundary} == before
    # minutes the speed layer serves: the recomputation over every event less the page
    # views the pipeline declared late
    after = {k: v for k, v in _reference(built.raw).items() if k[0] >= boundary}
    speed = {k: v for k, v in served.items() if k[0] >= boundary}
    assert set(speed) <= set(after)
    assert any(k[0] >= boundary for k in late)  # the subtraction below is exercised
    for key, (views, _) in after.items():
        dropped = late.get(key, 0)
        assert speed.get(key, (0, 0))[0] == views - dropped, key
        if not dropped:
            assert speed[key] == after[key], key


def test_reconcile_before_the_next_batch_run_explains_every_difference(built: Built) -> None:
    """Between two batch runs, the closed minutes differ by late page views (the batch
    has them) and by page views that arrived after the batch run (the speed layer has
    them): both are explained, nothing else differs."""
    report = reconcile(built.project)
    (metric,) = report.metrics
    assert report.ok and metric.unexplained == 0, metric.as_dict()
    assert metric.late > 0 and metric.status in ("late", "stale")
    assert metric.drifted == metric.late + metric.after_batch
    _, covered = _covered(built.project)
    arrived = _reference(built.raw)  # the page views per minute and page, all events
    then = _reference(covered)
    for drift in metric.drift:
        key = (datetime.fromisoformat(drift.period), drift.dimensions["url"])
        if drift.cause == "after-batch":  # the raw zone has more of them now than then
            assert arrived[key][0] > then.get(key, (0, 0))[0], drift
            assert drift.speed is not None and drift.speed["views"] > (drift.batch or {}).get(
                "views", 0
            )
        else:
            assert drift.cause == "late" and _late_page_views(built.late)[key] > 0, drift


def test_after_the_next_batch_run_the_view_includes_what_the_speed_layer_dropped(
    built: Built,
) -> None:
    result = batch_run(built.project, select=f"curated.{METRIC}")
    assert result.ok, result.as_dict()
    boundary, covered = _covered(built.project)
    assert covered.num_rows == built.raw.num_rows  # every raw event, late ones included
    served = _rows(lambda_view(built.project, METRIC).rows.drop_columns(["layer"]))
    reference = _reference(built.raw)
    closed = {k: v for k, v in reference.items() if k[0] < boundary}
    assert {k: v for k, v in served.items() if k[0] < boundary} == closed
    # the late page views are counted again in the minutes the batch closed
    late = _late_page_views(built.late)
    assert any(k[0] < boundary and served[k][0] == reference[k][0] for k in late)


def test_reconcile_explains_every_difference_by_late_rows(built: Built) -> None:
    """Once the batch has read every event (the run above), each difference over the
    closed minutes is a page view the pipeline declared late."""
    report = reconcile(built.project)
    assert report.ok, report.as_dict()
    (metric,) = report.metrics
    assert metric.metric == METRIC and metric.unexplained == 0
    assert metric.status in ("ok", "late") and metric.rows > 0
    assert metric.matching == metric.rows - metric.drifted
    # the drifting rows are (minute, page) pairs with late page views
    late = _late_page_views(built.late)
    for drift in metric.drift:
        key = (datetime.fromisoformat(drift.period), drift.dimensions["url"])
        assert late.get(key, 0) > 0, drift
