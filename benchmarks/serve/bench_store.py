"""Benchmark the operational store: upserts/s and point lookups/s per backend.

Run: ``python -m benchmarks.serve.bench_store`` (or ``python benchmarks/serve/bench_store.py``),
options: ``--rows N`` (rows upserted, default 200,000), ``--batch N`` (rows per upsert and
keys per ``get_many``, default 10,000), ``--gets N`` (single-key ``get`` calls, default
2,000), ``--backends sqlite,postgres,redis`` (default: those three; a server that is
not listening is skipped), ``--postgres DSN``, ``--redis URL``.

``--backends sqlite,dynamodb`` adds the DynamoDB store, against moto's server started on
a loopback port in a process of its own (or ``--dynamodb-endpoint URL``): that measures
Fluvial's client path (encoding, batching, the commit protocol, boto3) against an
emulator, not DynamoDB's own latency or throughput. Each rate is also given per CPU
second of the benchmark's process: what the client costs, whatever the server's speed. Use fewer rows there (``--rows 20000 --batch 1000
--gets 200``): the emulator handles a few thousand items a second.

Rows are keyed by (user STRING, hour TIMESTAMP) with an int, a decimal, a float and a
string column, generated with NumPy. Half of the upserts overwrite existing keys. Each
backend writes into a fresh namespace (a temporary SQLite file, a new PostgreSQL schema,
a new Redis prefix) that is removed afterwards. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if __package__ in (None, ""):  # run as a script: make ``fluvial`` importable from src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from fluvial.serve.store import Store
from fluvial.serve.store._codec import decimal_from_int64

KEY = ["user", "hour"]


def rows(n: int, seed: int, users: int) -> pa.Table:
    """*n* rows over *users* x hours keys (vectorized)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, users, n)
    hours = 1_790_000_000_000 + rng.integers(0, 48, n) * 3_600_000
    user = pc.binary_join_element_wise("user-", pc.cast(pa.array(ids), pa.string()), "")
    return pa.table(
        {
            "user": user,
            "hour": pa.array(hours).cast(pa.timestamp("ms", tz="UTC")),
            "clicks": rng.integers(0, 1_000, n),
            "revenue": decimal_from_int64(
                pa.array(rng.integers(0, 10**7, n)), pa.decimal128(12, 2)
            ),
            "score": rng.normal(size=n),
            "label": pc.binary_join_element_wise("l", pc.cast(pa.array(ids % 97), pa.string()), ""),
        }
    )


def _listening(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 0.5
        ):
            return True
    except OSError:
        return False


def open_backend(name: str, args: argparse.Namespace, tmp: Path, namespace: str) -> Store | None:
    if name == "sqlite":
        from fluvial.serve.store.sqlite import SQLiteStore

        return SQLiteStore(tmp / "store.db")
    if name == "postgres":
        if not _listening(args.postgres, 5432):
            return None
        from fluvial.serve.store.postgres import PostgresStore

        return PostgresStore(args.postgres, schema=namespace)
    if name == "dynamodb":
        from fluvial.serve.store.dynamodb import DynamoDBStore

        return DynamoDBStore(namespace, endpoint_url=_dynamodb_endpoint(args))
    if not _listening(args.redis, 6379):
        return None
    from fluvial.serve.store.redis import RedisStore

    return RedisStore(args.redis, prefix=namespace)


def _dynamodb_endpoint(args: argparse.Namespace) -> str:
    """``--dynamodb-endpoint``, or moto's server started in a process of its own (so the
    benchmark's CPU time is the client's alone), with fake credentials."""
    if args.dynamodb_endpoint:
        return str(args.dynamodb_endpoint)
    import atexit
    import os
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    atexit.register(server.terminate)
    args.dynamodb_endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not _listening(args.dynamodb_endpoint, port):
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("moto's server did not start")
        time.sleep(0.1)
    os.environ["AWS_ACCESS_KEY_ID"] = os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    return str(args.dynamodb_endpoint)


