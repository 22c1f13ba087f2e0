"""Random event streams and an independent DuckDB reference for the window operators."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.stream.ops import AggSpec

AGGS = [
    AggSpec("n", "count_star"),
    AggSpec("c", "count", "x"),
    AggSpec("s", "sum", "x"),
    AggSpec("a", "avg", "x"),
    AggSpec("mn", "min", "y"),
    AggSpec("mx", "max", "x"),
    AggSpec("ay", "avg", "y"),
    AggSpec("sf", "sum", "x", "f"),
    AggSpec("nf", "count_star", None, "f"),
    AggSpec("d", "count_distinct", "x"),
    AggSpec("df", "count_distinct", "x", "f"),
]

# The same aggregates, written independently in DuckDB SQL (AVG of BIGINT truncates, as Flink).
AGG_SQL = """
    count(*) AS n, count(x) AS c, sum(x)::BIGINT AS s,
    CASE WHEN count(x) > 0 THEN trunc(sum(x)::DOUBLE / count(x))::BIGINT END AS a,
    min(y) AS mn, max(x) AS mx, avg(y) AS ay,
    sum(x) FILTER (WHERE f)::BIGINT AS sf, count(*) FILTER (WHERE f) AS nf,
    count(DISTINCT x) AS d, count(DISTINCT x) FILTER (WHERE f) AS df
"""


@dataclass
class Stream:
    """Events in arrival order, cut into micro-batches; ``wm`` is each row's batch watermark."""

    events: pa.Table
    batches: list[pa.Table]
    bound: int

    def run(self, op: object, start: int = 0, stop: int | None = None) -> Iterator[pa.Table]:
        """Feed batches ``start:stop`` the way the runtime does; yield every emitted table."""
        for batch in self.batches[start:stop]:
            wm = batch.column("wm")[0].as_py()
            op.process(batch.drop_columns(["wm"]), wm)  # type: ignore[attr-defined]
            after = _max_ms(batch) - self.bound
            yield op.advance(after if wm is None else max(wm, after))  # type: ignore[attr-defined]


def _max_ms(batch: pa.Table) -> int:
    return int(pc.max(batch.column("ts").cast(pa.int64())).as_py())


def make_stream(
    seed: int, n: int = 3000, keys: int = 6, bound: int = 61, late: float = 0.0, step: int = 2
) -> Stream:
    """Times on a grid of ``step`` ms, disordered by less than ``bound`` (plus ``late`` rows)."""
    rng = np.random.default_rng(seed)
    base = np.cumsum(rng.integers(0, 4, n)) * step + 1_700_000_000_000
    ts = base - (rng.integers(0, bound, n) // step) * step
    n_late = int(n * late)
    if n_late:
        idx = rng.choice(n, n_late, replace=False)
        ts[idx] -= rng.integers(bound, bound * 8, n_late) // step * step
    key_pool = np.array([f"k{i}" for i in range(keys)] + [None], dtype=object)
    k = key_pool[rng.integers(0, keys + 1, n)]
    x = pa.array(rng.integers(-20, 50, n), pa.int64(), mask=rng.random(n) < 0.15)
    y = pa.array(rng.normal(0, 10, n).round(3), pa.float64(), mask=rng.random(n) < 0.15)
    f = pa.array(rng.random(n) < 0.5, pa.bool_(), mask=rng.random(n) < 0.1)
    events = pa.table(
        {"ts": pa.array(ts, pa.int64()).cast(pa.timestamp("ms")), "k": k, "x": x, "y": y, "f": f}
    )
    batches, watermark, i = [], None, 0
    wms = []
    while i < n:
        size = int(rng.integers(1, 400))
        batch = events.slice(i, size)
        wms += [watermark] * batch.num_rows
        batches.append(
            batch.append_column("wm", pa.array([watermark] * batch.num_rows, pa.int64()))
        )
        after = _max_ms(batch) - bound
        watermark = after if watermark is None else max(watermark, after)
        i += size
    events = events.append_column("wm", pa.array(wms, pa.int64()))
    return Stream(events, batches, bound)


def rows(table: pa.Table) -> list[tuple[object, ...]]:
    """A table as a sorted multiset of tuples (times as epoch ms; floats to 1e-9 relative)."""
    columns = []
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("ms")).cast(pa.int64())
        values = col.to_pylist()
        if pa.types.is_floating(col.type):
            values = [None if v is None else _Approx(v) for v in values]
        columns.append(values)
    return sorted(zip(*columns, strict=True), key=lambda r: repr([_exact(v) for v in r]))


class _Approx(float):
    """A float that equals another within 1e-9 relative (summation order differs)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, float) and math.isclose(self, other, rel_tol=1e-9, abs_tol=1e-9)

    __hash__ = float.__hash__


def _exact(v: object) -> object:
    return None if isinstance(v, _Approx) else v


def reference(events: pa.Table, windows_sql: str) -> pa.Table:
    """Run ``windows_sql`` (which must yield ws, we and the event columns) and aggregate."""
    con = duckdb.connect()
    con.register("ev", events)
    sql = f"""
        WITH src AS (SELECT epoch_ms(ts) AS t, k, x, y, f, wm FROM ev),
        win AS ({windows_sql})
        SELECT ws AS window_start, we AS window_end, we - 1 AS window_time, k, {AGG_SQL}
        FROM win WHERE wm IS NULL OR we - 1 > wm
        GROUP BY ALL
    """
    return con.sql(sql).to_arrow_table()
