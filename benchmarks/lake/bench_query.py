"""Benchmark lake queries: a DuckDB aggregate over an Iceberg table vs the same Parquet.

Run: ``python -m benchmarks.lake.bench_query`` (or ``python benchmarks/lake/bench_query.py``),
options: ``--events N`` (default 4,000,000), ``--repeat N`` (timed runs, best kept,
default 5), ``--dir PATH``, ``--all-cores``.

The same synthetic clickstream rows are written twice, in the same commits of 1,000,000
rows: into ``raw.events`` through :func:`fluvial.lake.append` (hourly partitions, zstd),
and as plain zstd Parquet files. Each query runs over ``raw.events`` (the view
:func:`fluvial.lake.connect` makes over ``iceberg_scan``) and over ``read_parquet`` of the
files; the ratio is Iceberg time / Parquet time. Target: <= 1.2x. Prints a table, then
one JSON line.
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

import pyarrow.parquet as pq

from benchmarks.bench_log import clickstream
from fluvial.lake import append, connect, open_lake
from fluvial.lake.write import to_iceberg_types
from fluvial.project import Project

TARGET = 1.2

QUERIES = {
    "group by type": (
        "SELECT event_type, count(*) AS n, count(DISTINCT user_id) AS users "
        "FROM {t} GROUP BY 1 ORDER BY 1"
    ),
    "top pages": (
        "SELECT page.url AS url, count(*) AS views FROM {t} "
        "WHERE event_type = 'page_view' GROUP BY 1 ORDER BY 2 DESC LIMIT 10"
    ),
    "per minute": (
        "SELECT date_trunc('minute', event_time) AS m, count(*) AS n FROM {t} GROUP BY 1"
    ),
}


def _best(con: object, sql: str, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = con.sql(sql).to_arrow_table().to_pylist()  # type: ignore[attr-defined]
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=4_000_000, help="rows in the table")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per query")
    parser.add_argument("--dir", type=Path, default=None, help="where the project goes")
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    args = parser.parse_args(argv)
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    base = args.dir or Path(tempfile.mkdtemp(prefix="fluvial-bench-query-"))
    rows: list[dict[str, object]] = []
    ok = True
    try:
        project = Project.init(base / "project", exist_ok=True)
        plain = base / "parquet"
        plain.mkdir()
        with open_lake(project) as lake:
            commit = 1_000_000
            table = None
            for i in range(0, args.events, commit):
                data = clickstream(min(commit, args.events - i), seed=i)
                if table is None:
                    table = lake.create_table("raw.events", data.schema, time_column="event_time")
                append(table, data)
                pq.write_table(
                    to_iceberg_types(data), plain / f"{i:09d}.parquet", compression="zstd"
                )
            con = connect(lake)
            threads = 1 if not args.all_cores else os.cpu_count() or 1
            con.execute(f"SET threads = {threads}")
            parquet = f"read_parquet('{plain}/*.parquet')"
            for name, sql in QUERIES.items():
                t_ice, r_ice = _best(con, sql.format(t="raw.events"), args.repeat)
                t_pq, r_pq = _best(con, sql.format(t=parquet), args.repeat)
                same = sorted(map(str, r_ice)) == sorted(map(str, r_pq))  # type: ignore[call-overload]
                ok = ok and same
                rows.append(
                    {
                        "query": name,
                        "iceberg_s": t_ice,
                        "parquet_s": t_pq,
                        "ratio": t_ice / t_pq,
                        "same_result": same,
                    }
                )
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    print(f"{'query':<16} {'iceberg ms':>11} {'parquet ms':>11} {'ratio':>7}  target")
    for r in rows:
        mark = "ok" if r["ratio"] <= TARGET else "MISSED"  # type: ignore[operator]
        print(
            f"{r['query']:<16} {r['iceberg_s'] * 1000:>11.1f} {r['parquet_s'] * 1000:>11.1f} "  # type: ignore[operator]
            f"{r['ratio']:>7.2f}  <= {TARGET} {mark}"
        )
    total_ice = sum(r["iceberg_s"] for r in rows)  # type: ignore[misc]
    total_pq = sum(r["parquet_s"] for r in rows)  # type: ignore[misc]
    print(
        f"{'all':<16} {total_ice * 1000:>11.1f} {total_pq * 1000:>11.1f} {total_ice / total_pq:>7.2f}"
    )
    print(
        json.dumps(
            {
                "benchmark": "lake.query",
                "events": args.events,
                "ratio": round(total_ice / total_pq, 3),
                "queries": [
                    {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                    for r in rows
                ],
                "target": TARGET,
            }
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
