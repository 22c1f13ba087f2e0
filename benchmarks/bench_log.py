"""Benchmark the embedded event log: append and read rates on one core.

Run: ``python -m benchmarks.bench_log`` (or ``python benchmarks/bench_log.py``), options:
``--events N`` (default 2,000,000), ``--batch N`` (rows per append, default 10,000),
``--threads N`` (concurrent appenders for the group-commit row, default 4),
``--dir PATH`` (where to write; default a temporary folder), ``--all-cores``.

Rows are synthetic clickstream events of :data:`fluvial.events.envelope.EVENT_SCHEMA`,
generated with NumPy and Arrow kernels. Targets: append >= 1,000,000 events/s, read >=
5,000,000 events/s. Prints a table, then one JSON line with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if __package__ in (None, ""):  # run as a script: make ``fluvial`` importable from src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fluvial.events.envelope import EVENT_SCHEMA
from fluvial.log.embedded import EmbeddedLog

APPEND_TARGET = 1_000_000
READ_TARGET = 5_000_000

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_TS = pa.timestamp("ms", tz="UTC")


def _hex_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """n random 32-character hex ids, built as one Arrow buffer."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    out = np.empty((n, 32), dtype=np.uint8)
    out[:, 0::2] = _HEX[raw >> 4]
    out[:, 1::2] = _HEX[raw & 15]
    offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out.tobytes()))


def _pick(rng: np.random.Generator, values: list[str], n: int) -> pa.Array:
    indices = pa.array(rng.integers(0, len(values), n, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(indices, pa.array(values)).dictionary_decode()


def _prefixed(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")


def clickstream(n: int, seed: int = 0) -> pa.Table:
    """*n* synthetic clickstream rows of EVENT_SCHEMA (vectorized, no per-row Python)."""
    rng = np.random.default_rng(seed)
    now = 1_795_000_000_000
    event_time = now + np.sort(rng.integers(0, 60_000, n))
    sent_at = event_time + rng.integers(0, 2_000, n)
    received = sent_at + rng.integers(5, 300, n)
    ts = lambda a: pa.array(a.astype(np.int64)).view(_TS)  # noqa: E731
    users = rng.integers(0, 50_000, n)
    page = pa.StructArray.from_arrays(
        [
            _pick(rng, [f"https://shop.example/p/{i}" for i in range(500)], n),
            _pick(rng, ["", "https://www.google.com/", "https://news.example/a"], n),
            _pick(rng, [f"Product {i}" for i in range(500)], n),
        ],
        names=["url", "referrer", "title"],
    )
    context = pa.StructArray.from_arrays(
        [
            _pick(
                rng,
                [
                    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
                    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148",
                    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
                ],
                n,
            ),
            _prefixed("10.0.0.", rng.integers(1, 255, n)),
            _pick(rng, ["en-US", "fr-FR", "de-DE", "ja-JP"], n),
        ],
        names=["user_agent", "ip", "locale"],
    )
    columns = {
        "event_id": _hex_ids(rng, n),
        "event_type": _pick(rng, ["page_view", "add_to_cart", "purchase", "search"], n),
        "event_time": ts(event_time),
        "sent_at": ts(sent_at),
        "received_at": ts(received),
        "derived_time": ts(received - (sent_at - event_time)),
        "app_id": _pick(rng, ["shop", "blog"], n),
        "user_id": _prefixed("u", users),
        "anonymous_id": _prefixed("a", users),
        "session_id": _prefixed("s", users * 8 + rng.integers(0, 8, n)),
        "page": page,
        "context": context,
        "properties": _pick(rng, ['{"sku":"A1","price":9.99}', '{"query":"shoes"}', "{}"], n),
        "schema_version": pa.array(np.ones(n, dtype=np.int32)),
        "flags": pa.ListArray.from_arrays(
            pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string())
        ),
    }
    return pa.table(columns, schema=EVENT_SCHEMA)


def _append_run(
    root: Path, batches: list[pa.Table], events: int, fsync: str, threads: int
) -> tuple[float, int]:
    """Append *events* rows (in threads); return (events/s, fsyncs)."""
    shutil.rmtree(root, ignore_errors=True)
    with EmbeddedLog(root, fsync=fsync) as log:
        log.create_topic("events", 4)
        per_batch = batches[0].num_rows
        count = events // per_batch
        log.append("events", batches[0].slice(0, 1))  # sets the schema; not timed
        queue = list(range(count))
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    i = queue.pop()
                log.append("events", batches[i % len(batches)])

        start = time.perf_counter()
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - start
        fsyncs = sum(p.fsyncs for p in log.store.get("events").partitions)
    return count * per_batch / elapsed, fsyncs


def _read_run(root: Path, max_records: int) -> tuple[float, int]:
    """Read everything back through read(); return (events/s, events)."""
    with EmbeddedLog(root, fsync="never") as log:  # a fresh open: builds the index too
        start = time.perf_counter()
        total = 0
        for p in log.topic("events").partitions:
            offset = p.start_offset
            while offset < p.end_offset:
                table = log.read("events", p.partition, offset, max_records)
                offset += table.num_rows
                total += table.num_rows
        elapsed = time.perf_counter() - start
    return total / elapsed, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000, help="events per run")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per append")
    parser.add_argument("--threads", type=int, default=4, help="appenders for group commit")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the log")
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    args = parser.parse_args(argv)
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    base = args.dir or Path(tempfile.mkdtemp(prefix="fluvial-bench-"))
    batches = [clickstream(args.batch, seed) for seed in range(8)]
    bytes_per_row = batches[0].nbytes / args.batch
    results: dict[str, float] = {}
    try:
        for name, fsync, threads in (
            ("append fsync=never", "never", 1),
            ("append fsync=batch", "batch", 1),
            (f"append fsync=batch x{args.threads} threads", "batch", args.threads),
        ):
            rate, fsyncs = _append_run(base / "log", batches, args.events, fsync, threads)
            results[name] = rate
            results[name + " fsyncs"] = fsyncs
        for max_records in (10_000, 100_000):
            rate, total = _read_run(base / "log", max_records)
            results[f"read max_records={max_records}"] = rate
        size = sum(f.stat().st_size for f in (base / "log").rglob("*.seg"))
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    print(f"{'measure':<40} {'events/s':>14}  target")
    for name, rate in results.items():
        if name.endswith("fsyncs"):
            continue
        target = READ_TARGET if name.startswith("read") else APPEND_TARGET
        mark = "ok" if rate >= target else "MISSED"
        print(f"{name:<40} {rate:>14,.0f}  {target:,} {mark}")
    print(f"(rows of ~{bytes_per_row:.0f} bytes in Arrow; {size / total:.0f} bytes/row on disk)")
    print(json.dumps({"benchmark": "log", "events": args.events, "batch": args.batch, **results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
