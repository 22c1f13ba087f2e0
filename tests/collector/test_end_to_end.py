"""Done when: a real ``fluvial collect`` takes generated clickstream traffic and every
line ends in exactly one place, as many times as it was posted.

The collector runs as a subprocess on a free port (the way users run it); the traffic is
helper-generated clickstream (valid, duplicate, out-of-order and invalid lines, each
labelled with its kind), posted as NDJSON bodies of varying sizes, some gzipped, over
several concurrent connections. The expectation is computed from the generator's labels,
independently of the collector's answers.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest

from fluvial.collector.keys import KeyStore
from fluvial.generate.clickstream import ClickstreamConfig, generate_clickstream
from fluvial.generate.faults import EXPECTED_REASON
from fluvial.project import Project

from .conftest import read_topic

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_collector(project: Project, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "fluvial", "collect", "--project", str(project.root)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"collector exited with {proc.returncode}:\n{out}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("collector did not answer /healthz within 20 s")


def _chunks(n: int, sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    out, start, k = [], 0, 0
    while start < n:
        stop = min(n, start + sizes[k % len(sizes)])
        out.append((start, stop))
        start, k = stop, k + 1
    return out


async def _post_all(url: str, key: str, bodies: list[tuple[bytes, bool]]) -> list[httpx.Response]:
    limit = asyncio.Semaphore(6)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def post(body: bytes, zipped: bool) -> httpx.Response:
            async with limit:
                if zipped:
                    return await client.post(
                        "/v1/events",
                        content=gzip.compress(body),
                        headers={**headers, "Content-Encoding": "gzip"},
                    )
                return await client.post("/v1/events", content=body, headers=headers)

        return await asyncio.gather(*(post(b, z) for b, z in bodies))


def test_generated_traffic_lands_exactly_once(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "shop")
    _, key = KeyStore.for_project(project).create("demo")
    config = ClickstreamConfig(
        events=5000,
        seed=11,
        users=200,
        app_id="demo",
        duplicate_fraction=0.03,
        invalid_fraction=0.04,
        late_fraction=0.02,
    )
    generated = list(generate_clickstream(config))
    kinds = Counter(g.kind.split(":")[0] for g in generated)
    assert kinds["valid"] and kinds["duplicate"] > 50 and kinds["invalid"] > 100
    assert len({g.kind for g in generated if g.kind.startswith("invalid:")}) >= 8
    assert any(g.late for g in generated)  # out-of-order traffic is part of the test

    spans = _chunks(len(generated), (100, 37, 250, 1, 180))
    bodies = [
        (b"".join(g.line + b"\n" for g in generated[a:b]), i % 3 == 0)
        for i, (a, b) in enumerate(spans)
    ]
    port = _free_port()
    proc = _start_collector(project, port)
    try:
        responses = asyncio.run(_post_all(f"http://127.0.0.1:{port}", key, bodies))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, proc.stdout.read().decode() if proc.stdout else ""

    # -- the answers: counts add up, and each error is where the generator put a fault --
    assert [r.status_code for r in responses] == [200] * len(bodies)
    for (a, b), response in zip(spans, responses, strict=True):
        body = response.json()
        chunk = generated[a:b]
        expected = {
            i: EXPECTED_REASON[g.kind.split(":", 1)[1]]
            for i, g in enumerate(chunk)
            if g.kind.startswith("invalid:")
        }
        assert {e["index"]: e["reason"] for e in body["errors"]} == expected
        assert body["accepted"] + body["rejected"] == len(chunk)
        assert body["rejected"] == len(expected)
    total_accepted = sum(r.json()["accepted"] for r in responses)
    total_rejected = sum(r.json()["rejected"] for r in responses)
    assert total_accepted == kinds["valid"] + kinds["duplicate"]
    assert total_rejected == kinds["invalid"]

    # -- the log, read back by another process after the collector stopped ----------------
    with project.open_log() as log:
        events = read_topic(log, "events")
        failed = read_topic(log, "events_failed")
    assert events is not None and failed is not None
    posted_ids = Counter(
        orjson.loads(g.line)["event_id"] for g in generated if not g.kind.startswith("invalid:")
    )
    stored_ids = Counter(events.column("event_id").to_pylist())
    assert stored_ids == posted_ids  # duplicates twice, everything else once, nothing lost
    # the resends really were resends of posted events (a line may be resent twice)
    assert sum(posted_ids.values()) - len(posted_ids) == kinds["duplicate"]
    assert set(events.column("app_id").to_pylist()) == {"demo"}

    posted_bad = Counter(
        (g.line.decode(), EXPECTED_REASON[g.kind.split(":", 1)[1]])
        for g in generated
        if g.kind.startswith("invalid:")
    )
    stored_bad = Counter(
        zip(failed.column("payload").to_pylist(), failed.column("reason").to_pylist(), strict=True)
    )
    assert stored_bad == posted_bad
    assert set(failed.column("source").to_pylist()) == {"collector"}


def test_sigterm_finishes_requests_in_flight(tmp_path: Path) -> None:
    """Requests answered 200 are stored; nothing is stored that was not answered."""
    project = Project.init(tmp_path / "shop")
    _, key = KeyStore.for_project(project).create("demo")
    generated = list(
        generate_clickstream(
            ClickstreamConfig(events=3000, seed=5, app_id="demo", invalid_fraction=0.0)
        )
    )
    bodies = [
        b"".join(g.line + b"\n" for g in generated[a : a + 100])
        for a in range(0, len(generated), 100)
    ]
    port = _free_port()
    proc = _start_collector(project, port)
    url = f"http://127.0.0.1:{port}"

    async def run() -> list[httpx.Response | Exception]:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            tasks = [
                asyncio.ensure_future(client.post("/v1/events", content=b, headers=headers))
                for b in bodies
            ]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            os.kill(proc.pid, signal.SIGTERM)  # while most requests are still in flight
            return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        results = asyncio.run(run())
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    acknowledged = Counter(
        orjson.loads(line)["event_id"]
        for body, r in zip(bodies, results, strict=True)
        if isinstance(r, httpx.Response) and r.status_code == 200
        for line in body.splitlines()
    )
    assert acknowledged  # at least the first request went through
    outcomes = Counter(
        r.status_code if isinstance(r, httpx.Response) else type(r).__name__ for r in results
    )
    # answered, refused while shutting down, or never taken: never a failed append
    assert set(outcomes) <= {200, 503, "ConnectError", "RemoteProtocolError", "ReadError"}
    with project.open_log() as log:
        events = read_topic(log, "events")
    stored = Counter(events.column("event_id").to_pylist()) if events is not None else Counter()
    assert stored == acknowledged
