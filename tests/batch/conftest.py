"""A tiny batch project: a raw zone table of events, and helpers to write models."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from fluvial.lake import Lake, append, open_lake
from fluvial.project import Project

EVENTS = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.string()),
        ("kind", pa.string()),
        ("amount", pa.int64()),
        ("at", pa.timestamp("us", tz="UTC")),
    ]
)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def events(start: int, count: int, *, days: int = 3, seed: int = 0) -> pa.Table:
    """*count* events with ids start.., spread over *days* days from T0 (vectorized)."""
    rng = np.random.default_rng(seed + start)
    ids = np.arange(start, start + count)
    at = np.datetime64(T0.replace(tzinfo=None), "us") + (
        rng.integers(0, days * 86_400, count) * 1_000_000
    ).astype("timedelta64[us]")
    return pa.table(
        {
            "event_id": pa.array([f"e{i}" for i in ids]),
            "user_id": pa.array([f"u{i % 7}" for i in ids]),
            "kind": pa.array(np.array(["view", "click", "buy"])[ids % 3]),
            "amount": pa.array(rng.integers(1, 100, count)),
            "at": pa.array(at, pa.timestamp("us", tz="UTC")),
        },
        schema=EVENTS,
    )


@pytest.fixture
def bproject(tmp_path: Path) -> Project:
    """A project with fast retries and lock waits."""
    project = Project.init(tmp_path / "shop")
    env = {
        "FLUVIAL_BATCH__RETRIES": "2",
        "FLUVIAL_BATCH__RETRY_BACKOFF_SECONDS": "0.01",
        "FLUVIAL_BATCH__LOCK_TIMEOUT_SECONDS": "0.5",
    }
    return Project(project.root, env=env)


@pytest.fixture
def lake(bproject: Project) -> Iterator[Lake]:
    with open_lake(bproject) as lake:
        lake.create_table("raw.events", EVENTS, time_column="at")
        yield lake


@pytest.fixture
def add_events(lake: Lake) -> Callable[[pa.Table], None]:
    def add(data: pa.Table) -> None:
        append(lake.table("raw.events"), data)

    return add


@pytest.fixture
def write_model(bproject: Project) -> Callable[[str, str], Path]:
    """write_model("refined/x.sql", text) -> the file."""

    def write(rel: str, text: str) -> Path:
        path = bproject.root / "models" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).strip() + "\n")
        return path

    return write


def read(lake: Lake, name: str) -> pa.Table:
    """A lake table's current rows."""
    return lake.table(name).scan().to_arrow()


def reference(sql: str, **tables: pa.Table) -> pa.Table:
    """Run independently written SQL over named Arrow tables in plain DuckDB."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, table in tables.items():
        con.register(name, table)
    return con.sql(sql).to_arrow_table()


def rows(table: pa.Table, *order: str) -> list[dict[str, object]]:
    """Rows as dicts, sorted by *order* (for comparisons independent of file order)."""
    data = table.sort_by([(c, "ascending") for c in order]) if order else table
    return data.to_pylist()


def days_ago(n: int) -> datetime:
    return T0 + timedelta(days=n)
