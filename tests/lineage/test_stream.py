"""Stream jobs: START/COMPLETE/FAIL events from a planned job, with column lineage from its SQL."""

from __future__ import annotations

from tests.lineage.helpers import spec_errors

from fluvial.lineage import build_graph, stream_dataset, stream_events
from fluvial.stream.job import plan_text

PIPELINE = """
SET 'pipeline.name' = 'clicks';
CREATE TABLE clicks (
  user_id BIGINT, url STRING, price DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'fluvial', 'topic' = 'events');
CREATE TABLE per_minute (
  window_start TIMESTAMP(3), user_id BIGINT, clicks BIGINT, spend DOUBLE, pricey BIGINT
) WITH ('connector' = 'filesystem', 'path' = '/data/out/per_minute', 'format' = 'json');
CREATE TABLE latest (user_id BIGINT, page STRING, PRIMARY KEY (user_id) NOT ENFORCED)
  WITH ('connector' = 'store', 'table' = 'latest_page');
CREATE VIEW shop AS SELECT user_id, lower(url) AS page, price, ts FROM clicks
  WHERE url LIKE '/shop%';
INSERT INTO per_minute
SELECT window_start, user_id, COUNT(*), SUM(price),
       SUM(CASE WHEN price > 100 THEN 1 ELSE 0 END)
FROM TABLE(TUMBLE(TABLE shop, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, user_id;
INSERT INTO latest SELECT user_id, page FROM shop;
"""


def _fields(event: dict, name: str) -> dict[str, set[tuple[str, str, str]]]:
    out = next(o for o in event["outputs"] if o["name"] == name)
    return {
        col: {
            (f["name"], f["field"], f"{t['type']}/{t['subtype']}")
            for f in spec["inputFields"]
            for t in f["transformations"]
        }
        for col, spec in out["facets"]["columnLineage"]["fields"].items()
    }


def test_stream_job_events_name_the_connectors_datasets() -> None:
    job = plan_text(PIPELINE, name="clicks")
    run = stream_events(job, PIPELINE)
    start, done, failed = run.start(), run.complete(), run.fail("sink unreachable")
    for event in (start, done, failed):
        assert spec_errors(event) == []
        assert event["run"]["runId"] == run.run_id
        assert event["job"]["name"] == "clicks"
        assert event["job"]["facets"]["jobType"]["processingType"] == "STREAMING"
    assert [e["eventType"] for e in (start, done, failed)] == ["START", "COMPLETE", "FAIL"]
    assert failed["run"]["facets"]["errorMessage"]["message"] == "sink unreachable"
    assert [(d["namespace"], d["name"]) for d in start["inputs"]] == [("fluvial", "log.events")]
    assert sorted((d["namespace"], d["name"]) for d in start["outputs"]) == [
        ("file", "/data/out/per_minute"),
        ("fluvial", "store.latest_page"),
    ]
    source_schema = start["inputs"][0]["facets"]["schema"]["fields"]
    assert [f["name"] for f in source_schema] == ["user_id", "url", "price", "ts"]


def test_stream_column_lineage_through_views_and_windows() -> None:
    event = stream_events(plan_text(PIPELINE, name="clicks"), PIPELINE).start()
    src = "log.events"
    assert _fields(event, "/data/out/per_minute") == {
        "window_start": {(src, "ts", "DIRECT/TRANSFORMATION")},
        "user_id": {(src, "user_id", "DIRECT/IDENTITY")},
        "spend": {(src, "price", "DIRECT/AGGREGATION")},
        "pricey": {(src, "price", "INDIRECT/CONDITIONAL")},
    }
    assert _fields(event, "store.latest_page") == {
        "user_id": {(src, "user_id", "DIRECT/IDENTITY")},
        "page": {(src, "url", "DIRECT/TRANSFORMATION")},
    }


def test_without_the_script_only_datasets() -> None:
    event = stream_events(plan_text(PIPELINE, name="clicks")).start()
    assert spec_errors(event) == []
    assert all("columnLineage" not in o["facets"] for o in event["outputs"])
    assert "sql" not in event["job"]["facets"]


def test_stream_and_batch_meet_in_one_graph() -> None:
    from fluvial.lineage import run_event

    run = stream_events(plan_text(PIPELINE, name="clicks"), PIPELINE)
    archive = run_event("COMPLETE", "archiver", run.run_id, ["log.events"], ["raw.events"])
    graph = build_graph([run.complete(), archive])
    assert set(graph.downstream_names("log.events")) == {
        "/data/out/per_minute (file)",
        "store.latest_page",
        "raw.events",
    }


def test_dataset_names_per_connector() -> None:
    job = plan_text(PIPELINE, name="clicks")
    (first, second) = job.pipelines
    assert stream_dataset(first.sink.table, "shop") == ("file", "/data/out/per_minute")
    assert stream_dataset(second.sink.table, "shop") == ("shop", "store.latest_page")
