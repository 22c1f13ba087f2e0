"""Benchmark the window operators: rows/s through TUMBLE, HOP and SESSION, and state size.

Run: ``python -m benchmarks.stream.bench_ops`` (or ``python benchmarks/stream/bench_ops.py``),
options: ``--rows N`` (per operator, default 4,000,000), ``--batch N`` (rows per micro-batch,
default 65,536), ``--keys N`` (default 10,000), ``--open-keys N`` (for the state-size row,
default 1,000,000), ``--all-cores``.

Events are synthetic: string keys ``user-<n>``, one BIGINT value, times advancing 1 ms per
~10 rows with a 5 s disorder bound; the watermark is ``max(ts) - 5 s`` after each batch.
Targets: >= 1,000,000 rows/s per operator on one core; <= 200 MB of state for 1,000,000 open
keys (TUMBLE count + sum). Prints a table, then one JSON line with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``fluvial`` importable from src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

ROWS_TARGET = 1_000_000
STATE_TARGET_BYTES = 200 * 1024 * 1024
BOUND_MS = 5_000


def _batches(rows: int, batch: int, keys: int, seed: int = 0, every_key: bool = False) -> list:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    names = np.array([f"user-{i}" for i in range(keys)], dtype=object)
    out, t0 = [], 1_700_000_000_000
    for start in range(0, rows, batch):
        n = min(batch, rows - start)
        base = t0 + (start + np.arange(n)) // 10
        ts = base - rng.integers(0, BOUND_MS, n)
        picks = (start + np.arange(n)) % keys if every_key else rng.integers(0, keys, n)
        out.append(
            pa.table(
                {
                    "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("ms")),
                    "user": pa.array(names[picks], pa.string()),
                    "amount": pa.array(rng.integers(1, 1000, n), pa.int64()),
                }
            )
        )
    return out


def _drive(op, batches) -> float:
    import pyarrow.compute as pc

    watermark = None
    started = time.perf_counter()
    for table in batches:
        op.process(table, watermark)
        top = pc.max(table.column("ts")).cast("int64").as_py() - BOUND_MS
        watermark = top if watermark is None else max(watermark, top)
        op.advance(watermark)
    op.flush()
    return time.perf_counter() - started


def run(rows: int, batch: int, keys: int, open_keys: int) -> dict[str, float]:
    from fluvial.stream.ops import AggSpec, SessionAggregate, WindowAggregate, WindowSpec

    aggs = [AggSpec("n", "count_star"), AggSpec("total", "sum", "amount")]
    batches = _batches(rows, batch, keys)
    results: dict[str, float] = {}
    operators = {
        "tumble_rows_per_s": WindowAggregate(WindowSpec.tumble(10_000), "ts", ["user"], aggs),
        "hop_rows_per_s": WindowAggregate(WindowSpec.hop(20_000, 5_000), "ts", ["user"], aggs),
        "session_rows_per_s": SessionAggregate(
            WindowSpec.session(30_000, ("user",)), "ts", ["user"], aggs
        ),
    }
    for name, op in operators.items():
        results[name] = rows / _drive(op, batches)
    # state for open_keys keys, each with one open TUMBLE window
    op = WindowAggregate(WindowSpec.tumble(3_600_000), "ts", ["user"], aggs)
    for table in _batches(open_keys, batch, open_keys, seed=1, every_key=True):
        op.process(table, None)
    op.snapshot()  # compacts: one row per (window, key)
    results["state_rows"] = op.state_rows
    results["state_mb_1m_keys"] = op.state_bytes / 1024 / 1024
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000, help="rows per operator")
    parser.add_argument("--batch", type=int, default=65_536, help="rows per micro-batch")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct keys")
    parser.add_argument("--open-keys", type=int, default=1_000_000, help="keys for state size")
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    args = parser.parse_args(argv)
    if not args.all_cores:
        os.environ.setdefault("POLARS_MAX_THREADS", "1")  # before polars is imported
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    results = run(args.rows, args.batch, args.keys, args.open_keys)
    for name, value in results.items():
        print(f"{name:24} {value:>16,.1f}")
    ok = all(results[k] >= ROWS_TARGET for k in results if k.endswith("rows_per_s"))
    ok = ok and results["state_mb_1m_keys"] * 1024 * 1024 <= STATE_TARGET_BYTES
    print(json.dumps({"bench": "stream_ops", **results, "targets_met": ok}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
