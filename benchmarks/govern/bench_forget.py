"""Benchmark ``fluvial forget`` on the clickstream reference project.

Run: ``python benchmarks/govern/bench_forget.py`` (options ``--events N``, default
100,000; ``--users N``, default events / 50).

Not timed: the project is built as users run it — generated events validated into the
embedded log, archived into ``raw.events``, the catalogue loaded, every batch model built
(lake zones and warehouse marts), and a store-sink pipeline run over the log. Timed: a dry
run of forget, then forget, for the user with the most events (identified and anonymous).
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``fluvial`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from fluvial.project import Project

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
BUILT_AT = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
PIPELINE = """
CREATE TABLE events (
  event_id STRING, event_type STRING, event_time TIMESTAMP_LTZ(3),
  user_id STRING, anonymous_id STRING
) WITH ('connector' = 'fluvial', 'topic' = 'events');
CREATE TABLE last_events (
  event_id STRING, event_type STRING, user_id STRING, anonymous_id STRING,
  PRIMARY KEY (event_id) NOT ENFORCED
) WITH ('connector' = 'store', 'table' = 'last_events');
INSERT INTO last_events SELECT event_id, event_type, user_id, anonymous_id FROM events;
"""


def build(root: Path, events: int, users: int) -> Project:
    from fluvial.batch import run
    from fluvial.events.ingest import Ingestor
    from fluvial.examples.clickstream import load_catalogue
    from fluvial.generate.clickstream import ClickstreamConfig, clickstream_batches
    from fluvial.lake import Archiver, open_lake
    from fluvial.stream.job import plan_text
    from fluvial.stream.runtime import run_job

    project = Project.init(root, example="clickstream")
    config = ClickstreamConfig(events=events, seed=3, users=users, days=30, start_ms=START_MS)
    with Ingestor.for_project(project) as ingestor:
        for batch in clickstream_batches(config):
            ingestor.ingest(batch.lines(), received_at_ms=START_MS + 31 * 86_400_000, app_id="demo")
    with open_lake(project) as lake, project.open_log() as log:
        Archiver(lake, log, settings=project.settings).run(until_idle=True)
    load_catalogue(project, exported_at=BUILT_AT)
    run(project, now=BUILT_AT)
    run_job(
        plan_text(PIPELINE, source="last_events.sql"),
        project=project,
        until_idle=True,
        checkpoint_dir=root.parent / "checkpoints",
    )
    return project


def busiest_user(project: Project) -> str:
    from fluvial.lake import open_lake

    with open_lake(project) as lake:
        ids = lake.table("raw.events").scan(selected_fields=("user_id",)).to_arrow()
    counts = Counter(v for v in ids["user_id"].to_pylist() if v)
    return counts.most_common(1)[0][0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=0)
    args = parser.parse_args()
    users = args.users or max(args.events // 50, 10)

    from fluvial.govern.forget import forget

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "shop"
        started = time.perf_counter()
        project = build(root, args.events, users)
        built = time.perf_counter() - started
        user = busiest_user(project)
        files = sum(1 for p in project.data_dir.rglob("*") if p.is_file())
        t0 = time.perf_counter()
        preview = forget(project, user, dry_run=True)
        dry = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = forget(project, user)
        real = time.perf_counter() - t0
    totals = report.totals()
    print(f"reference project: {args.events:,} events, {users:,} users, {files:,} files")
    print(f"  (built in {built:.1f} s, not timed)")
    print(f"user {user}: {len(report.anonymous_ids)} devices; rows removed {totals}")
    print(f"{'forget --dry-run':<20}{dry:>8.2f} s")
    print(f"{'forget':<20}{real:>8.2f} s   ({report.files_deleted} files deleted)")
    for place, seconds in report.timings.items():
        print(f"  {place:<18}{seconds:>8.2f} s   (dry run {preview.timings.get(place, 0):.2f} s)")
    assert preview.totals() == totals
    print(
        json.dumps(
            {
                "benchmark": "forget",
                "events": args.events,
                "users": users,
                "dry_run_seconds": round(dry, 3),
                "forget_seconds": round(real, 3),
                "timings": report.timings,
                "dry_run_timings": preview.timings,
                "rows": totals,
                "files_deleted": report.files_deleted,
                "cpus": os.cpu_count(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
