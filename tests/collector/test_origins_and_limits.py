"""Write keys scoped to browser origins (CORS) and rate-limited in events per second,
against the real app and an embedded log: a refused request stores nothing."""

from __future__ import annotations

import httpx
import pytest

from fluvial.cli import main
from fluvial.collector.app import create_app
from fluvial.collector.keys import KeyStore
from fluvial.collector.limits import RateLimiter
from fluvial.errors import UsageError
from fluvial.log.base import EventLog
from fluvial.project import Project

from .conftest import count_rows, make_event

pytestmark = pytest.mark.anyio

SHOP = "https://shop.example"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_origins_cors_and_refusals(project: Project, log: EventLog, keys: KeyStore) -> None:
    _, browser = keys.create("shop", origins=[SHOP, "http://localhost:3000"])
    _, server = keys.create("backend")
    app = create_app(project, log=log, keys=keys)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as client:
            # the preflight: allowed for an origin some key lists, with the CORS headers
            r = await client.options(
                "/v1/events",
                headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"},
            )
            assert r.status_code == 204
            assert r.headers["access-control-allow-origin"] == SHOP
            assert "POST" in r.headers["access-control-allow-methods"]
            assert "authorization" in r.headers["access-control-allow-headers"].lower()
            r = await client.options("/v1/events", headers={"Origin": "https://evil.example"})
            assert r.status_code == 403 and "access-control-allow-origin" not in r.headers

            auth = {"Authorization": f"Bearer {browser}"}
            r = await client.post("/v1/events", json=make_event(), headers={**auth, "Origin": SHOP})
            assert r.status_code == 200 and r.json()["accepted"] == 1
            assert r.headers["access-control-allow-origin"] == SHOP
            assert r.headers["vary"] == "Origin"
            # another site with the same key: refused, nothing stored
            r = await client.post(
                "/v1/events", json=make_event(), headers={**auth, "Origin": "https://evil.example"}
            )
            assert r.status_code == 403 and "not allowed" in r.json()["error"]
            assert "access-control-allow-origin" not in r.headers
            # a key without origins serves servers (no Origin) and refuses browsers
            other = {"Authorization": f"Bearer {server}"}
            r = await client.post("/v1/events", json=make_event(), headers=other)
            assert r.status_code == 200
            r = await client.post(
                "/v1/events", json=make_event(), headers={**other, "Origin": SHOP}
            )
            assert r.status_code == 403 and "server-side senders only" in r.json()["error"]
            text = (await client.get("/metrics")).text
    assert count_rows(log, "events") == 2
    assert count_rows(log, "events_failed") == 0
    path = "/v1/events"
    assert (
        _metric(text, "fluvial_collector_refused_requests_total", path=path, reason="origin") == 3
    )


async def test_rate_limit_counts_events_and_refuses_with_retry_after(
    project: Project, log: EventLog, keys: KeyStore
) -> None:
    _, secret = keys.create("shop", rate_limit=10, burst=20)
    app = create_app(project, log=log, keys=keys)
    clock = Clock()
    app.state.collector.limiter = RateLimiter(clock=clock)
    auth = {"Authorization": f"Bearer {secret}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as client:
            r = await client.post(
                "/v1/events", json=[make_event() for _ in range(15)], headers=auth
            )
            assert r.status_code == 200 and r.json()["accepted"] == 15
            # 5 tokens left: a request of 8 events is refused whole, 0.3 s to wait -> 1 s
            r = await client.post("/v1/events", json=[make_event() for _ in range(8)], headers=auth)
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            assert "10 events/s" in r.json()["error"]
            r = await client.post("/v1/events", json=[make_event() for _ in range(5)], headers=auth)
            assert r.status_code == 200  # ...while 5 fit
            clock.now += 0.8  # 8 tokens back
            r = await client.post("/v1/events", json=[make_event() for _ in range(8)], headers=auth)
            assert r.status_code == 200
            r = await client.post("/v1/events", json=[make_event()], headers=auth)
            assert r.status_code == 429
            clock.now += 100  # refilled to the burst, never beyond it
            r = await client.post(
                "/v1/events", json=[make_event() for _ in range(21)], headers=auth
            )
            assert r.status_code == 413 and "burst of 20" in r.json()["error"]
            r = await client.post(
                "/v1/events", json=[make_event() for _ in range(20)], headers=auth
            )
            assert r.status_code == 200
            r = await client.post("/v1/events", json=[make_event()], headers=auth)
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            text = (await client.get("/metrics")).text
    assert count_rows(log, "events") == 15 + 5 + 8 + 20
    refused = "fluvial_collector_refused_requests_total"
    assert _metric(text, refused, path="/v1/events", reason="rate_limit") == 3
    assert _metric(text, refused, path="/v1/events", reason="burst") == 1
    events = "fluvial_collector_refused_events_total"
    assert _metric(text, events, reason="rate_limit") == 8 + 1 + 1
    assert _metric(text, events, reason="burst") == 21


def test_limits_are_kept_with_the_key_and_checked(project: Project) -> None:
    keys = KeyStore.for_project(project)
    key, _ = keys.create("shop", origins=["HTTPS://Shop.Example/", SHOP], rate_limit=2.5)
    (stored,) = KeyStore.for_project(project).list_keys()
    assert stored == key
    assert stored.origins == (SHOP,) and stored.rate_limit == 2.5 and stored.burst == 2
    for bad in ("shop.example", "https://shop.example/path", "ftp://x"):
        with pytest.raises(UsageError, match="expected an origin"):
            keys.create("shop", origins=[bad])
    with pytest.raises(UsageError, match="rate limit must be a positive"):
        keys.create("shop", rate_limit=0)
    with pytest.raises(UsageError, match="needs a rate limit"):
        keys.create("shop", burst=5)


def test_cli_creates_and_lists_origins_and_limits(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    root = str(project.root)
    args = ["keys", "create", "web", "--origin", SHOP, "--origin", "http://localhost:3000"]
    assert main([*args, "--rate-limit", "100", "--burst", "500", "--json", "-p", root]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["origins"] == [SHOP, "http://localhost:3000"]
    assert (created["rate_limit"], created["burst"]) == (100.0, 500)
    assert main(["keys", "list", "--json", "-p", root]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["origins"] == created["origins"] and "key" not in listed
    assert main(["keys", "create", "web", "--origin", "shop", "-p", root]) == 2
    assert "expected an origin" in capsys.readouterr().err
