"""Benchmark end-to-end freshness: an event posted → visible in the live dashboard's API.

Starts ``fluvial up`` on loopback for a fresh project whose pipeline upserts every *probe*
event into the operational store (``'connector' = 'store'``, checkpointed every
``--checkpoint``), and drives the platform as a dashboard would see it:

1. **load**: NDJSON bodies of 100 events are POSTed to the collector open-loop at a fixed
   ``--rate`` (10,000 events/s by default: 100 requests/s over a pool of keep-alive
   connections), for ``--seconds``. Every ``--probe-every``-th body carries one probe
   event (a UUID with a reserved, numbered prefix) whose send time this process records.
2. **freshness**: meanwhile ``GET /api/metrics/live`` (the numbers the live page shows;
   ``/api/events`` pushes the same document every ``[api] events_interval_seconds``) is
   polled every ``--poll`` seconds; a probe's freshness is the time from writing its
   request to receiving the first live document that lists it. The poll interval bounds
   the resolution. A probe never seen within ``--drain`` seconds after the load counts as
   missing.

The collector's acknowledgement latency (scheduled send → response, as in
``bench_collector.py``), the achieved rate, the log's final count and what the pipeline
read are reported too, with the machine's load average. ``--with-example`` also runs the
clickstream example's ``page_views_per_minute`` pipeline (the live dashboard's top
pages), so two pipelines read the stream. Run::

    .venv/bin/python benchmarks/serve/bench_freshness.py [--seconds 45] [--rate 10000]

It prints the figures and one JSON line (``{"benchmark": "freshness", ...}``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

if __package__ in (None, ""):  # run as a script: make ``fluvial`` and ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from benchmarks.bench_collector import _event, _exchange, _free_port, _request
from fluvial.collector.keys import KeyStore
from fluvial.project import Project

ROOT = Path(__file__).resolve().parents[2]
EVENTS_PER_BODY = 100
TABLE = "freshness_probes"
#: probe event ids: UUIDs (the collector requires them) with a prefix no random one has
#: in practice, numbered so that the newest probes are the newest keys
PROBE_PREFIX = "f7e5f7e5-0000-4000-8000-"

PIPELINE = """
-- every probe event, upserted into the operational store as soon as a checkpoint commits
SET 'execution.checkpointing.interval' = '{checkpoint}';

CREATE TABLE events (
  event_id STRING,
  event_type STRING,
  event_time TIMESTAMP_LTZ(3)
) WITH ('connector' = 'fluvial', 'topic' = 'events');

CREATE TABLE freshness_probes (
  event_id STRING,
  event_type STRING,
  event_time TIMESTAMP_LTZ(3),
  PRIMARY KEY (event_id) NOT ENFORCED
) WITH ('connector' = 'store', 'table' = 'freshness_probes');

INSERT INTO freshness_probes
SELECT event_id, event_type, event_time FROM events WHERE event_id LIKE '{prefix}%';
"""


def _probe_id(n: int) -> str:
    return f"{PROBE_PREFIX}{n:012d}"


def _probe(n: int) -> bytes:
    now = int(time.time() * 1000)
    event = _event(n) | {"event_id": _probe_id(n), "event_time": now, "sent_at": now}
    return orjson.dumps(event)


def _bodies(count: int) -> list[bytes]:
    """*count* bodies of EVENTS_PER_BODY valid events (lines end with a newline)."""
    out = []
    for b in range(count):
        lines = [orjson.dumps(_event(b * EVENTS_PER_BODY + i)) for i in range(EVENTS_PER_BODY)]
        out.append(b"\n".join(lines) + b"\n")
    return out


def _make_project(root: Path, checkpoint: str, with_example: bool) -> tuple[Project, str]:
    project = Project.init(root)
    (project.root / "pipelines" / "freshness.sql").write_text(
        PIPELINE.format(checkpoint=checkpoint, prefix=PROBE_PREFIX), encoding="utf-8"
    )
    if with_example:
        from importlib.resources import files

        source = files("fluvial.examples") / "clickstream" / "pipelines"
        text = (source / "page_views_per_minute.sql").read_text(encoding="utf-8")
        text = text.replace("'10 s'", f"'{checkpoint}'")
        (project.root / "pipelines" / "page_views_per_minute.sql").write_text(text)
    _, secret = KeyStore.for_project(project).create("bench")
    return project, secret


class Freshness:
    """Send times of probes and when the live API first showed each."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self.polls = 0
        self.poll_ms: list[float] = []


async def _load(
    host: str,
    port: int,
    key: str,
    bodies: list[bytes],
    rate_events: float,
    seconds: float,
    probe_every: int,
    fresh: Freshness,
) -> dict[str, float]:
    rate = rate_events / EVENTS_PER_BODY
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
        conn = await pool.get()
        try:
            body = bodies[i % len(bodies)]
            probe = None
            if i % probe_every == 0:
                probe = _probe_id(i)
                body = body + _probe(i) + b"\n"
            request = _request(host, port, key, body)
            if probe is not None:
                fresh.sent[probe] = time.perf_counter()
            status, n = await _exchange(*conn, request)
            accepted += n
        finally:
            pool.put_nowait(conn)
        latencies.append(time.perf_counter() - scheduled)
        statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait()[1].close()
    lat = np.array(latencies) * 1000
    return {
        "requests": float(total),
        "accepted": float(accepted),
        "load_seconds": elapsed,
        "achieved_events_per_s": accepted / elapsed,
        "non_200": float(sum(v for s, v in statuses.items() if s != 200)),
        "ack_p50_ms": float(np.percentile(lat, 50)),
        "ack_p99_ms": float(np.percentile(lat, 99)),
    }


