"""Benchmark the per-query cost of governance: authenticate a key, resolve a TableAccess.

Every governed query authenticates its principal once and asks the policy store for one
``TableAccess`` per table it reads, so these two calls are the fixed overhead governance
adds to a query. The policy is realistic for a mid-sized team: 200 principals, 30 roles
nested three deep, 1,000 grants (tables and columns), 150 tags, 20 tag grants,
20 filters and 20 masks; the table read has 40 columns. Target: both well under a
millisecond (a small query runs in tens of milliseconds). Run::

    .venv/bin/python benchmarks/govern/bench_policy.py [--seconds 3]

It prints the figures and one JSON line (``{"benchmark": "govern", ...}``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable

from fluvial.govern.model import Mask
from fluvial.govern.policy import open_policy
from fluvial.govern.principals import open_principals
from fluvial.project import Project

COLUMNS = [f"c{i:02d}" for i in range(40)]
TABLE = "curated.t099"


def build(root: str) -> str:
    """A project with the policy described above; returns the first principal's key."""
    policy = open_policy(Project.init(root))
    people = policy.principals
    roles = [f"role{i:02d}" for i in range(30)]
    for i, role in enumerate(roles):
        people.create_role(role)
        if i >= 10:  # roles 10-29 sit inside roles 0-19: three levels
            people.grant_role(roles[i - 10], to=role)
    names = []
    key = ""
    for i in range(200):
        principal, secret = people.create(f"user{i:03d}", roles=[roles[20 + i % 10]])
        names.append(principal.name)
        key = key or secret
    tables = [f"curated.t{i:03d}" for i in range(100)]
    for i in range(1000):
        grantee = roles[i % 30] if i % 3 else names[i % 200]
        table = tables[i % 100]
        cols = [COLUMNS[i % 40]] if i % 2 else None
        policy.grant("SELECT", on=table, to=grantee, columns=cols, table_columns=COLUMNS)
    for i in range(150):
        policy.tag(
            tables[i % 100],
            COLUMNS[i % 40],
            key=f"k{i % 7}",
            value=f"v{i % 5}",
            table_columns=COLUMNS,
        )
    for i in range(20):
        policy.grant_on_tags(f"k{i % 7}=v{i % 5} AND k{(i + 1) % 7}!=*", "SELECT", to=roles[i])
    for i in range(20):
        policy.set_filter(f"f{i}", roles[i], tables[i % 5], f"c00 > {i}", table_columns=COLUMNS)
        policy.set_mask(roles[i], tables[i % 5], COLUMNS[i], Mask("hash"), table_columns=COLUMNS)
    # the table measured: two of the principal's roles read it through filters and masks
    policy.grant("SELECT", on=TABLE, to="role20", table_columns=COLUMNS)
    policy.set_filter("big", "role20", TABLE, "c00 > 5", table_columns=COLUMNS)
    policy.set_mask("role20", TABLE, "c01", Mask("hash"), table_columns=COLUMNS)
    policy.grant("SELECT", on=TABLE, to="role10", columns=COLUMNS[:20], table_columns=COLUMNS)
    policy.set_filter("tagged", "role10", TABLE, "c02 = 'x'", table_columns=COLUMNS)
    return key


def measure(call: Callable[[], object], seconds: float) -> dict[str, float]:
    samples: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return {
        "calls": len(samples),
        "per_s": round(len(samples) / sum(samples)),
        "p50_us": round(statistics.median(samples) * 1e6),
        "p99_us": round(samples[int(len(samples) * 0.99)] * 1e6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        key = build(tmp + "/p")
        policy = open_policy(Project(tmp + "/p"))
        principal = policy.principals.authenticate(key)
        auth = measure(lambda: policy.principals.authenticate(key), args.seconds)
        project = policy.project  # as the API server does: a store per request, one project
        per_request = measure(lambda: open_principals(project).authenticate(key), args.seconds)
        access = measure(lambda: policy.access(principal, TABLE, COLUMNS), args.seconds)
        result = policy.access(principal, TABLE, COLUMNS)
    print(f"authenticate: {auth['per_s']:,}/s  p50 {auth['p50_us']} us  p99 {auth['p99_us']} us")
    print(
        f"authenticate, a store opened per request: {per_request['per_s']:,}/s  "
        f"p50 {per_request['p50_us']} us  p99 {per_request['p99_us']} us"
    )
    print(
        f"access ({len(result.columns)} of {len(COLUMNS)} columns readable, "
        f"{len(principal.roles)} roles, {len(result.masks)} masks, rows {result.row_filter}): "
        f"{access['per_s']:,}/s  p50 {access['p50_us']} us  "
        f"p99 {access['p99_us']} us"
    )
    result_line = {"authenticate": auth, "authenticate_per_request": per_request, "access": access}
    print(json.dumps({"benchmark": "govern", **result_line}))


if __name__ == "__main__":
    main()
