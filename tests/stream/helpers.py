"""Shared helpers of the stream tests: seeded click events, a JSON file of them in
Flink's SQL timestamp format, sinks, and comparing outputs with DuckDB as multisets.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pyarrow as pa

from fluvial.stream.connectors.base import CONNECTORS, Sink
from fluvial.stream.job import plan_text
from fluvial.stream.runtime import JobResult, run_job

BASE = dt.datetime(2026, 11, 24, 10, 0, 0)
USERS = [f"u{i}" for i in range(12)]
PAGES = ["/home", "/p/1", "/p/2", "/cart", "/checkout"]

SOURCE = """
CREATE TABLE clicks (
  user_id STRING,
  page STRING,
  amount DOUBLE,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');
"""


def make_rows(n: int = 1500, seed: int = 7, disorder_ms: int = 4000) -> list[dict[str, Any]]:
    """Rows 250 ms apart on average, each up to *disorder_ms* earlier than its slot."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        t = BASE + dt.timedelta(milliseconds=i * 250 + rng.randint(-disorder_ms, 0))
        amount = None if rng.random() < 0.1 else round(rng.uniform(0, 100), 2)
        rows.append(
            {"user_id": rng.choice(USERS), "page": rng.choice(PAGES), "amount": amount, "ts": t}
        )
    return rows


def write_json(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            ts = r["ts"].strftime("%Y-%m-%d %H:%M:%S.") + f"{r['ts'].microsecond // 1000:03d}"
            f.write(json.dumps({**r, "ts": ts}) + "\n")
    return path


def expected_con(rows: list[dict[str, Any]]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the rows as table ``e`` (plus ``t``: epoch ms)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    table = pa.table(
        {
            "user_id": [r["user_id"] for r in rows],
            "page": [r["page"] for r in rows],
            "amount": pa.array([r["amount"] for r in rows], pa.float64()),
            "ts": pa.array([r["ts"] for r in rows], pa.timestamp("ms")),
        }
    )
    con.register("raw", table)
    con.execute("CREATE TABLE e AS SELECT *, epoch_ms(ts) AS t FROM raw")
    return con


def norm(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    return value


def multiset(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    normed = [tuple(norm(v) for v in r) for r in rows]
    return sorted(normed, key=lambda r: tuple((v is None, str(v)) for v in r))


def run_pipeline(tmp_path: Path, sql: str, **kwargs: Any) -> JobResult:
    job = plan_text(sql, source="test.sql")
    return run_job(job, until_idle=True, checkpoint_dir=tmp_path / "checkpoints", **kwargs)


def read_output(path: Path, select: str) -> list[tuple[Any, ...]]:
    files = sorted(str(p) for p in path.rglob("*.parquet"))
    assert files, f"the sink wrote no parquet file under {path}"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con.execute(f"SELECT {select} FROM read_parquet({files!r})").fetchall()


def sink(path: Path, columns: str) -> str:
    return (
        f"CREATE TABLE out ({columns}) WITH ('connector' = 'filesystem', "
        f"'path' = '{path}', 'format' = 'parquet');\n"
    )


class CollectSink(Sink):
    """A test sink that accepts updates and keeps every committed table (class-level, by
    table name): ``'connector' = 'collect'`` once :func:`collecting` registered it."""

    accepts_updates: ClassVar[bool] = True
    committed: ClassVar[dict[str, list[pa.Table]]] = {}

    def __init__(self, table: Any, options: Any, context: Any) -> None:
        super().__init__(table, options, context)
        self._staged: list[pa.Table] = []

    def write(self, table: pa.Table) -> None:
        self._staged.append(table)

    def commit(self, checkpoint_id: int) -> None:
        self.committed.setdefault(self.table.name, []).extend(self._staged)
        self._staged = []


@contextmanager
def collecting() -> Iterator[dict[str, list[pa.Table]]]:
    """Register ``'connector' = 'collect'`` (a :class:`CollectSink`) while in the block."""
    CONNECTORS["sink"]["collect"] = f"{__name__}:CollectSink"
    CollectSink.committed = {}
    try:
        yield CollectSink.committed
    finally:
        CONNECTORS["sink"].pop("collect", None)


def upserted(tables: list[pa.Table], key: list[str]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Apply a changelog (``_op``: 0 +I, 1 -U, 2 +U, 3 -D) by *key*: the final rows."""
    state: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for t in tables:
        for row in t.to_pylist():
            op = row.pop("_op", 0)
            k = tuple(row[c] for c in key)
            if op in (0, 2):
                state[k] = tuple(row.values())
            elif op == 3:
                state.pop(k, None)
            else:  # -U: retracts what was emitted (a +U, if any, follows)
                assert state.pop(k, None) == tuple(row.values()), "-U must retract the last row"
    return state
