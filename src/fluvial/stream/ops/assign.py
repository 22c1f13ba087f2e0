"""Window assignment: which TUMBLE / HOP / CUMULATE windows each row belongs to (vectorized).

``assign_windows`` is the window table-valued function: it returns one output row per
(input row, window), adding ``window_start``, ``window_end`` (TIMESTAMP(3)) and
``window_time`` (``window_end - 1 ms``, of the time column's type). The arithmetic is
Flink's (``TimeWindow.getWindowStartWithOffset``): starts are aligned to ``offset`` modulo
the slide, negative times included (floor division).

>>> import datetime as dt
>>> t = pa.table({"ts": pa.array([dt.datetime(2024, 1, 1, 0, 0, 7)], pa.timestamp("ms"))})
>>> out = assign_windows(t, "ts", WindowSpec.hop(size_ms=10_000, slide_ms=5_000))
>>> [(r["window_start"].second, r["window_end"].second) for r in out.to_pylist()]
[(0, 10), (5, 15)]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fluvial.errors import PipelineError
from fluvial.stream.ops.spec import WindowSpec

__all__ = [
    "assign_windows",
    "epoch_ms",
    "explode",
    "first_window_end",
    "last_window_end",
    "slice_size",
    "validate_spec",
]

I64 = npt.NDArray[np.int64]
WINDOW_COLUMNS = ("window_start", "window_end", "window_time")


def validate_spec(spec: WindowSpec) -> None:
    """Raise :class:`PipelineError` unless ``spec`` describes valid windows."""
    if spec.kind == "session":
        if spec.gap_ms <= 0:
            raise PipelineError(f"SESSION gap must be positive; found {spec.gap_ms} ms")
        return
    if spec.size_ms <= 0:
        raise PipelineError(f"{spec.kind.upper()} size must be positive; found {spec.size_ms} ms")
    if spec.kind == "hop" and spec.slide_ms <= 0:
        raise PipelineError(f"HOP slide must be positive; found {spec.slide_ms} ms")
    if spec.kind == "cumulate" and (spec.step_ms <= 0 or spec.size_ms % spec.step_ms):
        raise PipelineError(
            "CUMULATE max size must be a positive multiple of its step; "
            f"found size {spec.size_ms} ms, step {spec.step_ms} ms"
        )


def slice_size(spec: WindowSpec) -> int:
    """The width of the panes every window of ``spec`` is a union of (Flink's slices)."""
    if spec.kind == "hop":
        return int(np.gcd(spec.size_ms, spec.slide_ms))
    if spec.kind == "cumulate":
        return spec.step_ms
    return spec.size_ms


def _period(spec: WindowSpec) -> int:
    """The distance between consecutive window starts."""
    return spec.slide_ms if spec.kind == "hop" else spec.size_ms


def _floor_to(t: I64, period: int, offset: int) -> I64:
    return np.floor_divide(t - offset, period) * period + offset


def last_window_end(spec: WindowSpec, t: I64) -> I64:
    """The end of the last window containing each time: once it fired, the row is late."""
    return _floor_to(t, _period(spec), spec.offset_ms) + spec.size_ms


def first_window_end(spec: WindowSpec, t: I64) -> I64:
    """The end of the first window containing each time: once it fired, a row there updates
    a result already emitted (allowed lateness)."""
    if spec.kind == "hop":
        last_start = _floor_to(t, spec.slide_ms, spec.offset_ms)
        counts = (last_start - t + spec.size_ms - 1) // spec.slide_ms + 1
        return last_start - (counts - 1) * spec.slide_ms + spec.size_ms
    if spec.kind == "cumulate":
        ws = _floor_to(t, spec.size_ms, spec.offset_ms)
        return ws + ((t - ws) // spec.step_ms + 1) * spec.step_ms
    return last_window_end(spec, t)


def epoch_ms(table: pa.Table, time_col: str) -> I64:
    """The time column as epoch milliseconds; a NULL rowtime is an error, as in Flink."""
    if time_col not in table.column_names:
        raise PipelineError(
            f"time column {time_col!r} is missing; found columns {table.column_names}"
        )
    column = table.column(time_col)
    if not pa.types.is_timestamp(column.type):
        raise PipelineError(
            f"time column {time_col!r} must be a TIMESTAMP(3) or TIMESTAMP_LTZ(3); "
            f"found type {column.type}"
        )
    if column.null_count:
        raise PipelineError(
            f"time column {time_col!r} has {column.null_count} NULL values; a rowtime "
            "attribute must not be NULL"
        )
    unit = column.type.unit
    values = column.cast(pa.timestamp(unit)).cast(pa.int64()).to_numpy()
    if unit != "ms":
        per_ms = {"s": 1, "us": 1_000, "ns": 1_000_000}[unit]
        values = values * per_ms if unit == "s" else np.floor_divide(values, per_ms)
    return np.asarray(values, dtype=np.int64)


def explode(spec: WindowSpec, t: I64) -> tuple[I64, I64, I64]:
    """``(row index, window start, window end)`` for every (row, window) pair."""
    validate_spec(spec)
    if spec.kind == "session":
        raise PipelineError("SESSION windows depend on other rows; use SessionAggregate")
    if spec.kind == "tumble":
        start = _floor_to(t, spec.size_ms, spec.offset_ms)
        return np.arange(len(t), dtype=np.int64), start, start + spec.size_ms
    if spec.kind == "hop":
        last_start = _floor_to(t, spec.slide_ms, spec.offset_ms)
        # starts s ≡ offset (mod slide) with t - size < s <= t
        counts = (last_start - t + spec.size_ms - 1) // spec.slide_ms + 1
        rows, j = _repeat(counts)
        start = last_start[rows] - (counts[rows] - 1 - j) * spec.slide_ms
        return rows, start, start + spec.size_ms
    # cumulate: [ws, ws + k·step) for every k whose end is past t
    ws = _floor_to(t, spec.size_ms, spec.offset_ms)
    first_k = (t - ws) // spec.step_ms + 1
    counts = spec.size_ms // spec.step_ms - first_k + 1
    rows, j = _repeat(counts)
    start = ws[rows]
    return rows, start, start + (first_k[rows] + j) * spec.step_ms


def _repeat(counts: I64) -> tuple[I64, I64]:
    """Row indexes repeated ``counts`` times, and each copy's rank within its row."""
    rows = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    firsts = np.cumsum(counts) - counts
    return rows, np.arange(len(rows), dtype=np.int64) - firsts[rows]


def window_columns(
    start: I64, end: I64, time_type: pa.DataType
) -> tuple[pa.Array, pa.Array, pa.Array]:
    """``window_start``, ``window_end`` (TIMESTAMP(3)) and ``window_time`` arrays."""
    ts = pa.timestamp("ms")
    return (
        pa.array(start, pa.int64()).cast(ts),
        pa.array(end, pa.int64()).cast(ts),
        pa.array(end - 1, pa.int64()).cast(pa.timestamp("ms", tz=getattr(time_type, "tz", None))),
    )


def assign_windows(table: pa.Table, time_col: str, spec: WindowSpec) -> pa.Table:
    """Add ``window_start``, ``window_end``, ``window_time``; one row per (row, window)."""
    t = epoch_ms(table, time_col)
    rows, start, end = explode(spec, t)
    out = table.take(pa.array(rows)) if len(rows) != table.num_rows else table
    for name in WINDOW_COLUMNS:
        if name in out.column_names:
            out = out.drop_columns([name])
    time_type = table.schema.field(time_col).type
    for name, array in zip(WINDOW_COLUMNS, window_columns(start, end, time_type), strict=True):
        out = out.append_column(pa.field(name, array.type), array)
    return out
