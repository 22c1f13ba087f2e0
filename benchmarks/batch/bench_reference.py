"""Benchmark the clickstream reference project: a full batch build from N raw events.

Run: ``python -m benchmarks.batch.bench_reference`` (or
``python benchmarks/batch/bench_reference.py``), options: ``--events N`` (default
1,000,000), ``--users N`` (default: events / 50), ``--days D`` (default 30), ``--dir PATH``
(default a temporary folder), ``--all-cores``, ``--engine`` (duckdb or spark), ``--memory-limit`` (DuckDB's, default 2GB), ``--land-only`` (land into ``--dir`` and
stop). Given a ``--dir`` that already holds landed events (``landed.json``), the landing is
skipped and every model's table (and the warehouse file) is dropped first, so one landing
serves several builds.

Not timed: the clickstream generator's lines are validated as the collector would (with a
received time per event) and appended to ``raw.events`` in commits of 500,000 events; the
product catalogue is loaded. Timed: ``fluvial.batch.run`` of every model of the example
(refined, curated star schema, marts), in a child process whose peak resident memory is
read from the kernel (``ru_maxrss``), so generation does not count. Prints a table, then
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``fluvial`` and ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.project import Project

_COMMIT_ROWS = 500_000


def land(project: Project, events: int, users: int, days: float) -> int:
    """Generate, validate and append *events* to ``raw.events``; return the rows stored."""
    from fluvial.events.validate import EventValidator
    from fluvial.examples.clickstream import load_catalogue
    from fluvial.generate.clickstream import ClickstreamConfig, clickstream_batches
    from fluvial.lake import append, open_lake

    validator = EventValidator.for_project(project)
    config = ClickstreamConfig(
        events=events, seed=1, users=users, days=days, start_ms=1_767_225_600_000
    )
    stored = 0
    pending: list[pa.Table] = []
    with open_lake(project) as lake:

        def flush() -> None:
            nonlocal stored
            data = pa.concat_tables(pending)
            pending.clear()
            if not lake.exists("raw.events"):
                lake.create_table("raw.events", data.schema, time_column="event_time")
            append(lake.table("raw.events"), data)
            stored += data.num_rows

        for batch in clickstream_batches(config):
            result = validator.validate(batch.lines(), received_at_ms=0, app_id="demo")
            rejected = np.zeros(len(batch), dtype=bool)
            rejected[[e.index for e in result.errors]] = True
            received = pa.array(batch.send_time_ms[~rejected].astype(np.int64))
            valid = result.valid
            ts = valid.schema.field("received_at").type
            skew = pc.subtract(valid["sent_at"].cast(pa.int64()), received)
            derived = pc.subtract(valid["event_time"].cast(pa.int64()), skew)
            for name, values in (("received_at", received), ("derived_time", derived)):
                at = valid.schema.get_field_index(name)
                valid = valid.set_column(at, valid.schema.field(name), values.cast(ts))
            pending.append(valid)
            if sum(t.num_rows for t in pending) >= _COMMIT_ROWS:
                flush()
        if pending:
            flush()
    load_catalogue(project)
    return stored


def reset(project: Project) -> None:
    """Drop every table a build writes (all but the raw zone) and the warehouse file, and
    take the example's models and quality rules afresh from this source tree."""
    from fluvial.batch.warehouse import warehouse_path
    from fluvial.lake import open_lake

    for folder in ("models", "quality"):
        shutil.rmtree(project.root / folder, ignore_errors=True)
    Project.init(project.root, exist_ok=True, example="clickstream")

    with open_lake(project) as lake:
        for name in lake.tables():
            if not name.startswith("raw."):
                lake.drop_table(name)
    warehouse_path(project).unlink(missing_ok=True)


def _rss_mib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20


def build(root: Path, engine: str) -> None:
    """The timed part (in a child process): every model, one run."""
    from fluvial.batch import run

    project = Project(root)
    peaks: dict[str, int] = {}
    current = [""]
    done = threading.Event()

    def sample() -> None:  # the resident memory while each model builds, every 50 ms
        while not done.wait(0.05):
            rss = _rss_mib()
            peaks[current[0]] = max(peaks.get(current[0], 0), rss)

    def progress(model: str, status: str) -> None:
        current[0] = model if status == "running" else ""

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    result = run(project, engine=engine, progress=progress)
    elapsed = time.perf_counter() - start
    done.set()
    models = {
        m.model: {
            "status": m.status,
            "rows": m.rows_written,
            "seconds": round(m.seconds, 3),
            "peak_mib": peaks.get(m.model, 0),
        }
        for m in result.models
    }
    print(json.dumps({"ok": result.ok, "seconds": elapsed, "models": models}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="raw events to build from")
    parser.add_argument("--users", type=int, default=None, help="people (default events/50)")
    parser.add_argument("--days", type=float, default=30.0, help="days the events span")
    parser.add_argument("--dir", type=Path, default=None, help="where the project goes")
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    parser.add_argument(
        "--memory-limit", default="2GB", help="[batch] memory_limit of the build (DuckDB)"
    )
    parser.add_argument("--engine", default="duckdb", help="duckdb | spark")
    parser.add_argument("--land-only", action="store_true", help="land into --dir and stop")
    parser.add_argument("--build-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build_only is not None:
        build(args.build_only, args.engine)
        return 0
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    base = args.dir or Path(tempfile.mkdtemp(prefix="fluvial-bench-reference-"))
    try:
        marker = base / "landed.json"
        if marker.exists():
            project = Project(base / "project")
            stored, landed = json.loads(marker.read_text())
            reset(project)
        else:
            project = Project.init(base / "project", exist_ok=True, example="clickstream")
            began = time.perf_counter()
            users = args.users or max(100, args.events // 50)
            stored = land(project, args.events, users, args.days)
            landed = time.perf_counter() - began
            if args.dir is not None:
                marker.write_text(json.dumps([stored, landed]))
        if args.land_only:
            print(json.dumps({"landed": stored, "seconds": round(landed, 1)}))
            return 0
        child = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--build-only",
                str(project.root),
                "--engine",
                args.engine,
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "FLUVIAL_BATCH__MEMORY_LIMIT": args.memory_limit},
        )
        if child.returncode != 0:
            print(child.stdout, child.stderr, file=sys.stderr)
            return 1
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        report = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    seconds = report["seconds"]
    print(f"{'measure':<44} {'value':>14}")
    print(f"{'raw events (after validation)':<44} {stored:>14,}")
    print(f"{'landing (not timed), s':<44} {landed:>14.1f}")
    print(f"{'full build, s':<44} {seconds:>14.2f}")
    print(f"{'raw events built per second':<44} {stored / seconds:>14,.0f}")
    print(f"{'peak memory of the build, MiB':<44} {peak_mib:>14,.0f}")
    for name, model in report["models"].items():
        print(
            f"  {name:<36} {model['seconds']:>8.2f} s {model['rows']:>12,} rows"
            f" {model['peak_mib']:>7,} MiB"
        )
    print(
        json.dumps(
            {
                "benchmark": "batch_reference",
                "engine": args.engine,
                "events": stored,
                "build_seconds": round(seconds, 3),
                "events_per_second": round(stored / seconds),
                "peak_mib": round(peak_mib),
                "ok": report["ok"],
                "models": report["models"],
            }
        )
    )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
