"""``fluvial up`` follows a Kappa switch: after ``fluvial stream replay`` the pipeline's
worker is restarted on the new version, whose store table then receives the new events.

Everything is real: ``fluvial up`` and ``fluvial stream replay`` run as subprocesses,
events go through the collector over HTTP, and the reference is the log itself (every
event id it holds must be in the serving version's table, the old version's table must
stop growing at the switch).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from fluvial.collector.keys import KeyStore
from fluvial.errors import NotFoundError
from fluvial.project import Project
from fluvial.serve.app import status_path
from fluvial.serve.store import open_store
from fluvial.serve.supervisor import read_status
from fluvial.stream.versions import current_version

PIPELINE = """
SET 'execution.checkpointing.interval' = '1 s';
CREATE TABLE events (
  event_id STRING,
  event_type STRING,
  event_time TIMESTAMP_LTZ(3),
  WATERMARK FOR event_time AS event_time - INTERVAL '5' SECOND
) WITH ('connector' = 'fluvial', 'topic' = 'events');
CREATE TABLE seen (
  event_id STRING,
  event_type STRING,
  PRIMARY KEY (event_id) NOT ENFORCED
) WITH ('connector' = 'store', 'table' = 'seen');
INSERT INTO seen SELECT event_id, event_type FROM events;
"""

#: only the pipeline and the web server: no archiver, no maintenance schedule
SETTINGS = {"FLUVIAL_UP__ARCHIVE": "false", "FLUVIAL_UP__MAINTENANCE_SCHEDULE": ""}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _ids(project: Project, table: str) -> set[str]:
    with open_store(project) as store:
        try:
            return set(store.scan(table).column("event_id").to_pylist())
        except NotFoundError:
            return set()


def _logged_ids(project: Project) -> set[str]:
    with project.open_log() as log:
        return set(log.snapshot("events").column("event_id").to_pylist())


def _post(url: str, secret: str, n: int, minute: int) -> None:
    events = [
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "page_view",
            "event_time": f"2026-01-02T03:{minute:02d}:{i % 60:02d}.000Z",
            "anonymous_id": f"anon-{i % 7}",
            "page": {"url": f"https://shop.example/p/{i % 5}", "referrer": None, "title": "P"},
        }
        for i in range(n)
    ]
    body = b"\n".join(orjson.dumps(e) for e in events) + b"\n"
    response = httpx.post(
        url + "/v1/events",
        content=body,
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/x-ndjson"},
        timeout=30,
    )
    assert response.status_code == 200 and response.json()["accepted"] == n, response.text


def _worker(project: Project, name: str) -> dict[str, Any]:
    doc = read_status(status_path(project)) or {"workers": []}
    return next((w for w in doc["workers"] if w["name"] == name), {})


@pytest.fixture
def platform(project: Project) -> Iterator[tuple[Project, str, str]]:
    (project.root / "pipelines" / "views.sql").write_text(PIPELINE, encoding="utf-8")
    _, secret = KeyStore.for_project(project).create("test")
    port = _free_port()
    env = {**os.environ, **SETTINGS, "PYTHONPATH": os.pathsep.join(sys.path)}
    log = (project.root / "up.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fluvial",
            "up",
            "--project",
            str(project.root),
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=project.root,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            try:
                return httpx.get(url + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(healthy, "the web worker")
        yield project, url, secret
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.slow
def test_up_restarts_a_pipeline_on_the_version_a_replay_switched_to(
    platform: tuple[Project, str, str],
) -> None:
    project, url, secret = platform
    _post(url, secret, 200, minute=0)
    first = _wait(lambda: _ids(project, "seen") == _logged_ids(project), "version 1's rows")
    assert len(_logged_ids(project)) == 200 and first
    before = _worker(project, "stream-views")
    assert before["state"] == "running" and before["restarts"] == 0

    root = str(project.root)
    replay = subprocess.run(
        [sys.executable, "-m", "fluvial", "stream", "replay", "views", "--project", root],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=120,
        check=False,
    )
    assert replay.returncode == 0, replay.stderr
    assert current_version(project, "views") == 2
    assert _ids(project, "seen__v2") == _logged_ids(project)  # the replay rebuilt everything

    # the supervisor notices the switch and restarts the worker on version 2
    restarted = _wait(
        lambda: (
            (w := _worker(project, "stream-views")).get("restarts") == 1
            and w.get("state") == "running"
            and w
        ),
        "the worker's restart",
    )
    assert restarted["pid"] != before["pid"]
    assert restarted["argv"][-2:] == ["--from", "checkpoint"]  # version 2's own checkpoint
    version1 = _ids(project, "seen")

    _post(url, secret, 150, minute=1)
    logged = _logged_ids(project)
    assert len(logged) == 350
    _wait(lambda: _ids(project, "seen__v2") == logged, "version 2's rows after the switch")
    # version 1 stopped at the switch: it holds none of the events posted after it
    assert _ids(project, "seen") == version1 and len(version1) == 200
    stream_status = json.loads(
        (project.data_dir / "stream" / "views__v2" / "status.json").read_text()
    )
    assert stream_status["state"] == "running"
    assert sum(p["rows_in"] for p in stream_status["pipelines"]) >= 150
