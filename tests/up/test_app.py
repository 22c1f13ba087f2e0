"""The platform app: the collector under /v1, /metrics, /healthz, the API and UI mounts."""

from __future__ import annotations

import uuid
from typing import Any

import duckdb
import orjson
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from fluvial.collector.keys import KeyStore
from fluvial.project import Project
from fluvial.serve.app import create_platform_app


def _event(i: int, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": "page_view",
        "event_time": f"2026-01-02T03:04:{i % 60:02d}.000Z",
        "anonymous_id": f"anon-{i % 7}",
        "page": {"url": f"https://shop.example/p/{i % 5}", "referrer": None, "title": "P"},
    }
    event.update(overrides)
    return event


def test_collector_post_is_read_back_from_the_log(project: Project) -> None:
    _, secret = KeyStore.for_project(project).create("test")
    events = [_event(i) for i in range(50)]
    bad = _event(99)
    del bad["event_time"]  # a schema violation: stored in the failed topic with its reason
    body = b"\n".join(orjson.dumps(e) for e in [*events, bad]) + b"\n"
    app = create_platform_app(project, api=False, ui=False)
    with TestClient(app) as client:
        response = client.post(
            "/v1/events",
            content=body,
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/x-ndjson"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 50 and response.json()["rejected"] == 1
        assert client.post("/v1/events", content=body).status_code == 401
        assert client.get("/healthz").json()["status"] == "ok"
        metrics = client.get("/metrics").text
    # every registry: the collector's counters and the process-wide default registry
    assert "fluvial_collector_events_accepted_total 50.0" in metrics
    assert "process_cpu_seconds_total" in metrics or "python_info" in metrics
    with project.open_log() as log:
        stored = log.snapshot("events")
        failed = log.snapshot("events_failed")
    db = duckdb.connect()
    db.register("stored", stored)
    ids = {r[0] for r in db.execute("SELECT event_id FROM stored").fetchall()}
    assert ids == {e["event_id"] for e in events}
    assert failed.num_rows == 1


def test_api_and_ui_are_mounted_keeping_their_paths(project: Project) -> None:
    api = FastAPI(openapi_url="/api/openapi.json", docs_url=None, redoc_url=None)

    @api.get("/api/ping")
    def ping() -> dict[str, str]:
        return {"pong": "api"}

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse(f"ui {request.url.path}")

    ui = Starlette(routes=[Route("/", home), Route("/pipelines", home)])
    app = create_platform_app(project, api=api, ui=ui)
    with TestClient(app) as client:
        assert client.get("/api/ping").json() == {"pong": "api"}
        assert client.get("/api/openapi.json").json()["paths"].keys() == {"/api/ping"}
        assert client.get("/").text == "ui /"
        assert client.get("/pipelines").text == "ui /pipelines"
        # the collector and the metrics win over the UI's catch-all mount
        assert client.get("/metrics").status_code == 200
        assert client.post("/v1/events", content=b"{}").status_code == 401


def test_the_project_api_is_mounted_when_installed(project: Project) -> None:
    pytest.importorskip("fluvial.serve.api")
    app = create_platform_app(project, ui=False)
    if app.state.api is None:
        pytest.skip("fluvial.serve.api has no create_api yet")
    with TestClient(app) as client:
        spec = client.get("/api/openapi.json")
        assert spec.status_code == 200
        assert all(path.startswith("/api/") for path in spec.json()["paths"])
