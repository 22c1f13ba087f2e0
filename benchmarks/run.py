"""Run every benchmark in turn (``make bench``); each prints a table and a JSON line.

The Flink comparison runs only when PyFlink's venv exists (``make flink``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = (
    "bench_log.py",
    "log/bench_kinesis.py",
    "bench_collector.py",
    "bench_validate.py",
    "bench_generate.py",
    "stream/bench_ops.py",
    "stream/bench_nexmark.py",
    "stream/bench_vs_flink.py",
    "lake/bench_archive.py",
    "lake/bench_query.py",
    "lake/bench_compact.py",
    "serve/bench_store.py",
    "serve/bench_freshness.py",
    "batch/bench_reference.py",
    "bench_aws_sizes.py",
    "govern/bench_forget.py",
    "govern/bench_policy.py",
    "govern/bench_enforcement.py",
)


def main() -> int:
    failed = 0
    for name in BENCHMARKS:
        if name == "stream/bench_vs_flink.py" and not (HERE.parent / ".venv-flink").exists():
            print(f"=== {name}: skipped (no .venv-flink; run `make flink`)", flush=True)
            continue
        print(f"=== {name}", flush=True)
        failed += subprocess.call([sys.executable, str(HERE / name)]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
