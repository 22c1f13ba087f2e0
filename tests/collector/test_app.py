"""The collector app in-process (httpx.ASGITransport) against a real embedded log."""

from __future__ import annotations

import asyncio
import gzip
import threading
from typing import Any

import httpx
import orjson
import pytest

from fluvial.collector.app import create_app
from fluvial.collector.keys import KeyStore
from fluvial.events.ingest import Ingestor
from fluvial.log.base import EventLog
from fluvial.project import Project

from .conftest import Running, count_rows, make_event, read_topic

pytestmark = pytest.mark.anyio


def _ndjson(events: list[Any]) -> bytes:
    return b"\n".join(orjson.dumps(e) for e in events) + b"\n"


def _nothing_stored(log: EventLog) -> bool:
    return count_rows(log, "events") == 0 and count_rows(log, "events_failed") == 0


# -- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer fk_notakey"},
        {"Authorization": "Basic Zm9vOmJhcg=="},
        {"X-Fluvial-Key": "fk_notakey"},
    ],
    ids=["missing", "unknown-bearer", "wrong-scheme", "unknown-header"],
)
async def test_bad_or_missing_key_is_401_and_stores_nothing(
    running: Running, headers: dict[str, str]
) -> None:
    r = await running.client.post("/v1/events", json=make_event(), headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "write key" in r.json()["error"]
    assert _nothing_stored(running.log)


async def test_both_key_headers_work_and_bind_the_app_id(running: Running) -> None:
    a, b = make_event(), make_event()
    r1 = await running.client.post("/v1/events", json=a, headers=running.auth)
    r2 = await running.client.post("/v1/events", json=b, headers={"X-Fluvial-Key": running.secret})
    assert r1.json() == r2.json() == {"accepted": 1, "rejected": 0, "errors": []}
    table = read_topic(running.log, "events")
    assert table is not None
    assert sorted(table.column("event_id").to_pylist()) == sorted([a["event_id"], b["event_id"]])
    assert set(table.column("app_id").to_pylist()) == {"shop"}  # from the key


async def test_revocation_takes_effect_on_the_running_app(
    running: Running, project: Project
) -> None:
    r = await running.client.post("/v1/events", json=make_event(), headers=running.auth)
    assert r.status_code == 200
    KeyStore.for_project(project).revoke(running.secret)  # as `fluvial keys revoke` would
    r = await running.client.post("/v1/events", json=make_event(), headers=running.auth)
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    assert count_rows(running.log, "events") == 1


# -- body formats -------------------------------------------------------------------------


async def test_every_body_format(running: Running) -> None:
    single = make_event()
    array = [make_event() for _ in range(3)]
    lines = [make_event() for _ in range(4)]
    zipped = [make_event() for _ in range(5)]
    posts = [
        ({"Content-Type": "application/json"}, orjson.dumps(single), 1),
        ({"Content-Type": "application/json"}, orjson.dumps(array), 3),
        ({"Content-Type": "application/x-ndjson"}, _ndjson(lines), 4),
        (
            {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
            gzip.compress(_ndjson(zipped)),
            5,
        ),
    ]
    for headers, body, n in posts:
        r = await running.client.post(
            "/v1/events", content=body, headers={**running.auth, **headers}
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"accepted": n, "rejected": 0, "errors": []}
    table = read_topic(running.log, "events")
    assert table is not None
    expected = [e["event_id"] for e in [single, *array, *lines, *zipped]]
    assert sorted(table.column("event_id").to_pylist()) == sorted(expected)
    assert count_rows(running.log, "events_failed") == 0


async def test_empty_array_accepts_nothing(running: Running) -> None:
    r = await running.client.post("/v1/events", content=b"[]", headers=running.auth)
    assert r.json() == {"accepted": 0, "rejected": 0, "errors": []}


async def test_per_event_errors_are_reported_and_dead_lettered(running: Running) -> None:
    good = [make_event() for _ in range(3)]
    bad_time = make_event(event_time="yesterday")
    big = make_event(properties={"path": "x" * (70 * 1024)})
    other_app = make_event(app_id="blog")  # contradicts the key's app_id
    lines = [
        orjson.dumps(good[0]),
        b"{not json",
        orjson.dumps(bad_time),
        orjson.dumps(good[1]),
        orjson.dumps(big),
        orjson.dumps(other_app),
        orjson.dumps(good[2]),
    ]
    r = await running.client.post(
        "/v1/events",
        content=b"\n".join(lines),
        headers={**running.auth, "Content-Type": "application/x-ndjson"},
    )
    # 200 even though some were rejected: they are stored, with their reasons
    assert r.status_code == 200
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (3, 4)
    got = {e["index"]: e for e in body["errors"]}
    assert {i: e["reason"] for i, e in got.items()} == {
        1: "payload_format",
        2: "schema_violation",
        4: "size_violation",
        5: "schema_violation",
    }
    assert got[2]["path"] == "event_time" and got[2]["event_id"] == bad_time["event_id"]
    assert set(body["errors"][0]) == {"index", "reason", "error", "path", "event_id"}
    events = read_topic(running.log, "events")
    failed = read_topic(running.log, "events_failed")
    assert events is not None and failed is not None
    assert sorted(events.column("event_id").to_pylist()) == sorted(e["event_id"] for e in good)
    assert sorted(failed.column("reason").to_pylist()) == sorted(
        e["reason"] for e in body["errors"]
    )
    assert set(failed.column("app_id").to_pylist()) <= {"shop", "blog"}


async def test_all_rejected_is_still_200(running: Running) -> None:
    r = await running.client.post(
        "/v1/events",
        content=b"1\n2\n",
        headers={**running.auth, "Content-Type": "application/x-ndjson"},
    )
    assert r.status_code == 200
    assert r.json()["accepted"] == 0 and r.json()["rejected"] == 2
    assert count_rows(running.log, "events_failed") == 2


# -- limits and undecodable bodies: answered before anything is stored --------------------


async def test_body_over_the_limit_is_413(running: Running) -> None:
    limit = 1024 * 1024
    events = []
    while sum(len(orjson.dumps(e)) + 1 for e in events) <= limit:
        events.append(make_event(properties={"path": "p" * 1000}))
    body = _ndjson(events)
    assert len(body) > limit
    r = await running.client.post(
        "/v1/events",
        content=body,
        headers={**running.auth, "Content-Type": "application/x-ndjson"},
    )
    assert r.status_code == 413 and "max_request_bytes" in r.json()["error"]
    # the same events gzipped are small on the wire, but still too large once inflated
    r = await running.client.post(
        "/v1/events",
        content=gzip.compress(body),
        headers={
            **running.auth,
            "Content-Type": "application/x-ndjson",
            "Content-Encoding": "gzip",
        },
    )
    assert r.status_code == 413 and "after gzip decompression" in r.json()["error"]
    assert _nothing_stored(running.log)


async def test_gzip_bomb_is_413(running: Running) -> None:
    bomb = gzip.compress(b" " * (64 << 20), compresslevel=9)
    r = await running.client.post(
        "/v1/events", content=bomb, headers={**running.auth, "Content-Encoding": "gzip"}
    )
    assert r.status_code == 413
    assert _nothing_stored(running.log)


@pytest.mark.parametrize(
    "headers, body, status, message",
    [
        ({"Content-Encoding": "gzip"}, b"definitely not gzip", 400, "invalid gzip"),
        (
            {"Content-Encoding": "gzip"},
            gzip.compress(b'{"a": 1}', mtime=0)[:-10],
            400,
            "ends before",
        ),
        ({"Content-Encoding": "br"}, b"{}", 415, "Content-Encoding"),
        ({"Content-Type": "text/csv"}, b"a,b\n", 415, "content type"),
    ],
)
async def test_undecodable_bodies_store_nothing(
    running: Running, headers: dict[str, str], body: bytes, status: int, message: str
) -> None:
    r = await running.client.post("/v1/events", content=body, headers={**running.auth, **headers})
    assert r.status_code == status
    assert message in r.json()["error"]
    assert _nothing_stored(running.log)


# -- concurrency and back-pressure --------------------------------------------------------


async def test_concurrent_requests_are_each_stored_once(running: Running) -> None:
    batches = [[make_event(anonymous_id=f"a{i % 7}") for _ in range(20)] for i in range(40)]

    async def post(batch: list[Any]) -> httpx.Response:
        return await running.client.post(
            "/v1/events",
            content=_ndjson(batch),
            headers={**running.auth, "Content-Type": "application/x-ndjson"},
        )

    responses = await asyncio.gather(*(post(b) for b in batches))
    assert [r.json().get("accepted", r.text) for r in responses] == [20] * 40
    table = read_topic(running.log, "events")
    assert table is not None
    ids = table.column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == 800
    assert set(ids) == {e["event_id"] for b in batches for e in b}


class _BlockedLog:
    """A real log whose appends wait for a gate: a stuck disk, as the collector sees it."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self.gate = threading.Event()
        self.entered = threading.Event()

    def append(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        assert self.gate.wait(20)
        return self._log.append(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


async def test_overload_answers_503_at_once_and_stores_nothing(tmp_path: Any) -> None:
    project = Project.init(
        tmp_path / "p", exist_ok=False
    )  # a limit of 5 pending events, from the environment as users would set it
    project = Project(project.root, env={"FLUVIAL_COLLECTOR__MAX_PENDING_EVENTS": "5"})
    keys = KeyStore.for_project(project)
    _, secret = keys.create("shop")
    auth = {"Authorization": f"Bearer {secret}", "Content-Type": "application/x-ndjson"}
    with project.open_log() as real:
        blocked = _BlockedLog(real)
        ingestor = Ingestor.for_project(project, log=blocked)  # type: ignore[arg-type]
        app = create_app(project, log=real, ingestor=ingestor, keys=keys)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://c") as client:
                first = [make_event() for _ in range(4)]
                held = asyncio.ensure_future(
                    client.post("/v1/events", content=_ndjson(first), headers=auth)
                )
                for _ in range(500):
                    if blocked.entered.is_set():
                        break
                    await asyncio.sleep(0.01)
                refused = [make_event() for _ in range(2)]
                r = await asyncio.wait_for(
                    client.post("/v1/events", content=_ndjson(refused), headers=auth), 2
                )
                assert r.status_code == 503
                assert r.headers["retry-after"] == "1"
                assert "4 events pending, limit 5" in r.json()["error"]
                metrics = (await client.get("/metrics")).text
                assert "fluvial_collector_pending_events 4.0" in metrics
                assert "fluvial_collector_overloaded_events_total 2.0" in metrics
                blocked.gate.set()
                assert (await held).json()["accepted"] == 4
                # the refused events were never stored; a retry now goes through
                r = await client.post("/v1/events", content=_ndjson(refused), headers=auth)
                assert r.json()["accepted"] == 2
        table = read_topic(real, "events")
        assert table is not None
        assert sorted(table.column("event_id").to_pylist()) == sorted(
            e["event_id"] for e in first + refused
        )


# -- health and metrics -------------------------------------------------------------------


async def test_healthz(running: Running) -> None:
    r = await running.client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["log"]["backend"] == "embedded"


async def test_metrics_count_what_happened(running: Running) -> None:
    c, auth = running.client, running.auth
    await c.post("/v1/events", json=[make_event(), make_event(), {"x": 1}], headers=auth)
    await c.post("/v1/events", content=b"not json", headers=auth)
    await c.post("/v1/events", json=make_event())  # 401
    r = await c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['fluvial_collector_requests_total{path="/v1/events",status="200"}'] == 2
    assert samples['fluvial_collector_requests_total{path="/v1/events",status="401"}'] == 1
    assert samples["fluvial_collector_events_accepted_total"] == 2
    assert samples['fluvial_collector_events_rejected_total{reason="schema_violation"}'] == 1
    assert samples['fluvial_collector_events_rejected_total{reason="payload_format"}'] == 1
    assert samples["fluvial_collector_append_seconds_count"] == 2
    assert samples["fluvial_collector_request_seconds_count"] == 3
    assert samples["fluvial_collector_pending_events"] == 0
    # sizes come from the log itself at scrape time
    events_info = running.log.topic("events")
    assert samples['fluvial_log_topic_bytes{topic="events"}'] == events_info.bytes > 0
    assert samples['fluvial_log_topic_records{topic="events_failed"}'] == 2
