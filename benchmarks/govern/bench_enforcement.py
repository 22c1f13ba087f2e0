"""Benchmark the enforcement point: web-analytics queries as a restricted role vs raw DuckDB.

Run: ``python benchmarks/govern/bench_enforcement.py``, options: ``--rows N`` (default
2,000,000), ``--repeat N`` (timed runs per query and mode, best kept, default 7),
``--dir PATH``, ``--all-cores``.

One generated ``curated.hits`` table in the style of ClickBench's ``hits`` (time, counter,
user, client IP, region, URL, search phrase, …) is written to the lake. Twelve
ClickBench-style queries run four ways, interleaved, in one process:

- **raw** — the admin on a plain DuckDB connection over the lake
  (:func:`fluvial.lake.connect`), the query text as written;
- **admin** — :meth:`GovernedSession.run` as the bootstrap admin (parse, checks, rewrite,
  DuckDB's own parse of the result, the sandbox, the audit record with its fsync);
- **restricted** — the same as role ``analyst``, whose policy (real grants in the
  project's policy database) hides column ``email``, hashes ``client_ip`` (a salted
  SHA-256 per row read) and holds a tenant-style row filter (``counter_id <> 0``) that
  every generated row passes;
- **by hand** — raw DuckDB over a view written by hand with the analyst's filter and
  mask: what the policy itself costs, without the enforcement machinery.

Every mode returns the same rows (checked; the restricted and by-hand ones with the hashed
``client_ip``). Overhead = restricted / raw - 1 (the policy's cost included) and
restricted / by hand - 1 (the enforcement point's own cost), per query and in total;
target <= 5 %.
Prints a table, then one JSON line.
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
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``fluvial`` and ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import pyarrow as pa

from fluvial.govern.enforce import GovernedSession
from fluvial.govern.model import Mask
from fluvial.govern.policy import open_policy
from fluvial.govern.principals import open_principals
from fluvial.lake import append, connect, open_lake
from fluvial.project import Project

TARGET = 0.05
T = "curated.hits"

#: ClickBench-style queries (https://github.com/ClickHouse/ClickBench), on our column names
QUERIES = {
    "q1 count": f"SELECT count(*) FROM {T}",
    "q2 count where": f"SELECT count(*) FROM {T} WHERE adv_engine_id <> 0",
    "q3 sums": f"SELECT sum(adv_engine_id), count(*), avg(resolution_width) FROM {T}",
    "q4 distinct users": f"SELECT count(DISTINCT user_id) FROM {T}",
    "q5 distinct phrases": f"SELECT count(DISTINCT search_phrase) FROM {T}",
    "q6 users by region": (
        f"SELECT region_id, count(DISTINCT user_id) AS u FROM {T} "
        "GROUP BY region_id ORDER BY u DESC, region_id LIMIT 10"
    ),
    "q7 top phrases": (
        f"SELECT search_phrase, count(*) AS c FROM {T} WHERE search_phrase <> '' "
        "GROUP BY search_phrase ORDER BY c DESC, search_phrase LIMIT 10"
    ),
    "q8 top users": (
        f"SELECT user_id, count(*) AS c FROM {T} GROUP BY user_id ORDER BY c DESC, user_id LIMIT 10"
    ),
    "q9 url like": (
        f"SELECT url, count(*) AS c FROM {T} WHERE url LIKE '%google%' "
        "GROUP BY url ORDER BY c DESC, url LIMIT 10"
    ),
    "q10 page views per minute": (
        f"SELECT date_trunc('minute', event_time) AS m, count(*) AS pv FROM {T} "
        "WHERE counter_id = 62 AND event_date BETWEEN DATE '2013-07-01' AND DATE '2013-07-31' "
        "AND is_refresh = 0 GROUP BY m ORDER BY m LIMIT 10 OFFSET 100"
    ),
    "q11 url length by counter": (
        f"SELECT counter_id, avg(length(url)) AS l, count(*) AS c FROM {T} WHERE url <> '' "
        "GROUP BY counter_id HAVING count(*) > 1000 ORDER BY l DESC, counter_id LIMIT 25"
    ),
    "q12 top client ips (masked)": (
        f"SELECT client_ip, count(*) AS c FROM {T} GROUP BY client_ip "
        "ORDER BY c DESC, client_ip LIMIT 10"
    ),
}
MASKED = {"q12 top client ips (masked)"}


def hits(rows: int, seed: int = 42) -> pa.Table:
    """*rows* page views of July 2013, vectorized."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2013-07-01T00:00:00", "s")
    seconds = np.sort(rng.integers(0, 31 * 86_400, rows))
    times = start + seconds.astype("timedelta64[s]")
    phrases = np.array(
        [
            "",
            "",
            "",
            "fluvial",
            "data lake",
            "iceberg",
            "flink sql",
            "duckdb",
            "clickstream analytics",
            "stream processing",
        ]
    )
    sites = np.array(
        [
            "https://example.com",
            "https://google.com/search",
            "https://shop.example.org",
            "https://news.example.net",
            "https://maps.google.com",
        ]
    )
    paths = rng.integers(0, 5_000, rows).astype(str)
    url = np.char.add(np.char.add(sites[rng.integers(0, len(sites), rows)], "/p/"), paths)
    ips = rng.integers(0, 2**31, 200_000, dtype=np.int64)
    users = rng.integers(1, 2**62, 300_000, dtype=np.int64)
    return pa.table(
        {
            "watch_id": pa.array(rng.integers(0, 2**62, rows, dtype=np.int64)),
            "event_time": pa.array(times, pa.timestamp("us")),
            "event_date": pa.array(times.astype("datetime64[D]"), pa.date32()),
            "counter_id": pa.array(rng.choice([62, 1, 2, 3, 7, 11, 42], rows), pa.int32()),
            "user_id": pa.array(users[rng.zipf(1.3, rows) % len(users)]),
            "client_ip": pa.array(ips[rng.zipf(1.2, rows) % len(ips)]),
            "email": pa.array(
                np.char.add(rng.integers(0, 300_000, rows).astype(str), "@mail.example")
            ),
            "region_id": pa.array(rng.integers(1, 500, rows), pa.int32()),
            "url": pa.array(url),
            "search_phrase": pa.array(phrases[rng.integers(0, len(phrases), rows)]),
            "adv_engine_id": pa.array(rng.choice([0, 0, 0, 0, 0, 0, 2, 3], rows), pa.int16()),
            "resolution_width": pa.array(
                rng.choice([1024, 1280, 1366, 1920, 2560], rows), pa.int16()
            ),
            "is_refresh": pa.array(rng.integers(0, 2, rows), pa.int8()),
        }
    )


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return sorted(zip(*(c.to_pylist() for c in table.columns), strict=True), key=repr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows in curated.hits")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per query and mode")
    parser.add_argument("--dir", type=Path, default=None, help="where the project goes")
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    args = parser.parse_args(argv)
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    base = args.dir or Path(tempfile.mkdtemp(prefix="fluvial-bench-enforce-"))
    try:
        project = Project.init(base / "project", exist_ok=True)
        data = hits(args.rows)
        with open_lake(project) as lake:
            table = lake.create_table(T, data.schema)
            for offset in range(0, data.num_rows, 1_000_000):
                append(table, data.slice(offset, 1_000_000))
                table = lake.table(T)
        store = open_principals(project)
        store.create_role("analyst")
        analyst, _ = store.create("ana", roles=["analyst"])
        root = store.local_admin()
        policy = open_policy(project)
        policy.grant(["SELECT"], on=T, to="analyst")
        policy.set_filter(
            "from_2013",
            "analyst",
            T,
            "counter_id <> 0",
            exclude=["email"],
        )
        policy.set_mask("analyst", T, "client_ip", Mask("hash"))
        analyst = store.get("ana")

        best: dict[str, dict[str, float]] = {q: {} for q in QUERIES}
        results: dict[str, dict[str, list[tuple[Any, ...]]]] = {q: {} for q in QUERIES}
        with open_lake(project) as lake:
            raw = connect(lake)
            salt = policy.salt.replace("'", "''")
            columns = [c for c in data.column_names if c != "email"]
            shown = ", ".join(
                f"CASE WHEN client_ip IS NULL THEN NULL ELSE sha256('{salt}' || "
                "CAST(client_ip AS VARCHAR)) END AS client_ip"
                if c == "client_ip"
                else c
                for c in columns
            )
            raw.execute(
                f"CREATE VIEW curated.hits_by_hand AS SELECT {shown} FROM {T} WHERE counter_id <> 0"
            )
            with GovernedSession(project, resolver=policy) as session:
                for _ in range(args.repeat):
                    for name, sql in QUERIES.items():
                        runs = {
                            "raw": lambda sql=sql: raw.sql(sql).to_arrow_table(),
                            "by hand": lambda sql=sql: raw.sql(
                                sql.replace(T, "curated.hits_by_hand")
                            ).to_arrow_table(),
                            "admin": lambda sql=sql: (
                                session.run(root, sql, limit=100_000, timeout=600).table
                            ),
                            "restricted": lambda sql=sql: (
                                session.run(analyst, sql, limit=100_000, timeout=600).table
                            ),
                        }
                        for mode, run in runs.items():
                            started = time.perf_counter()
                            out = run()
                            took = time.perf_counter() - started
                            best[name][mode] = min(best[name].get(mode, float("inf")), took)
                            results[name][mode] = _rows(out)
            raw.close()
        for name in QUERIES:
            same = results[name]["raw"] == results[name]["admin"]
            same = same and results[name]["by hand"] == results[name]["restricted"]
            if name not in MASKED:
                same = same and results[name]["raw"] == results[name]["restricted"]
            if not same:
                raise SystemExit(f"{name}: the governed result differs from the raw one")
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)

    print(
        f"{args.rows:,} rows in {T}; best of {args.repeat} runs; one core"
        if not args.all_cores
        else f"{args.rows:,} rows in {T}; best of {args.repeat} runs; all cores"
    )
    modes = ("raw", "admin", "restricted", "by hand")
    print(
        f"{'query':<28}"
        + "".join(f"{m + ' ms':>14}" for m in modes)
        + f"{'vs raw':>10}{'vs hand':>10}"
    )
    totals = dict.fromkeys(modes, 0.0)
    unmasked = dict.fromkeys(modes, 0.0)
    report = []
    for name, times in best.items():
        for mode in modes:
            totals[mode] += times[mode]
            if name not in MASKED:
                unmasked[mode] += times[mode]
        print(
            f"{name:<28}"
            + "".join(f"{times[m] * 1e3:>14.1f}" for m in modes)
            + f"{times['restricted'] / times['raw'] - 1:>+10.1%}"
            + f"{times['restricted'] / times['by hand'] - 1:>+10.1%}"
        )
        report.append({"query": name, **{k: round(v * 1e3, 2) for k, v in times.items()}})
    summary = {}
    for label, sums in (("total", totals), ("total without q12", unmasked)):
        vs_raw = sums["restricted"] / sums["raw"] - 1
        vs_hand = sums["restricted"] / sums["by hand"] - 1
        summary[label] = {
            "vs_raw": round(vs_raw, 4),
            "vs_hand": round(vs_hand, 4),
            "admin_vs_raw": round(sums["admin"] / sums["raw"] - 1, 4),
        }
        print(
            f"{label:<28}"
            + "".join(f"{sums[m] * 1e3:>14.1f}" for m in modes)
            + f"{vs_raw:>+10.1%}{vs_hand:>+10.1%}"
        )
    print(
        f"target: the enforcement point adds <= {TARGET:.0%} (restricted vs by hand, admin vs raw)"
    )
    print(
        json.dumps(
            {
                "bench": "govern_enforcement",
                "rows": args.rows,
                "queries": report,
                "summary": summary,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
