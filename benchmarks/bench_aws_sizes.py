"""Measure the sizes the AWS cost model needs: bytes per clickstream event as JSON, in the
log, and as zstd Parquet in the lake; the ratio is ``fluvial aws cost --compression-ratio``.

Run: ``python benchmarks/bench_aws_sizes.py`` (options: ``--events N``, default 200,000).

It runs the real commands in a fresh project: ``fluvial generate clickstream -o`` (the
shop simulation, NDJSON), ``fluvial log load events`` (validated like the collector) and
``fluvial lake archive --until-idle`` (raw.events: hourly partitions, zstd Parquet). The
simulation spreads events over 7 days, so each hourly file holds ~1/170 of them: at real
rates files are larger and compress better, so the ratio here is a lower bound.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``fluvial`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fluvial.lake import open_lake
from fluvial.project import Project


def fluvial(*args: str, cwd: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "fluvial", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to generate")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="fluvial-bench-aws-"))
    try:
        root = base / "shop"
        Project.init(root)
        ndjson = root / "events.ndjson"
        fluvial("generate", "clickstream", "-n", str(args.events), "-o", str(ndjson), cwd=root)
        fluvial("log", "load", "events", str(ndjson), cwd=root)
        fluvial("lake", "archive", "--until-idle", cwd=root)
        project = Project(root)
        with project.open_log() as log:
            topic = next(t for t in log.list_topics() if t.name == "events")
        with open_lake(project) as lake:
            rows = lake.table("raw.events").scan().count()
        lines = ndjson.read_bytes().splitlines()
        json_bytes = sum(len(line) for line in lines) / len(lines)
        data = project.data_dir / "lake" / "raw" / "events" / "data"
        files = list(data.rglob("*.parquet"))
        parquet = sum(f.stat().st_size for f in files) / rows
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result = {
        "events": args.events,
        "json_bytes_per_event": round(json_bytes, 1),
        "log_bytes_per_event": round(topic.bytes / topic.records, 1),
        "parquet_bytes_per_event": round(parquet, 1),
        "parquet_files": len(files),
        "rows_in_raw_events": rows,
        "compression_ratio": round(json_bytes / parquet, 2),
    }
    print(f"{'measure':<36} {'value':>12}")
    for key, value in result.items():
        print(f"{key.replace('_', ' '):<36} {value:>12,}")
    print(json.dumps({"benchmark": "aws_sizes", **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
