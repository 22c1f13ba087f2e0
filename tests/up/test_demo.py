"""``fluvial demo --events 2000 --exit``: the whole platform end to end in a temp folder.

Checked against independent computations: the log's own contents (DuckDB over a
snapshot), the lake's row counts, and the page-view windows recomputed with DuckDB.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from fluvial.cli import main
from fluvial.project import Project
from fluvial.serve.app import status_path
from fluvial.serve.store import open_store
from fluvial.serve.supervisor import pid_alive, read_status
from fluvial.stream.runtime import MAX_WATERMARK
from fluvial.stream.status import job_status, list_jobs


@pytest.mark.slow
def test_demo_runs_the_platform_to_completion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "demo"
    # posted over more than two minutes (15 events/s): the batch layer closes every minute
    # but the newest (its boundary is T - L), so the reconciliation compares two or more
    code = main(["demo", str(root), "--events", "2000", "--rate", "15", "--exit", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads(out)
    project = Project(root)
    # the dashboard asks for an API key: the bootstrap admin's is in an owner-only file
    from fluvial.govern.principals import ADMIN_KEY_FILE, open_principals

    admin_key = project.data_dir / "govern" / ADMIN_KEY_FILE
    assert admin_key.stat().st_mode & 0o777 == 0o600
    assert open_principals(project).authenticate(admin_key.read_text().strip()).admin
    # every event ends in exactly one place: the events or the failed-events topic
    assert summary["sent"] == 2000
    assert summary["accepted"] + summary["rejected"] == 2000 and summary["rejected"] > 0
    with project.open_log() as log:
        events = log.snapshot("events")
        failed = log.snapshot("events_failed")
    assert (events.num_rows, failed.num_rows) == (summary["accepted"], summary["rejected"])
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    db.register("events", events)
    by_type = dict(db.execute("SELECT event_type, count(*) FROM events GROUP BY 1").fetchall())
    assert {r["event_type"]: r["events"] for r in summary["queries"]["events by type"]} == by_type
    # the archiver committed both topics to the raw zone, exactly once
    assert summary["caught_up"]
    assert summary["lake"]["raw.events"] == events.num_rows
    assert summary["lake"]["raw.events_failed"] == failed.num_rows
    # every pipeline of the example ran as a worker; page views per minute read every event
    pipelines = {p["job"]: p for p in summary["pipelines"]}
    example = {f.stem for f in (root / "pipelines").glob("*.sql")}
    assert set(pipelines) == example
    views = pipelines["page_views_per_minute"]
    assert views["rows_in"] == events.num_rows
    # drained to completion: every window (the last minute's too) fired, exactly once, and
    # equals a DuckDB recomputation over the accepted events less the late ones the
    # pipeline dropped (the simulated late arrivals: their skew-corrected time is minutes
    # or days back; page views sends them to its late-events topic)
    assert views["state"] == "finished", views
    with project.open_log() as log:
        db.register("late", log.snapshot("page_views_late"))
    with open_store(project) as store:
        db.register("views_out", store.scan("page_views_per_minute"))
        db.register("funnel_out", store.scan("funnel_per_minute"))
    got = db.execute("SELECT window_start, url, views, visitors FROM views_out").fetchall()
    assert len(got) == views["rows_out"] > 1
    expected = db.execute(
        """SELECT time_bucket(INTERVAL 1 MINUTE, derived_time::TIMESTAMP), page.url, count(*),
                  count(DISTINCT anonymous_id)
           FROM events WHERE event_type = 'page_view' AND event_id NOT IN (FROM late SELECT event_id)
           GROUP BY ALL"""
    ).fetchall()
    assert sorted(got) == sorted(expected)
    assert db.execute("SELECT count(*) FROM late").fetchone() == (views["late_rows"],)
    # the funnel (no side output): each window holds what the log has, less exactly the
    # rows it counted late (a missing window would count more)
    funnel = pipelines["funnel_per_minute"]
    assert funnel["state"] == "finished" and len(got) > 0, funnel
    compared = db.execute(
        """WITH want AS (
             SELECT time_bucket(INTERVAL 1 MINUTE, derived_time::TIMESTAMP) AS w, event_type,
                    count(*) AS n
             FROM events WHERE event_type IN ('page_view', 'add_to_cart', 'checkout', 'purchase')
             GROUP BY ALL)
           SELECT count(f.events), count(*) FILTER (f.events > want.n),
                  sum(want.n - coalesce(f.events, 0))
           FROM want FULL JOIN funnel_out f ON f.window_start = want.w AND f.event_type = want.event_type"""
    ).fetchone()
    assert compared == (funnel["rows_out"], 0, funnel["late_rows"]), compared
    # the live dashboard's default tables all exist, with rows: none is "not written yet"
    live = _live_metrics(project)
    assert live["missing"] == []
    shown = {t["table"]: t for t in live["tables"]}
    assert set(shown) == {
        "page_views_per_minute",
        "active_users",
        "funnel_per_minute",
        "revenue_per_minute",
    }
    # each holds what its pipeline wrote (drained: every window, the open ones too)
    written = {p["sink"]: p["rows_out"] for p in summary["pipelines"]}
    assert {k: t["total_rows"] for k, t in shown.items()} == {k: written[k] for k in shown}
    # every pipeline was drained: its input ended, its watermark went to +infinity
    stream_dir = project.data_dir / "stream"
    rows = [row for job in list_jobs(stream_dir) for row in job_status(stream_dir / job)]
    assert rows and all(r["watermark_ms"] == MAX_WATERMARK for r in rows), rows
    assert sorted(summary["drained"]) == sorted(pipelines)
    # the batch models were built, with their quality checks
    batch = summary["batch"]
    assert batch is not None and batch["status"] == "success", batch
    built = {m["model"] for m in batch["models"] if m["status"] == "success"}
    assert {"refined.events", "marts.daily_kpis"} <= built
    assert summary["quality"] and all("passed" in q for q in summary["quality"])
    # the Lambda metric reconciles: any drift is late data the pipeline declared
    (metric,) = summary["reconcile"]["metrics"]
    assert metric["metric"] == "page_views_per_minute" and metric["unexplained"] == 0, metric
    assert metric["status"] in ("ok", "late") and metric["rows"] > 0
    # the drained speed layer closed every minute: the comparison runs up to the batch
    # layer's boundary (the minute of the newest event less the watermark delay, which it
    # keeps open), over more than one period
    newest = db.execute(
        """SELECT time_bucket(INTERVAL 1 MINUTE, max(derived_time)::TIMESTAMP),
                  time_bucket(INTERVAL 1 MINUTE, max(derived_time)::TIMESTAMP - INTERVAL 5 SECOND)
           FROM events"""
    ).fetchone()
    assert newest is not None and metric["end"] in {t.isoformat() for t in newest}, metric
    assert metric["periods"] > 1, metric
    # everything stopped: no process of this project is left behind
    status = read_status(status_path(project))
    assert status is not None and status["state"] == "stopped"
    assert all(w["state"] in ("stopped", "scheduled") for w in summary["workers"])
    assert _processes_mentioning(str(root)) == []


def _live_metrics(project: Project) -> dict[str, Any]:
    """``GET /api/metrics/live`` of the demo project, as the live page reads it."""
    from fastapi.testclient import TestClient

    from fluvial.govern.principals import BOOTSTRAP_ADMIN, open_principals
    from fluvial.serve.api import create_api

    principals = open_principals(project)
    made = principals.bootstrap()
    key = made[1] if made is not None else principals.new_key(BOOTSTRAP_ADMIN, keep_old=True)
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_api(Project(project.root)), headers=headers) as client:
        response = client.get("/api/metrics/live")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes() and pid_alive(int(cmdline.parent.name)):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found
