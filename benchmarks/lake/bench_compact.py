"""Benchmark lake compaction: small files/s and MB/s bin-packed into large files.

Run: ``python -m benchmarks.lake.bench_compact`` (or ``python benchmarks/lake/bench_compact.py``),
options: ``--files N`` (small files to write first, default 400), ``--rows N`` (rows per
file, default 5,000), ``--days N`` (daily partitions they spread over, default 4),
``--target-mb N`` (default 128), ``--dir PATH`` (default a temporary folder), ``--all-cores``.

A day-partitioned table in a SQLite catalog gets one append per small file (not timed);
then one :func:`fluvial.lake.maintenance.compact` call is timed, and the rows are checked
to be the same before and after. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if __package__ in (None, ""):  # run as a script: make ``fluvial`` importable from src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.io.pyarrow import _dataframe_to_data_files
from pyiceberg.transforms import DayTransform

from fluvial.lake.maintenance import MiB, compact

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("at", pa.timestamp("us", "UTC")),
        ("user_id", pa.string()),
        ("page", pa.string()),
        ("value", pa.float64()),
    ]
)
_DAY_US = 86_400_000_000
_START_US = 1_795_000_000_000_000 // _DAY_US * _DAY_US


def small_file(i: int, rows: int, days: int) -> pa.Table:
    """Rows of one small file, all in day ``i % days`` (vectorized)."""
    rng = np.random.default_rng(i)
    at = _START_US + (i % days) * _DAY_US + np.sort(rng.integers(0, _DAY_US, rows))
    users = pc.binary_join_element_wise(
        "u", pc.cast(pa.array(rng.integers(0, 50_000, rows)), pa.string()), ""
    )
    pages = pc.binary_join_element_wise(
        "https://shop.example/p/", pc.cast(pa.array(rng.integers(0, 500, rows)), pa.string()), ""
    )
    return pa.table(
        {
            "id": pa.array(np.arange(i * rows, (i + 1) * rows, dtype=np.int64)),
            "at": pa.array(at).cast(pa.timestamp("us", "UTC")),
            "user_id": users,
            "page": pages,
            "value": pa.array(rng.random(rows)),
        },
        schema=SCHEMA,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--files", type=int, default=400, help="small files to compact")
    parser.add_argument("--rows", type=int, default=5_000, help="rows per small file")
    parser.add_argument("--days", type=int, default=4, help="daily partitions")
    parser.add_argument("--target-mb", type=float, default=128.0, help="target file size")
    parser.add_argument("--dir", type=Path, default=None, help="where the catalog goes")
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    args = parser.parse_args(argv)
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    base = args.dir or Path(tempfile.mkdtemp(prefix="fluvial-bench-compact-"))
    try:
        catalog = SqlCatalog("bench", uri=f"sqlite:///{base}/cat.db", warehouse=base.as_uri())
        catalog.create_namespace_if_not_exists("raw")
        table = catalog.create_table("raw.clicks", schema=SCHEMA)
        with table.update_spec() as spec:
            spec.add_field("at", DayTransform(), "at_day")
        setup = time.perf_counter()
        written = [  # one small file each, added in one commit (an append each is slow setup)
            f
            for i in range(args.files)
            for f in _dataframe_to_data_files(
                table.metadata, small_file(i, args.rows, args.days), table.io
            )
        ]
        with table.transaction() as tx, tx.update_snapshot().fast_append() as append:
            for f in written:
                append.append_data_file(f)
        setup = time.perf_counter() - setup
        before = table.scan().to_arrow()
        ids_before = pc.sum(before["id"]).as_py(), before.num_rows
        start = time.perf_counter()
        result = compact(table, target_file_size=int(args.target_mb * MiB), min_input_files=2)
        elapsed = time.perf_counter() - start
        after = table.scan().to_arrow()
        ids_after = pc.sum(after["id"]).as_py(), after.num_rows
        files_after = sum(1 for _ in table.scan().plan_files())
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    files_s = result.rewritten_files / elapsed
    mb_s = result.rewritten_bytes / elapsed / 1e6
    print(f"{'measure':<40} {'value':>14}")
    print(f"{'small files compacted/s (one core)':<40} {files_s:>14,.1f}")
    print(f"{'MB/s compacted (input Parquet)':<40} {mb_s:>14,.1f}")
    print(f"{'rows/s compacted':<40} {result.rows / elapsed:>14,.0f}")
    print(f"{'files before -> after':<40} {f'{result.rewritten_files} -> {files_after}':>14}")
    print(
        f"{'input MB -> output MB':<40} {f'{result.rewritten_bytes / 1e6:.1f} -> {result.added_bytes / 1e6:.1f}':>14}"
    )
    print(f"{'compaction seconds':<40} {elapsed:>14,.2f}")
    print(f"{'setup: appends (not timed) s':<40} {setup:>14,.1f}")
    print(
        json.dumps(
            {
                "benchmark": "lake.compact",
                "files": result.rewritten_files,
                "files_after": files_after,
                "rows": result.rows,
                "bytes": result.rewritten_bytes,
                "files_per_s": round(files_s, 1),
                "mb_per_s": round(mb_s, 1),
                "seconds": round(elapsed, 3),
            }
        )
    )
    return 0 if ids_before == ids_after and files_after == args.days else 1


if __name__ == "__main__":
    raise SystemExit(main())