async def _poll(url: str, interval: float, fresh: Freshness, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        while not stop.is_set():
            began = time.perf_counter()
            response = await client.get(url + "/api/metrics/live")
            got = time.perf_counter()
            fresh.polls += 1
            fresh.poll_ms.append((got - began) * 1000)
            if response.status_code == 200:
                for table in response.json()["tables"]:
                    if table["table"] != TABLE:
                        continue
                    names = [c["name"] for c in table["columns"]]
                    at = names.index("event_id")
                    for row in table["rows"]:
                        fresh.seen.setdefault(row[at], got)
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - began)))


async def _drive(args: argparse.Namespace, port: int, key: str) -> tuple[dict, Freshness]:
    url = f"http://127.0.0.1:{port}"
    fresh = Freshness()
    stop = asyncio.Event()
    poller = asyncio.create_task(_poll(url, args.poll, fresh, stop))
    load = await _load(
        "127.0.0.1",
        port,
        key,
        _bodies(200),
        args.rate,
        args.seconds,
        args.probe_every,
        fresh,
    )
    deadline = time.perf_counter() + args.drain
    while time.perf_counter() < deadline and set(fresh.sent) - set(fresh.seen):
        await asyncio.sleep(0.1)
    stop.set()
    await poller
    return load, fresh


def _wait(check: Any, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def _pipeline_rows_in(project: Project, job: str) -> int:
    path = project.data_dir / "stream" / job / "status.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    return int(sum(p.get("rows_in") or 0 for p in doc["pipelines"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=45.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=10_000.0, help="events/s posted")
    parser.add_argument("--probe-every", type=int, default=10, help="a probe every N bodies")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between live polls")
    parser.add_argument("--drain", type=float, default=30.0, help="wait for late probes")
    parser.add_argument("--checkpoint", default="1 s", help="the pipeline's checkpoint interval")
    parser.add_argument("--with-example", action="store_true", help="add page_views_per_minute")
    parser.add_argument("--keep", type=Path, help="build the project here and keep it")
    args = parser.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="fluvial-fresh-") as scratch:
        tmp = str(args.keep or scratch)
        project, key = _make_project(Path(tmp) / "project", args.checkpoint, args.with_example)
        port = _free_port()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
            "FLUVIAL_UP__ARCHIVE": "false",
            "FLUVIAL_UP__MAINTENANCE_SCHEDULE": "",
            "FLUVIAL_API__LIVE_TABLES": TABLE,
            "FLUVIAL_API__LIVE_ROWS": "200",
            "FLUVIAL_GOVERN__REQUIRE_AUTH": "false",  # the benchmark reads /api unauthenticated
        }
        log = (Path(tmp) / "up.log").open("wb")
        command = [sys.executable, "-m", "fluvial", "up", "--project", str(project.root)]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait(lambda: httpx.get(url + "/healthz", timeout=2).status_code == 200, "the web")
            _wait(
                lambda: (project.data_dir / "stream" / "freshness" / "status.json").is_file(),
                "the pipeline",
            )
            load, fresh = asyncio.run(_drive(args, port, key))
            with project.open_log() as log_:
                logged = next(t.records for t in log_.list_topics() if t.name == "events")
            _wait(lambda: _pipeline_rows_in(project, "freshness") >= logged, "the pipeline", 60)
            rows_in = _pipeline_rows_in(project, "freshness")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            log.close()
    load_after = os.getloadavg()

    seen = [fresh.seen[p] - fresh.sent[p] for p in fresh.sent if p in fresh.seen]
    if not seen:
        raise SystemExit(f"no probe became visible ({len(fresh.sent)} sent); see up.log")
    ms = np.array(seen) * 1000
    missing = len(fresh.sent) - len(seen)
    result = {
        "benchmark": "freshness",
        "rate_events_per_s": args.rate,
        "seconds": args.seconds,
        "checkpoint": args.checkpoint,
        "poll_s": args.poll,
        "with_example": args.with_example,
        **{k: round(v, 2) for k, v in load.items()},
        "logged_events": logged,
        "pipeline_rows_in": rows_in,
        "probes": len(fresh.sent),
        "probes_missing": missing,
        "freshness_p50_ms": round(float(np.percentile(ms, 50)), 1),
        "freshness_p99_ms": round(float(np.percentile(ms, 99)), 1),
        "freshness_max_ms": round(float(ms.max()), 1),
        "live_polls": fresh.polls,
        "live_poll_p50_ms": round(float(np.percentile(fresh.poll_ms, 50)), 1),
        "loadavg_before": [round(x, 1) for x in load_before],
        "loadavg_after": [round(x, 1) for x in load_after],
    }
    print(
        f"posted at {args.rate:,.0f} events/s for {args.seconds:g} s: "
        f"achieved {load['achieved_events_per_s']:,.0f}/s, {load['accepted']:,.0f} accepted, "
        f"ack p50 {load['ack_p50_ms']:.1f} ms / p99 {load['ack_p99_ms']:.1f} ms\n"
        f"freshness (post → /api/metrics/live) over {len(seen)} probes: "
        f"p50 {result['freshness_p50_ms']:,.0f} ms, p99 {result['freshness_p99_ms']:,.0f} ms, "
        f"max {result['freshness_max_ms']:,.0f} ms; {missing} missing\n"
        f"log {logged:,} events, pipeline read {rows_in:,}; load average "
        f"{load_before[0]:.1f} → {load_after[0]:.1f}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
