"""GET /api/events: Server-Sent Events from a real uvicorn server on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from fluvial.project import Project
from fluvial.serve.api import create_api

from .conftest import World


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def base_url(world: World) -> Iterator[str]:
    port = _free_port()
    app = create_api(Project(world.project.root))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)
    assert not thread.is_alive(), "the server did not stop (an event stream kept it open)"


def read_events(response: httpx.Response, count: int) -> list[dict[str, Any]]:
    """The first *count* events of an SSE response, parsed."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "event" in current:
                events.append(current)
                if len(events) == count:
                    break
            current = {}
            continue
        field, _, value = line.partition(": ")
        current[field] = json.loads(value) if field == "data" else value
    return events


def test_event_stream_pushes_metrics_and_pipelines(base_url: str, world: World) -> None:
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", f"{base_url}/api/events", params={"interval": 0.2}) as res,
    ):
        assert res.status_code == 200
        assert res.headers["content-type"].startswith("text/event-stream")
        events = read_events(res, 4)
    assert [e["event"] for e in events] == ["metrics", "pipelines"] * 2
    assert [e["id"] for e in events] == ["1", "1", "2", "2"]
    metrics = events[2]["data"]
    assert [t["table"] for t in metrics["tables"]] == ["page_views_per_minute"]
    assert metrics["pipelines"]["rows_in"] == world.clicks.num_rows
    (pipeline,) = events[3]["data"]
    assert pipeline["job"] == "views" and pipeline["rows_in"] == world.clicks.num_rows
