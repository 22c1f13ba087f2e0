"""``fluvial aws cost --from-up``: rates read from the /metrics of the real platform app,
served by uvicorn on loopback while events and queries arrive."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from fluvial.aws.measured import measure, rates
from fluvial.cli import main
from fluvial.collector.keys import KeyStore
from fluvial.errors import FluvialError, UsageError
from fluvial.project import Project
from fluvial.serve.app import create_platform_app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def event(**overrides: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": "page_view",
        "event_time": "2026-01-02T03:04:05.678Z",
        "anonymous_id": "anon-1",
        "page": {"url": "https://shop.example/", "referrer": None, "title": "Home"},
        "properties": {"path": "/"},
    }
    e.update(overrides)
    return e


class Up:
    def __init__(self, url: str, secret: str, project: Project) -> None:
        self.url = url
        self.secret = secret
        self.project = project


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    project = Project.init(tmp_path / "shop")
    _, secret = KeyStore.for_project(project, reload_interval=0.0).create("web")
    open_api = {"FLUVIAL_GOVERN__REQUIRE_AUTH": "false"}  # queries without an API key
    app = create_platform_app(Project(project.root, env=open_api), ui=False)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield Up(f"http://127.0.0.1:{port}", secret, project)
    server.should_exit = True
    thread.join(timeout=15)


def test_rates_from_a_running_platform(up: Up) -> None:
    auth = {"Authorization": f"Bearer {up.secret}"}

    def traffic(_seconds: float) -> None:
        """What happens between the two scrapes: 250 valid events, 10 invalid, 3 queries
        and one that fails (not counted: it scans nothing)."""
        with httpx.Client(base_url=up.url, timeout=30) as client:
            for _ in range(5):
                r = client.post("/v1/events", json=[event() for _ in range(50)], headers=auth)
                assert r.json()["accepted"] == 50
            r = client.post(
                "/v1/events", json=[event(event_type="") for _ in range(10)], headers=auth
            )
            assert r.json()["rejected"] == 10
            for _ in range(3):
                assert client.post("/api/sql", json={"sql": "SELECT 1 AS one"}).status_code == 200
            assert client.post("/api/sql", json={"sql": "SELEC nonsense"}).status_code != 200

    with httpx.Client(base_url=up.url) as client:  # traffic before the first scrape is not counted
        client.post("/v1/events", json=[event() for _ in range(40)], headers=auth)
    m = measure(up.url, 0.1, sleep=traffic)
    assert m.events_per_second * m.seconds == pytest.approx(260)
    assert m.queries_per_day * m.seconds / 86400 == pytest.approx(3)
    assert m.store_writes_per_second == 0
    # bytes per event: what the log itself says it retains for the events topic
    with up.project.open_log() as log:
        topic = next(t for t in log.list_topics() if t.name == "events")
    assert topic.records == 290
    assert m.event_bytes == round(topic.bytes / topic.records)


def test_cost_from_up_on_the_command_line(up: Up, capsys: pytest.CaptureFixture[str]) -> None:
    auth = {"Authorization": f"Bearer {up.secret}"}
    with httpx.Client(base_url=up.url) as client:
        client.post("/v1/events", json=[event() for _ in range(20)], headers=auth)
    code = main(
        [
            "aws",
            "cost",
            "--project",
            str(up.project.root),
            "--from-up",
            up.url,
            "--sample-seconds",
            "0.2",
            "--json",
        ]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["measured"]["events_per_second"] == 0  # nothing arrived while sampling
    assert doc["workload"]["events_per_second"] == 0
    assert doc["workload"]["event_bytes"] == doc["measured"]["event_bytes"] > 0


def test_counter_resets_and_bad_input() -> None:
    before = "fluvial_collector_events_accepted_total 1000.0\n"
    after = "fluvial_collector_events_accepted_total 30.0\n"  # restarted: counts from zero
    assert rates(before, after, 3.0, events_topic="events").events_per_second == 10
    with pytest.raises(FluvialError, match="not Prometheus text"):
        rates("x{", after, 1.0, events_topic="events")
    with pytest.raises(UsageError, match="positive"):
        rates(before, after, 0, events_topic="events")


def test_unreachable_up_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Project.init(tmp_path / "p")
    url = f"http://127.0.0.1:{_free_port()}"
    assert (
        main(
            ["aws", "cost", "-p", str(tmp_path / "p"), "--from-up", url, "--sample-seconds", "0.1"]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "cannot read" in err and len(err.strip().splitlines()) == 1
