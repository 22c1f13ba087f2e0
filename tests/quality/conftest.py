"""Quality fixtures: orders with known defects, a lake holding a users dimension."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from fluvial.lake import append, open_lake
from fluvial.project import Project

START = datetime(2026, 1, 1, tzinfo=UTC)
KINDS = ["web", "app", "store", "bogus", None]
USERS = 50  # curated.dim_users holds user ids 0..49; orders reference 0..59


def make_orders(n: int, *, seed: int = 0, duplicates: int = 10) -> pa.Table:
    """*n* orders with nulls, repeated keys, bad values, dangling user ids, and
    *duplicates* rows repeated verbatim at the end (so a quarantine cannot deduplicate).
    """
    rng = np.random.default_rng(seed)

    def nulls(values: list[Any], rate: float) -> list[Any]:
        mask = rng.random(n) < rate
        return [None if m else v for v, m in zip(values, mask, strict=True)]

    order_id = nulls(rng.integers(0, int(n * 0.9), n).tolist(), 0.03)
    emails = [f"u{k}@shop.example" if k % 7 else f"broken-{k}" for k in range(n)]
    table = pa.table(
        {
            "order_id": pa.array(order_id, pa.int64()),
            "line": pa.array(rng.integers(0, 3, n).tolist(), pa.int32()),
            "kind": pa.array(nulls([KINDS[i] for i in rng.integers(0, 4, n)], 0.05)),
            "amount": pa.array(nulls(np.round(rng.uniform(-10, 200, n), 2).tolist(), 0.04)),
            "email": pa.array(nulls(emails, 0.02)),
            "user_id": pa.array(nulls(rng.integers(0, USERS + 10, n).tolist(), 0.05), pa.int64()),
            "at": pa.array(
                [START + timedelta(minutes=int(m)) for m in rng.integers(0, 10_000, n)],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    if duplicates:
        table = pa.concat_tables([table, table.slice(0, duplicates)])
    return table


def multiset(table: pa.Table) -> Counter[tuple[Any, ...]]:
    """The rows of *table* as a multiset of tuples (column order as given)."""
    columns = table.to_pydict()
    return Counter(zip(*columns.values(), strict=True))


def positions(values: Iterable[bool]) -> list[int]:
    return [i for i, v in enumerate(values) if v]


def add_users(project: Project) -> None:
    """``curated.dim_users`` with user ids 0..USERS-1."""
    schema = pa.schema([("user_id", pa.int64()), ("name", pa.string())])
    data = pa.table(
        {"user_id": list(range(USERS)), "name": [f"user {i}" for i in range(USERS)]}, schema=schema
    )
    with open_lake(project) as lake:
        append(lake.create_table("curated.dim_users", schema), data)


@pytest.fixture
def quality_project(tmp_path: Path) -> Project:
    """A project (fsync off) whose lake has ``curated.dim_users``."""
    Project.init(tmp_path / "project")
    project = Project(tmp_path / "project", env={"FLUVIAL_LOG__FSYNC": "never"})
    add_users(project)
    return project


def write_rules(project: Project, relative: str, text: str) -> Path:
    path = project.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
