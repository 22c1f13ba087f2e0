"""The API's read routes over a real project, checked against independent computations."""

from __future__ import annotations

import io
from datetime import datetime

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from fluvial.project import Project
from fluvial.serve.api import create_api

from .conftest import TestClient, World, admin_key


def reference_windows(clicks: pa.Table) -> list[tuple[datetime, str, int, int]]:
    """Per minute and url: views and distinct visitors, in plain DuckDB."""
    con = duckdb.connect()
    con.register("clicks", clicks)
    return con.sql(
        "SELECT date_trunc('minute', ts) AS m, url, count(*), count(DISTINCT user_id) "
        "FROM clicks GROUP BY ALL ORDER BY m, url"
    ).fetchall()


def windows(body: dict) -> list[tuple[datetime, str, int, int]]:
    names = [c["name"] for c in body["columns"]]
    assert names == ["window_start", "url", "views", "visitors"]
    return [(datetime.fromisoformat(r[0]), r[1], r[2], r[3]) for r in body["rows"]]


def test_health_and_openapi(client: TestClient) -> None:
    health = client.get("/api/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["project"] == "fluvial"
    spec = client.get("/api/openapi.json").json()
    for path in (
        "/api/pipelines",
        "/api/metrics/live",
        "/api/store/{table}/{key}",
        "/api/lake/tables/{name}/history",
        "/api/sql",
        "/api/events",
        "/api/alerts/rules/{name}",
    ):
        assert path in spec["paths"], path
    sql_schema = spec["paths"]["/api/sql"]["post"]["responses"]["200"]["content"]
    assert sql_schema["application/json"]["schema"]["$ref"].endswith("/SqlResult")
    assert "ErrorBody" in spec["components"]["schemas"]
    assert client.get("/api/docs").status_code == 200


def test_pipelines_report_the_stream_jobs_status(client: TestClient, world: World) -> None:
    (p,) = client.get("/api/pipelines").json()
    assert (p["job"], p["pipeline"], p["sink"]) == ("views", "views.0", "page_views_per_minute")
    assert p["state"] == "finished" and p["running"] == 0
    assert p["rows_in"] == world.clicks.num_rows
    assert p["rows_out"] == len(reference_windows(world.clicks))
    assert p["late_rows"] == 0
    assert p["watermark"] == "end" and p["lag_seconds"] is None
    assert p["checkpoint_id"] == 1 and p["checkpoint_age_seconds"] >= 0
    assert p["state_bytes"] is not None


def test_store_scan_matches_duckdb(client: TestClient, world: World) -> None:
    expected = reference_windows(world.clicks)
    body = client.get("/api/store/page_views_per_minute", params={"limit": 1000}).json()
    assert windows(body) == expected and body["row_count"] == len(expected)

    minute = expected[3][0]
    body = client.get(
        "/api/store/page_views_per_minute", params={"prefix": minute.isoformat()}
    ).json()
    assert windows(body) == [r for r in expected if r[0] == minute]

    body = client.get(
        "/api/store/page_views_per_minute",
        params={"prefix": minute.isoformat(), "start": "/c", "end": "/d"},
    ).json()
    assert windows(body) == [r for r in expected if r[0] == minute and "/c" <= r[1] < "/d"]

    body = client.get(
        "/api/store/page_views_per_minute", params={"reverse": "true", "limit": 3}
    ).json()
    assert windows(body) == expected[::-1][:3]


def test_store_scan_as_csv(client: TestClient, world: World) -> None:
    res = client.get("/api/store/page_views_per_minute", params={"limit": 1000, "format": "csv"})
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/csv")
    table = pacsv.read_csv(io.BytesIO(res.content))
    expected = reference_windows(world.clicks)
    assert table.num_rows == len(expected)
    assert table["views"].to_pylist() == [r[2] for r in expected]


def test_store_point_lookup(client: TestClient, world: World) -> None:
    expected = reference_windows(world.clicks)
    minute, url, views, visitors = next(r for r in expected if r[1] == "/shop")
    res = client.get(f"/api/store/page_views_per_minute/{minute.isoformat()}/{url}")
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["key"] == ["window_start", "url"]
    assert body["row"]["views"] == views and body["row"]["visitors"] == visitors

    missing = client.get(f"/api/store/page_views_per_minute/{minute.isoformat()}/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "NotFoundError"
    bad = client.get("/api/store/page_views_per_minute/not-a-time/x")
    assert bad.status_code == 400 and bad.json()["error"] == "ValidationError"
    unknown = client.get("/api/store/page_views_per_minut")
    assert unknown.status_code == 404
    assert "did you mean 'page_views_per_minute'" in unknown.json()["message"]


def test_store_tables_list(client: TestClient, world: World) -> None:
    (table,) = client.get("/api/store").json()
    assert table["name"] == "page_views_per_minute"
    assert table["key"] == ["window_start", "url"]
    assert table["rows"] == len(reference_windows(world.clicks))


def test_live_metrics(client: TestClient, world: World) -> None:
    body = client.get("/api/metrics/live").json()
    expected = reference_windows(world.clicks)
    (table,) = body["tables"]
    assert table["table"] == "page_views_per_minute" and table["total_rows"] == len(expected)
    assert windows(table) == expected[::-1][:20]  # newest 20 by key
    assert "active_users" in body["missing"]
    assert body["pipelines"]["pipelines"] == 1 and body["pipelines"]["running"] == 0
    assert body["pipelines"]["rows_in"] == world.clicks.num_rows


def test_live_tables_are_configurable(world: World) -> None:
    env = {"FLUVIAL_API__LIVE_TABLES": "nope, page_views_per_minute", "FLUVIAL_API__LIVE_ROWS": "2"}
    headers = {"Authorization": f"Bearer {admin_key(world.project)}"}
    with TestClient(create_api(Project(world.project.root, env=env)), headers=headers) as client:
        body = client.get("/api/metrics/live").json()
    assert body["missing"] == ["nope"]
    assert [t["row_count"] for t in body["tables"]] == [2]


def test_lake_catalog_routes(client: TestClient, world: World) -> None:
    names = [t["name"] for t in client.get("/api/lake/tables").json()]
    assert {"raw.clicks", "refined.clicks_by_url"} <= set(names)
    info = client.get("/api/lake/tables/raw.clicks").json()
    assert info["rows"] == world.lake_rows.num_rows and info["snapshots"] == 2
    assert [c["name"] for c in info["columns"]] == world.lake_rows.column_names
    history = client.get("/api/lake/tables/raw.clicks/history").json()
    assert [h["summary"]["added-records"] for h in history] == ["400", "200"]
    assert [h["current"] for h in history] == [False, True]
    missing = client.get("/api/lake/tables/raw.clickz")
    assert missing.status_code == 404 and "raw.clicks" in missing.json()["message"]


def test_lineage_route(client: TestClient) -> None:
    down = client.get("/api/lineage/raw.clicks").json()
    assert "refined.clicks_by_url" in down["downstream"] and down["upstream"] == []
    up = client.get("/api/lineage/refined.clicks_by_url").json()
    assert up["upstream"] == ["raw.clicks"]
    assert up["upstream_tree"]["upstream"][0]["name"] == "raw.clicks"
    assert client.get("/api/lineage/nothing.here").status_code == 404


def test_quality_and_batch_runs(client: TestClient, world: World) -> None:
    runs = client.get("/api/quality/runs").json()
    assert [r["run_id"] for r in runs] == world.quality_run_ids[::-1]
    assert [(r["passed"], r["row_count"]) for r in runs] == [(True, 600), (False, 100)]
    assert client.get("/api/quality/runs", params={"table": "other"}).json() == []
    (batch,) = client.get("/api/batch/runs").json()
    assert batch["run_id"] == world.batch_run_id
    assert (batch["status"], batch["models"], batch["errors"]) == ("success", 1, 0)


def test_errors_are_json(client: TestClient) -> None:
    res = client.get("/api/no/such/route")
    assert res.status_code == 404 and res.json()["error"] == "HTTPError"
    res = client.get("/api/quality/runs", params={"limit": 0})
    assert res.status_code == 422
    assert res.json()["error"] == "RequestValidationError" and res.json()["detail"]


def test_request_metrics(client: TestClient) -> None:
    client.get("/api/health")
    text = client.app.state.services.metrics.render().decode()  # type: ignore[attr-defined]
    assert 'fluvial_api_requests_total{route="/api/health",status="200"}' in text


@pytest.mark.parametrize("path", ["/api/pipelines", "/api/metrics/live", "/api/lake/tables"])
def test_empty_project_answers(tmp_path, path: str) -> None:  # type: ignore[no-untyped-def]
    project = Project.init(tmp_path / "empty")
    headers = {"Authorization": f"Bearer {admin_key(project)}"}
    with TestClient(create_api(project), headers=headers) as client:
        res = client.get(path)
    assert res.status_code == 200
