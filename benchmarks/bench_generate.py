"""Throughput of the load generators: ``python benchmarks/bench_generate.py [--events N]``.

Measures, in events per second of wall-clock time (setup included):

- clickstream generated into memory, and written to an NDJSON file;
- nexmark as Arrow tables, as NDJSON to a file, and appended to an embedded log.

Targets: clickstream ≥ 100,000 events/s to a file, nexmark ≥ 500,000 events/s to the log.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fluvial.generate import (
    ClickstreamConfig,
    NexmarkConfig,
    append_nexmark,
    clickstream_batches,
    nexmark_lines,
    nexmark_tables,
)
from fluvial.generate.sinks import write_file
from fluvial.project import Project

START_MS = 1_780_000_000_000


def _timed(name: str, events: int, run: Callable[[], object]) -> dict[str, object]:
    began = time.perf_counter()
    run()
    seconds = time.perf_counter() - began
    result = {"benchmark": name, "events": events, "seconds": round(seconds, 3),
              "events_per_second": round(events / seconds)}  # fmt: skip
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000, help="clickstream events")
    parser.add_argument("--nexmark-events", type=int, default=2_000_000)
    args = parser.parse_args()
    n, m = args.events, args.nexmark_events
    click = ClickstreamConfig(events=n, users=50_000, days=7, start_ms=START_MS)
    nex = NexmarkConfig(events=m, start_ms=START_MS)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _timed("clickstream: generate", n, lambda: sum(len(b) for b in clickstream_batches(click)))
        _timed(
            "clickstream: to file",
            n,
            lambda: write_file(clickstream_batches(click), root / "c.ndjson"),
        )
        _timed("nexmark: arrow tables", m, lambda: sum(t.num_rows for t in nexmark_tables(nex)))

        def to_file() -> None:
            with open(root / "n.ndjson", "wb") as handle:
                for table in nexmark_tables(nex):
                    handle.write(nexmark_lines(table)[0])

        _timed("nexmark: ndjson file", m, to_file)
        project = Project.init(root / "project")

        def to_log() -> None:
            with project.open_log() as log:
                append_nexmark(log, nexmark_tables(nex))

        _timed("nexmark: embedded log", m, to_log)


if __name__ == "__main__":
    main()