def cleanup(name: str, args: argparse.Namespace, namespace: str) -> None:
    if name == "dynamodb":
        import boto3

        client = boto3.client(
            "dynamodb", endpoint_url=args.dynamodb_endpoint, region_name="us-east-1"
        )
        client.delete_table(TableName=namespace)
    elif name == "postgres":
        import psycopg

        with psycopg.connect(args.postgres, autocommit=True) as db:
            db.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
    elif name == "redis":
        import redis

        client = redis.Redis.from_url(args.redis)
        for key in client.scan_iter(match=f"{namespace}:*", count=1000):
            client.delete(key)
        client.close()


class _Clock:
    """Wall and CPU time (this process, every thread) since it was made."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def rates(self, n: int) -> tuple[float, float]:
        """*n* per wall second, and per CPU second of this process."""
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        return n / wall, n / max(cpu, 1e-9)


def measure(store: Store, args: argparse.Namespace) -> dict[str, float]:
    data = rows(args.rows, seed=1, users=max(1, args.rows // 96))  # ~half the keys repeat
    batches = [data.slice(i, args.batch) for i in range(0, data.num_rows, args.batch)]
    clock = _Clock()
    for batch in batches:
        store.upsert("bench", batch, KEY)
    upsert, upsert_cpu = clock.rates(data.num_rows)

    keys = data.select(KEY)
    rng = np.random.default_rng(2)
    picks = keys.take(pa.array(rng.integers(0, keys.num_rows, args.batch * 5)))
    clock = _Clock()
    found = 0
    for i in range(0, picks.num_rows, args.batch):
        found += store.get_many("bench", picks.slice(i, args.batch)).num_rows
    get_many, get_many_cpu = clock.rates(picks.num_rows)
    assert found == picks.num_rows, (found, picks.num_rows)

    singles = picks.slice(0, args.gets).to_pylist()
    clock = _Clock()
    for key in singles:  # one round trip per key: what an API request does
        assert store.get("bench", key) is not None
    get, get_cpu = clock.rates(len(singles))

    clock = _Clock()
    scanned = store.scan("bench", limit=args.batch).num_rows
    scan, scan_cpu = clock.rates(scanned)
    return {
        "upsert_rows_per_s": upsert,
        "get_many_keys_per_s": get_many,
        "get_per_s": get,
        "scan_rows_per_s": scan,
        # per CPU second of this process: what the client costs, whatever the server
        "upsert_rows_per_cpu_s": upsert_cpu,
        "get_many_keys_per_cpu_s": get_many_cpu,
        "get_per_cpu_s": get_cpu,
        "scan_rows_per_cpu_s": scan_cpu,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--gets", type=int, default=2_000)
    parser.add_argument("--backends", default="sqlite,postgres,redis")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--dynamodb-endpoint", default="", help="default: moto's server, here")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {}
    print(
        f"{'backend':<10} {'upserts/s':>12} {'get_many keys/s':>16} {'get/s':>9} {'scan rows/s':>12}"
    )
    for name in args.backends.split(","):
        namespace = f"fluvial_bench_{uuid.uuid4().hex[:8]}"
        with tempfile.TemporaryDirectory() as tmp:
            store = open_backend(name, args, Path(tmp), namespace)
            if store is None:
                print(f"{name:<10} skipped: server not listening")
                continue
            try:
                r = measure(store, args)
            finally:
                store.close()
                cleanup(name, args, namespace)
        results[name] = {k: round(v) for k, v in r.items()}
        print(
            f"{name:<10} {r['upsert_rows_per_s']:>12,.0f} {r['get_many_keys_per_s']:>16,.0f} "
            f"{r['get_per_s']:>9,.0f} {r['scan_rows_per_s']:>12,.0f}"
        )
        print(
            f"{'  per CPU s':<10} {r['upsert_rows_per_cpu_s']:>12,.0f} "
            f"{r['get_many_keys_per_cpu_s']:>16,.0f} {r['get_per_cpu_s']:>9,.0f} "
            f"{r['scan_rows_per_cpu_s']:>12,.0f}"
        )
    print(
        json.dumps(
            {"benchmark": "store", "rows": args.rows, "batch": args.batch, "results": results}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
