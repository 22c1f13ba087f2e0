"""Nexmark queries on the stream engine, reading Nexmark events from the embedded log.

Run: ``python benchmarks/stream/bench_nexmark.py [--events N] [--all-cores]``.

Events are appended once (not timed) to topic ``nexmark`` of a temporary project with
``fluvial generate``'s vectorized Nexmark generator; each query is then a whole pipeline
file run by ``fluvial.stream`` with ``until_idle`` into a blackhole sink, so a figure
covers reading the log, computed columns, the watermark, the query and the sink. Pinned
to one core (Polars and DuckDB limited to one thread) unless ``--all-cores``.

Targets (issue 3): q0, q1, q2 >= 2,000,000 events/s; HOP count per auction (q5's inner
aggregate), a TUMBLE aggregate and a SESSION aggregate (q11) >= 1,000,000 events/s.
Prints a table, then one JSON line.
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

SOURCE = """
CREATE TABLE datagen (
  event_type INT,
  person ROW<id BIGINT, name VARCHAR, emailAddress VARCHAR, creditCard VARCHAR,
             city VARCHAR, state VARCHAR, dateTime TIMESTAMP(3), extra VARCHAR>,
  auction ROW<id BIGINT, itemName VARCHAR, description VARCHAR, initialBid BIGINT,
              reserve BIGINT, dateTime TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT,
              category BIGINT, extra VARCHAR>,
  bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
          dateTime TIMESTAMP(3), extra VARCHAR>,
  dateTime AS CASE WHEN event_type = 0 THEN person.dateTime
                   WHEN event_type = 1 THEN auction.dateTime
                   ELSE bid.dateTime END,
  WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH ('connector' = 'fluvial', 'topic' = 'nexmark');

CREATE VIEW bid AS
SELECT bid.auction AS auction, bid.bidder AS bidder, bid.price AS price,
       bid.channel AS channel, bid.url AS url, dateTime, bid.extra AS extra
FROM datagen WHERE event_type = 2;
"""

QUERIES = {
    "q0 pass-through": (
        "auction BIGINT, bidder BIGINT, price BIGINT, dateTime TIMESTAMP(3), extra VARCHAR",
        "SELECT auction, bidder, price, dateTime, extra FROM bid",
        2_000_000,
    ),
    "q1 projection": (
        "auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), dateTime TIMESTAMP(3), extra VARCHAR",
        "SELECT auction, bidder, 0.908 * price AS price, dateTime, extra FROM bid",
        2_000_000,
    ),
    "q2 filter": (
        "auction BIGINT, price BIGINT",
        "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0",
        2_000_000,
    ),
    "q5 inner: HOP count per auction": (
        "auction BIGINT, num BIGINT, starttime TIMESTAMP(3), endtime TIMESTAMP(3)",
        """SELECT auction, COUNT(*) AS num, window_start AS starttime, window_end AS endtime
           FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
           GROUP BY auction, window_start, window_end""",
        1_000_000,
    ),
    "TUMBLE max price per 10 s": (
        "window_start TIMESTAMP(3), window_end TIMESTAMP(3), maxprice BIGINT, bids BIGINT",
        """SELECT window_start, window_end, MAX(price) AS maxprice, COUNT(*) AS bids
           FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
           GROUP BY window_start, window_end""",
        1_000_000,
    ),
    "q11 SESSION count per bidder": (
        "bidder BIGINT, bid_count BIGINT, starttime TIMESTAMP(3), endtime TIMESTAMP(3)",
        """SELECT bidder, COUNT(*) AS bid_count,
                  SESSION_START(dateTime, INTERVAL '10' SECOND) AS starttime,
                  SESSION_END(dateTime, INTERVAL '10' SECOND) AS endtime
           FROM bid GROUP BY bidder, SESSION(dateTime, INTERVAL '10' SECOND)""",
        1_000_000,
    ),
}


def pipeline(columns: str, query: str, one_core: bool = True) -> str:
    return (
        ("SET 'parallelism.default' = '1';\n" if one_core else "")
        + SOURCE
        + f"CREATE TABLE sink ({columns}) WITH ('connector' = 'blackhole');\n"
        + f"INSERT INTO sink {query};\n"
    )


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
        print(f"{'query':<36}{'events/s':>14}{'rows out':>12}  target")
        for i, (name, (columns, query, target)) in enumerate(QUERIES.items()):
            job = plan_text(
                pipeline(columns, query, not args.all_cores), source=name, name=f"bench{i}"
            )
            started = time.perf_counter()
            result = run_job(job, project=project, until_idle=True, checkpoint_dir=None)
            seconds = time.perf_counter() - started
            stats = result.pipelines[0]
            rate = stored / seconds
            results[name] = rate
            verdict = "ok" if rate >= target else "MISSED"
            print(f"{name:<36}{rate:>14,.0f}{stats.rows_out:>12,}  {target:,} {verdict}")
    print(json.dumps({"benchmark": "stream-nexmark", "events": stored, **results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
