"""Nexmark queries on the stream engine, reading Nexmark events from the embedded log.

Run: ``python benchmarks/stream/bench_nexmark.py [--events N] [--all-cores]``.

Events are appended once (not timed) to topic ``nexmark`` of a temporary project with
``fluvial generate``'s vectorized Nexmark generator; each query (the files in
``nexmark/``, shared with ``bench_vs_flink.py``, the source switched to the log) is run
by ``fluvial.stream`` with ``until_idle`` into a blackhole sink, so a figure covers reading the log, computed columns, the watermark, the query and the sink. Pinned
to one core (Polars and DuckDB limited to one thread) unless ``--all-cores``.

Targets (issue 3): q0, q1, q2 >= 2,000,000 events/s; HOP count per auction (q5's inner
aggregate), a TUMBLE aggregate and a SESSION aggregate (q11) >= 1,000,000 events/s.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``fluvial`` importable from src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

HERE = Path(__file__).parent / "nexmark"
#: the query files shared with bench_vs_flink.py, and each one's target (events/s)
QUERIES = {
    "q0": 2_000_000,  # pass-through
    "q1": 2_000_000,  # projection
    "q2": 2_000_000,  # filter
    "q5_hop": 1_000_000,  # HOP count per auction (q5's inner aggregate)
    "tumble": 1_000_000,  # TUMBLE max price and count per 10 s
    "q11": 1_000_000,  # SESSION count per bidder
}
FILES_SOURCE = re.compile(r"WITH \(\s*'connector' = 'filesystem'.*?\);", re.S)
LOG_SOURCE = "WITH ('connector' = 'fluvial', 'topic' = 'nexmark');"


def pipeline(query: str, one_core: bool = True) -> str:
    """Nexmark's source and ``bid`` view over the log's ``nexmark`` topic, then *query*."""
    source, found = FILES_SOURCE.subn(LOG_SOURCE, (HERE / "source.sql").read_text())
    assert found == 1, "nexmark/source.sql changed shape"
    setting = "SET 'parallelism.default' = '1';\n" if one_core else ""
    return setting + source + "\n" + (HERE / f"{query}.sql").read_text()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--all-cores", action="store_true")
    args = parser.parse_args()
    if not args.all_cores:
        os.environ["POLARS_MAX_THREADS"] = "1"
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    from fluvial.generate import NexmarkConfig, append_nexmark, nexmark_tables
    from fluvial.project import Project
    from fluvial.stream.job import plan_text
    from fluvial.stream.runtime import run_job

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="fluvial-nexmark-") as tmp:
        project = Project.init(Path(tmp) / "project")
        config = NexmarkConfig(events=args.events, seed=1, rate=100_000, start_ms=1_700_000_000_000)
        with project.open_log() as log:
            append_nexmark(log, nexmark_tables(config))
            stored = log.topic("nexmark").records
        print(f"nexmark: {stored:,} events in the embedded log; one core; blackhole sinks")
        print(f"{'query':<10}{'events/s':>14}{'rows out':>12}  target")
        for name, target in QUERIES.items():
            job = plan_text(pipeline(name, not args.all_cores), source=f"{name}.sql")
            started = time.perf_counter()
            result = run_job(job, project=project, until_idle=True, checkpoint_dir=None)
            seconds = time.perf_counter() - started
            stats = result.pipelines[0]
            rate = stored / seconds
            results[name] = rate
            verdict = "ok" if rate >= target else "MISSED"
            print(f"{name:<10}{rate:>14,.0f}{stats.rows_out:>12,}  {target:,} {verdict}")
    print(json.dumps({"benchmark": "stream-nexmark", "events": stored, **results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
