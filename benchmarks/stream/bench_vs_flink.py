"""Fluvial against Apache Flink (PyFlink's local mini-cluster, parallelism 1) on Nexmark.

Run: ``python benchmarks/stream/bench_vs_flink.py [--events N] [--all-cores] [--all]
[--only q3,q20]``
(needs ``make flink``, or ``$FLUVIAL_FLINK_PYTHON``). ``--all`` adds every Nexmark query
file ``nexmark/qN.sql`` that Fluvial plans (the others are listed as not supported).

The events are generated once (not timed) with ``fluvial.generate``'s Nexmark generator
and written as one NDJSON file in Flink's JSON format. Every query is a pipeline file —
``nexmark/source.sql`` (a filesystem json source and the ``bid`` view) followed by
``nexmark/<query>.sql`` (a blackhole sink and its INSERT) — run unchanged by both
engines over the same file:

* Fluvial: ``plan_text`` + ``run_job(until_idle=True)``, timed end to end (planning,
  reading and parsing the file, the query, the sink).
* Flink: one driver process, one JVM, one job per query (``fluvial.stream.flink``). The
  JVM and ``TableEnvironment`` start is measured separately and excluded. A first job
  over a one-row file measures Flink's fixed per-job cost (planning, deploying to the
  mini-cluster, tearing down) and warms the JVM; a query's figure is its job's wall time
  minus that fixed cost, so it is Flink's processing rate — the figure most favourable
  to Flink. The raw job time is printed too.

Both engines are pinned to the same single core by default (the Flink JVM is a child of
this process and inherits the affinity); ``--all-cores`` lifts that. Prints a table, then
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``fluvial`` importable from src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

HERE = Path(__file__).resolve().parent / "nexmark"
ROOT = Path(__file__).resolve().parents[2]
QUERIES = {
    "q0 pass-through": "q0.sql",
    "q1 projection": "q1.sql",
    "q2 filter": "q2.sql",
    "q5 inner: HOP count per auction": "q5_hop.sql",
    "TUMBLE max price per 10 s": "tumble.sql",
    "q11 SESSION count per bidder": "q11.sql",
}


def pipeline(query_file: str, events: Path, output: Path | None = None) -> str:
    """The pipeline file of one query over the events directory (file sinks under
    *output*)."""
    source = (HERE / "source.sql").read_text(encoding="utf-8")
    text = source.replace("${EVENTS}", str(events)) + (HERE / query_file).read_text(
        encoding="utf-8"
    )
    return text.replace("${OUTPUT}", str(output or events.parent / "output"))


def all_queries() -> tuple[dict[str, str], list[str]]:
    """Every ``qN.sql`` Fluvial plans (name -> file), and the ones it refuses."""
    from fluvial.errors import SqlError
    from fluvial.stream.job import plan_text

    found, refused = dict(QUERIES), []
    files = sorted(
        HERE.glob("q*.sql"), key=lambda p: int(p.stem[1:]) if p.stem[1:].isdigit() else -1
    )
    for path in files:
        if not path.stem[1:].isdigit() or path.name in found.values():
            continue
        try:
            plan_text(pipeline(path.name, Path("/nonexistent/events")), source=path.name)
        except SqlError as exc:
            refused.append(f"{path.stem}: {exc.detail}")
            continue
        found[path.stem] = path.name
    return found, refused


def write_events(directory: Path, events: int) -> int:
    """Nexmark events as NDJSON in *directory*/events.json; returns the count."""
    from fluvial.generate import NexmarkConfig, nexmark_tables
    from fluvial.generate.nexmark import nexmark_lines

    directory.mkdir(parents=True)
    config = NexmarkConfig(events=events, seed=1, rate=100_000, start_ms=1_700_000_000_000)
    written = 0
    with (directory / "events.json").open("wb") as f:
        for table in nexmark_tables(config):
            data, _ = nexmark_lines(table)
            f.write(data)
            written += table.num_rows
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--all-cores", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800.0, help="Flink run limit (s)")
    parser.add_argument("--all", action="store_true", help="every Nexmark query Fluvial plans")
    parser.add_argument(
        "--only", default="", help="comma-separated query names to run (e.g. q3,q20)"
    )
    args = parser.parse_args()
    if not args.all_cores:
        os.environ["POLARS_MAX_THREADS"] = "1"
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    from fluvial.stream.flink import find_flink_python, run_pipelines_on_flink
    from fluvial.stream.job import plan_text
    from fluvial.stream.runtime import run_job

    python = find_flink_python(ROOT)
    if python is None:
        print("PyFlink not found: run `make flink` (or set FLUVIAL_FLINK_PYTHON)")
        return 2
    queries, refused = all_queries() if args.all or args.only else (QUERIES, [])
    if args.only:
        wanted = {q.strip() for q in args.only.split(",") if q.strip()}
        queries = {n: f for n, f in queries.items() if n in wanted or f[:-4] in wanted}
    for line in refused:
        print(f"not supported by Fluvial yet: {line}")
    with tempfile.TemporaryDirectory(prefix="fluvial-vs-flink-") as tmp:
        events_dir, warm_dir = Path(tmp, "events"), Path(tmp, "warmup")
        count = write_events(events_dir, args.events)
        write_events(warm_dir, 1)
        size = (events_dir / "events.json").stat().st_size
        cores = "all cores" if args.all_cores else "one core"
        print(f"nexmark: {count:,} events, {size / 1e6:,.0f} MB of NDJSON; {cores}; blackholes")

        fluvial: dict[str, float] = {}
        for i, (name, file) in enumerate(queries.items()):
            started = time.perf_counter()
            out = Path(tmp, "fluvial-out", str(i))
            job = plan_text(pipeline(file, events_dir, out), source=file, name=f"bench{i}")
            run_job(job, until_idle=True, checkpoint_dir=None)
            fluvial[name] = time.perf_counter() - started

        # two one-row jobs: the first warms the JVM, the second measures the fixed cost
        texts = [pipeline("q0.sql", warm_dir)] * 2
        texts += [
            pipeline(file, events_dir, Path(tmp, "flink-out", str(i)))
            for i, file in enumerate(queries.values())
        ]
        timings = run_pipelines_on_flink(texts, python=python, timeout=args.timeout)
        fixed, flink_jobs = timings.jobs_s[1], timings.jobs_s[2:]

    print(
        f"flink: JVM + TableEnvironment start {timings.start_s:.1f} s (excluded); "
        f"fixed per-job cost {fixed:.2f} s (a warm one-row job, subtracted)"
    )
    head = f"{'query':<34}{'fluvial ev/s':>14}{'flink ev/s':>13}{'flink raw':>12}{'ratio':>8}"
    print(head)
    results: dict[str, dict[str, float]] = {}
    for (name, seconds), job_s in zip(fluvial.items(), flink_jobs, strict=True):
        ours = count / seconds
        theirs = count / max(job_s - fixed, 1e-3)
        raw = count / job_s
        ratio = ours / theirs
        results[name] = {"fluvial": ours, "flink": theirs, "flink_raw": raw, "ratio": ratio}
        print(f"{name:<34}{ours:>14,.0f}{theirs:>13,.0f}{raw:>12,.0f}{ratio:>7.2f}x")
    summary = {
        "benchmark": "stream-vs-flink",
        "events": count,
        "flink_start_s": timings.start_s,
        "flink_job_fixed_s": fixed,
        "queries": results,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
