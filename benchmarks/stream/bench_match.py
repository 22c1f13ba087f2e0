"""Benchmark MATCH_RECOGNIZE: rows/s of the vectorized matcher on a context-free pattern.

Run: ``python -m benchmarks.stream.bench_match`` (or ``python benchmarks/stream/bench_match.py``),
options: ``--rows N`` (default 1,000,000), ``--batch N`` (rows per micro-batch, default
65,536), ``--keys N`` (partitions, default 1,000).

Events: string keys ``user-<n>``, an INT price doing a random walk, times advancing 1 ms per
~10 rows with a 5 s disorder bound; the watermark is ``max(ts) - 5 s`` after each batch.
The query is a V shape with PREV (``PATTERN (S D+ U+? E)``, SKIP PAST LAST ROW) and four
measures. Prints one JSON line with rows/s and the matches found.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``fluvial`` importable from src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

QUERY = """
PARTITION BY k ORDER BY ts
MEASURES FIRST(S.price) AS start_price, MIN(D.price) AS bottom, LAST(U.price) AS top,
         MATCH_ROWTIME() AS t
AFTER MATCH SKIP PAST LAST ROW
PATTERN (S D+ U+? E)
DEFINE D AS price < PREV(price), U AS price > PREV(price), E AS price < PREV(price)
"""


def _batches(rows: int, batch: int, keys: int, seed: int = 0) -> list:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    names = np.array([f"user-{i}" for i in range(keys)], dtype=object)
    price = np.cumsum(rng.integers(-3, 4, rows)).astype(np.int32) % 1000
    out, t0 = [], 1_700_000_000_000
    for start in range(0, rows, batch):
        n = min(batch, rows - start)
        ts = t0 + (start + np.arange(n)) // 10 + rng.integers(0, 5_000, n)
        out.append(
            pa.table(
                {
                    "k": pa.array(names[rng.integers(0, keys, n)], pa.string()),
                    "ts": pa.array(ts, pa.timestamp("ms")),
                    "price": pa.array(price[start : start + n]),
                }
            )
        )
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark; print and return its figures."""
    from fluvial.stream.ops.match import MatchRecognizeOperator
    from fluvial.stream.sql.match_recognize import parse_match_recognize
    from fluvial.stream.sql.parser import _Source

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=65_536)
    parser.add_argument("--keys", type=int, default=1_000)
    args = parser.parse_args(argv)
    src = _Source(QUERY, "bench")
    spec = parse_match_recognize(src.tokens, src.expression, lambda m, t: src.error(m, t))
    batches = _batches(args.rows, args.batch, args.keys)
    op = MatchRecognizeOperator(spec)
    assert op.vectorized
    matches = 0
    start = time.perf_counter()
    for b in batches:
        op.process(b, None)
        wm = int(b.column("ts").cast("int64").to_numpy().max()) - 5_000
        matches += op.advance(wm).num_rows
    matches += op.flush().num_rows
    seconds = time.perf_counter() - start
    result = {
        "rows": args.rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(args.rows / seconds),
        "matches": matches,
        "late_rows": op.late_rows,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
