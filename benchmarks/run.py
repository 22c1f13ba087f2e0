"""Run every benchmark in turn (``make bench``); each prints a table and a JSON line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = ("bench_log", "bench_collector", "bench_validate", "bench_generate")


def main() -> int:
    here = Path(__file__).parent
    failed = 0
    for name in BENCHMARKS:
        print(f"=== {name}", flush=True)
        failed += (
            subprocess.call(
                [
                    sys.executable,
                    str(here / f"{name}.py"),
                ]
            )
            != 0
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
