"""Benchmark the collector end to end: HTTP in, durable appends out, on this machine.

Starts ``fluvial collect`` (one uvicorn process) on a fresh project with the default,
durable settings (fsync before acknowledging), then drives it from this process with
pre-built NDJSON bodies of 100 valid events over keep-alive connections:

1. **throughput**: ``--connections`` connections post back to back for ``--seconds``;
   reports accepted events/s (from the responses' ``accepted`` counts) and checks the log
   holds exactly that many events afterwards. Target: >= 50,000 events/s.
2. **latency at a fixed rate**: requests are scheduled open-loop at ``--rate`` events/s
   (100 requests/s at the default 10,000); latency is measured from each request's
   *scheduled* time, so a stall is not hidden by coordinated omission. Target: p99 <= 50 ms.

The load client is a minimal HTTP/1.1 client on asyncio streams (requests are pre-encoded
bytes), so it costs the shared two cores as little as possible; httpx would spend more
CPU than the server. Run::

    .venv/bin/python benchmarks/bench_collector.py [--seconds 10] [--connections 16]

It prints the figures and one JSON line (``{"benchmark": "collector", ...}``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import orjson

from fluvial.collector.keys import KeyStore
from fluvial.project import Project

EVENTS_PER_BODY = 100
TYPES = ("page_view", "click", "search", "add_to_cart")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _event(i: int) -> dict[str, object]:
    kind = TYPES[i % len(TYPES)]
    props: dict[str, object] = {
        "page_view": {"path": f"/p/{i % 500}", "category": "shoes"},
        "click": {"element": "buy-button"},
        "search": {"query": f"red shoes {i % 97}"},
        "add_to_cart": {"product_id": f"sku-{i % 300}", "quantity": 1, "price": 19.99},
    }[kind]
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": kind,
        "event_time": 1_790_000_000_000 + i,
        "sent_at": 1_790_000_000_000 + i + 50,
        "anonymous_id": f"anon-{i % 2000}",
        "session_id": f"s-{i % 800}",
        "page": {"url": f"https://shop.example/p/{i % 500}", "referrer": None, "title": "P"},
        "context": {"user_agent": "bench/1.0", "ip": "127.0.0.1", "locale": "en-GB"},
        "properties": props,
    }


def _request(host: str, port: int, key: str, body: bytes) -> bytes:
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/x-ndjson\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, int]:
    """Send one request; return (status, accepted events)."""
    writer.write(request)
    status_line = await reader.readline()
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    accepted = orjson.loads(body).get("accepted", 0) if status == 200 else 0
    return status, int(accepted)


async def _throughput(
    host: str, port: int, requests: list[bytes], connections: int, seconds: float
) -> dict[str, float]:
    deadline = time.perf_counter() + seconds
    accepted = 0
    statuses: dict[int, int] = {}
    latencies: list[float] = []

    async def connection(k: int) -> None:
        nonlocal accepted
        reader, writer = await asyncio.open_connection(host, port)
        i = k
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            status, n = await _exchange(reader, writer, requests[i % len(requests)])
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
            accepted += n
            i += connections
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(k) for k in range(connections)))
    elapsed = time.perf_counter() - started
    lat = np.array(latencies) * 1000
    return {
        "events_per_s": accepted / elapsed,
        "requests": float(len(latencies)),
        "accepted": float(accepted),
        "non_200": float(sum(v for s, v in statuses.items() if s != 200)),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


async def _fixed_rate(
    host: str, port: int, requests: list[bytes], rate_events: float, seconds: float
) -> dict[str, float]:
    rate = rate_events / EVENTS_PER_BODY  # requests per second
    total = int(rate * seconds)
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(32):
        pool.put_nowait(await asyncio.open_connection(host, port))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    accepted = 0
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        nonlocal accepted
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        conn = await pool.get()  # waiting for a free connection counts as latency
        try:
            status, n = await _exchange(*conn, requests[i % len(requests)])
            accepted += n
        finally:
            pool.put_nowait(conn)
        latencies.append(time.perf_counter() - scheduled)
        statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(one(i) for i in range(total)))
    while not pool.empty():
        pool.get_nowait()[1].close()
    lat = np.array(latencies) * 1000
    return {
        "accepted": float(accepted),
        "rate_events_per_s": rate_events,
        "requests": float(total),
        "non_200": float(sum(v for s, v in statuses.items() if s != 200)),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
    }


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the collector exited with {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("the collector did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--connections", type=int, default=16, help="throughput connections")
    parser.add_argument("--rate", type=float, default=10_000.0, help="events/s, latency phase")
    parser.add_argument("--workers", type=int, default=4, help="collector --workers")
    parser.add_argument(
        "--max-batch-events", type=int, default=20_000, help="collector coalescing (1: off)"
    )
    parser.add_argument("--bodies", type=int, default=200, help="distinct pre-built bodies")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fluvial-bench-") as tmp:
        project = Project.init(Path(tmp) / "project")
        _, key = KeyStore.for_project(project).create("bench")
        host, port = "127.0.0.1", _free_port()
        bodies = [
            b"\n".join(
                orjson.dumps(_event(b * EVENTS_PER_BODY + i)) for i in range(EVENTS_PER_BODY)
            )
            for b in range(args.bodies)
        ]
        requests = [_request(host, port, key, body) for body in bodies]
        cmd = [sys.executable, "-m", "fluvial", "collect", "--project", str(project.root)]
        cmd += ["--host", host, "--port", str(port), "--workers", str(args.workers)]
        cmd += ["--max-batch-events", str(args.max_batch_events)]
        cmd += ["--log-level", "warning"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, env=env)
        try:
            _wait_ready(f"http://{host}:{port}", proc)
            # warm up: schemas compiled, topics created, files open
            warm = asyncio.run(_throughput(host, port, requests, 4, 1.0))
            through = asyncio.run(_throughput(host, port, requests, args.connections, args.seconds))
            latency = asyncio.run(_fixed_rate(host, port, requests, args.rate, args.seconds))
            metrics = httpx.get(f"http://{host}:{port}/metrics").text
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
        with project.open_log() as log:
            stored = log.topic("events").records
            failed = log.topic("events_failed").records

    acknowledged = int(warm["accepted"] + through["accepted"] + latency["accepted"])
    batch = [ln for ln in metrics.splitlines() if ln.startswith("fluvial_collector_batch_events")]
    count = next(float(ln.split()[-1]) for ln in batch if "_count" in ln)
    total = next(float(ln.split()[-1]) for ln in batch if "_sum" in ln)
    print(f"collector benchmark ({os.cpu_count()} cores, client and server on this machine)")
    print(
        f"  throughput: {through['events_per_s']:,.0f} accepted events/s "
        f"({args.connections} connections, {EVENTS_PER_BODY} events/request, "
        f"p50 {through['p50_ms']:.1f} ms, p99 {through['p99_ms']:.1f} ms, "
        f"{through['non_200']:.0f} non-200)   target >= 50,000"
    )
    print(
        f"  latency at {args.rate:,.0f} events/s: p50 {latency['p50_ms']:.1f} ms, "
        f"p99 {latency['p99_ms']:.1f} ms, max {latency['max_ms']:.1f} ms   target p99 <= 50 ms"
    )
    print(
        f"  appends: {count:,.0f} calls, {total / max(count, 1):,.0f} events per append; "
        f"stored {stored:,} events (acknowledged {acknowledged:,}), {failed:,} failed; "
        f"collector exit code {code}"
    )
    print(
        json.dumps(
            {
                "benchmark": "collector",
                "cores": os.cpu_count(),
                "events_per_s": round(through["events_per_s"]),
                "throughput_p99_ms": round(through["p99_ms"], 2),
                "fixed_rate_events_per_s": args.rate,
                "fixed_rate_p50_ms": round(latency["p50_ms"], 2),
                "fixed_rate_p99_ms": round(latency["p99_ms"], 2),
                "events_per_append": round(total / max(count, 1), 1),
                "stored_events": stored,
                "acknowledged_events": acknowledged,
                "failed_events": failed,
                "connections": args.connections,
                "workers": args.workers,
                "max_batch_events": args.max_batch_events,
            }
        )
    )


if __name__ == "__main__":
    main()
