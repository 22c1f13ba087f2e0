"""Benchmark the archiver: events/s from an embedded log topic into an Iceberg table.

Run: ``python -m benchmarks.lake.bench_archive`` (or ``python benchmarks/lake/bench_archive.py``),
options: ``--events N`` (default 3,000,000), ``--buffer N`` (events per commit, default
1,000,000), ``--dir PATH`` (default a temporary folder), ``--all-cores``.

The ``events`` topic (4 partitions) is filled beforehand with synthetic clickstream rows
of :data:`fluvial.events.envelope.EVENT_SCHEMA` (not timed); then one archiver runs until
idle into ``raw.events`` (hourly partitions, zstd Parquet, offsets in every commit).
Target: >= 500,000 events/s on one core. Prints a table, then one JSON line.
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

if __package__ in (None, ""):  # run as a script: make ``fluvial`` and ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.bench_log import clickstream
from fluvial.lake import Archiver, open_lake
from fluvial.project import Project

TARGET = 500_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=3_000_000, help="events to archive")
    parser.add_argument("--buffer", type=int, default=1_000_000, help="events per commit")
    parser.add_argument("--dir", type=Path, default=None, help="where the project goes")
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    args = parser.parse_args(argv)
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    base = args.dir or Path(tempfile.mkdtemp(prefix="fluvial-bench-lake-"))
    try:
        Project.init(base / "project", exist_ok=True)
        project = Project(base / "project", env={"FLUVIAL_LOG__FSYNC": "never"})
        batch = 100_000
        with project.open_log() as log:
            log.create_topic("events", 4, exist_ok=True)
            for i in range(0, args.events, batch):
                log.append(
                    "events", clickstream(min(batch, args.events - i), seed=i), key="user_id"
                )
        with open_lake(project) as lake, project.open_log() as log:
            archiver = Archiver(
                lake,
                log,
                settings=project.settings,
                buffer_records=args.buffer,
                buffer_bytes=1 << 40,
                buffer_seconds=3600.0,
            )
            start = time.perf_counter()
            stats = archiver.run(until_idle=True)
            elapsed = time.perf_counter() - start
            stored = lake.table("raw.events").scan().count()
        size = sum(f.stat().st_size for f in (project.data_dir / "lake").rglob("*.parquet"))
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    rate = stats.total_records / elapsed
    commits = sum(stats.commits.values())
    mark = "ok" if rate >= TARGET else "MISSED"
    print(f"{'measure':<40} {'value':>14}  target")
    print(f"{'archive events/s (one core)':<40} {rate:>14,.0f}  {TARGET:,} {mark}")
    print(f"{'events archived':<40} {stats.total_records:>14,}")
    print(f"{'rows in raw.events':<40} {stored:>14,}")
    print(f"{'commits':<40} {commits:>14,}")
    print(f"{'Parquet bytes/event':<40} {size / max(1, stats.total_records):>14,.1f}")
    print(
        json.dumps(
            {
                "benchmark": "lake.archive",
                "events": stats.total_records,
                "events_per_s": round(rate),
                "commits": commits,
                "seconds": round(elapsed, 3),
                "target": TARGET,
            }
        )
    )
    return 0 if stored == stats.total_records == args.events else 1


if __name__ == "__main__":
    raise SystemExit(main())
