"""TUMBLE / HOP / CUMULATE window aggregation over micro-batches, the way Flink slices it.

Every window of a spec is a union of *slices* (panes): the window itself for TUMBLE,
``gcd(size, slide)``-wide panes for HOP, ``step``-wide panes for CUMULATE. A batch's rows
are pre-aggregated per (slice end, keys) with one Polars ``group_by`` into partial states —
a row is stored once, not once per HOP window — and appended to the state; the state is
compacted (concatenated and re-aggregated) when the appended chunks outgrow it, so each
row costs amortized O(1). ``advance`` explodes only the slices of the windows that fire
into (window, keys) rows and merges them with a second ``group_by``.

Lateness is Flink's slicing rule (``AbstractWindowAggProcessor.processElement``): a row
is dropped only when the *last* window containing it has fired (``last_end - 1 <=
watermark``); a row whose earlier windows already fired still counts in the later ones.
A window fires when ``window_end - 1 <= watermark`` and only windows holding rows are
emitted, as in Flink.

The runtime calls ``process(batch, w)`` with the watermark *before* the batch and then
``advance(w')`` with the watermark after it, so every window up to ``w`` has fired by the
time rows are judged against ``w``.

>>> import datetime as dt
>>> op = WindowAggregate(WindowSpec.tumble(10), "ts", ["k"], [AggSpec("n", "count_star")])
>>> ts = pa.array([1, 2, 12], pa.timestamp("ms"))
>>> op.process(pa.table({"ts": ts, "k": ["a", "a", "b"]}), None)
0
>>> op.advance(9).select(["k", "n"]).to_pylist()
[{'k': 'a', 'n': 2}]
>>> op.flush().select(["k", "n"]).to_pylist()
[{'k': 'b', 'n': 1}]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from fluvial.stream.ops.assign import last_window_end, slice_size
from fluvial.stream.ops.keyed import KeyedWindowOperator
from fluvial.stream.ops.spec import AggSpec, WindowSpec

__all__ = ["WindowAggregate"]

_COMPACT_MIN_ROWS = 1 << 16
_NO_WATERMARK = np.iinfo(np.int64).min


class WindowAggregate(KeyedWindowOperator):
    """Windowed GROUP BY for TUMBLE, HOP and CUMULATE (``WindowSpec.kind``)."""

    def __init__(
        self,
        spec: WindowSpec,
        time_col: str,
        keys: Sequence[str],
        aggs: Sequence[AggSpec],
        schema: pa.Schema | None = None,
    ) -> None:
        if spec.kind == "session":
            raise ValueError("SESSION windows need SessionAggregate, not WindowAggregate")
        super().__init__(spec, time_col, keys, aggs, schema)
        self._slice = slice_size(spec)
        self._compacted: pl.DataFrame | None = None  # one row per (slice, keys)
        self._chunks: list[pl.DataFrame] = []  # batch partials appended since compaction

    # -- input --------------------------------------------------------------------------------

    def process(self, table: pa.Table, watermark_ms: int | None) -> int:
        """Accumulate a batch; return how many rows were dropped as late."""
        if table.num_rows == 0:
            return 0
        frame, partials = self._frame(table)
        spec = self.spec
        t = frame["__t"].to_numpy()
        slice_end = (
            np.floor_divide(t - spec.offset_ms, self._slice) * self._slice
            + spec.offset_ms
            + self._slice
        )
        frame = frame.with_columns(pl.Series("__we", slice_end, dtype=pl.Int64))
        dropped = 0
        watermark = self._effective_watermark(watermark_ms)
        if watermark is not None:
            on_time = last_window_end(spec, t) - 1 > watermark
            dropped = int(len(t) - np.count_nonzero(on_time))
            if dropped:
                frame = frame.filter(pl.Series(on_time))
                self.late_rows += dropped
        if frame.height:
            chunk = frame.group_by(["__we", *self.keys]).agg(partials.batch)
            self._chunks.append(chunk)
            self._maybe_compact()
        return dropped

    def _maybe_compact(self) -> None:
        pending = sum(c.height for c in self._chunks)
        base = self._compacted.height if self._compacted is not None else 0
        if pending > max(base, _COMPACT_MIN_ROWS):
            self._compact()

    def _compact(self) -> pl.DataFrame:
        parts = ([self._compacted] if self._compacted is not None else []) + self._chunks
        if not parts:
            return self._empty_state()
        assert self._partials is not None
        merged = parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical_relaxed")
        if len(parts) > 1:
            merged = merged.group_by(["__we", *self.keys]).agg(self._partials.merge)
        self._compacted, self._chunks = merged, []
        return merged

    def _empty_state(self) -> pl.DataFrame:
        return pl.DataFrame({"__we": pl.Series([], dtype=pl.Int64)})

    # -- output -------------------------------------------------------------------------------

    def advance(self, watermark_ms: int) -> pa.Table:
        """Emit and forget every window with ``window_end - 1 <= watermark_ms``."""
        return self._fire(int(watermark_ms))

    def flush(self) -> pa.Table:
        """End of bounded input: emit every window left (the watermark is +∞)."""
        return self._fire(None)

    def _fire(self, watermark: int | None) -> pa.Table:
        state = self._compact()
        if self._partials is None or state.height == 0:
            if watermark is not None:
                self._fired = max(watermark, self._fired or _NO_WATERMARK)
            return self._output(pl.DataFrame())
        slice_end = state["__we"].to_numpy()
        if watermark is None:
            due = np.ones(len(slice_end), dtype=bool)
        else:
            due = slice_end - 1 <= watermark
        due_rows = state.filter(pl.Series(due))
        windows = self._windows(due_rows, watermark)
        if watermark is None:
            self._compacted = None
        else:
            keep = last_window_end(self.spec, slice_end - 1) - 1 > watermark
            self._compacted = state.filter(pl.Series(keep))
            self._fired = max(watermark, self._fired or _NO_WATERMARK)
        return self._output(windows)

    def _windows(self, slices: pl.DataFrame, watermark: int | None) -> pl.DataFrame:
        """Merge slice partials into the windows that fire now: ``__ws, __we, keys, partials``."""
        assert self._partials is not None
        spec = self.spec
        slice_end = slices["__we"].to_numpy()
        last_end = last_window_end(spec, slice_end - 1)
        if spec.kind == "tumble":
            counts = np.ones(len(slice_end), dtype=np.int64)
            first_end, stride = slice_end, spec.size_ms
        elif spec.kind == "hop":
            stride = spec.slide_ms
            first_end = last_end - ((last_end - slice_end) // stride) * stride
            counts = (last_end - first_end) // stride + 1
        else:  # cumulate: every step end from the slice's own end to the window's max end
            first_end, stride = slice_end, spec.step_ms
            counts = (last_end - first_end) // stride + 1
        rows = np.repeat(np.arange(len(slice_end), dtype=np.int64), counts)
        rank = np.arange(len(rows), dtype=np.int64) - (np.cumsum(counts) - counts)[rows]
        window_end = first_end[rows] + rank * stride
        lower = _NO_WATERMARK if self._fired is None else self._fired
        upper = np.iinfo(np.int64).max if watermark is None else watermark
        firing = (window_end - 1 > lower) & (window_end - 1 <= upper)
        rows, window_end = rows[firing], window_end[firing]
        if spec.kind == "cumulate":
            window_start = last_end[rows] - spec.size_ms
        else:
            window_start = window_end - spec.size_ms
        exploded = slices.drop("__we")[rows].with_columns(
            pl.Series("__ws", window_start, dtype=pl.Int64),
            pl.Series("__we", window_end, dtype=pl.Int64),
        )
        return exploded.group_by(["__ws", "__we", *self.keys]).agg(self._partials.merge)

    # -- state --------------------------------------------------------------------------------

    @property
    def state_rows(self) -> int:
        """Partial-state rows held (one per slice and key, before compaction more)."""
        parts = ([self._compacted] if self._compacted is not None else []) + self._chunks
        return sum(p.height for p in parts)

    @property
    def state_bytes(self) -> int:
        """Estimated memory of the state."""
        parts = ([self._compacted] if self._compacted is not None else []) + self._chunks
        return int(sum(p.estimated_size() for p in parts))

    def snapshot(self) -> bytes:
        """The state as Arrow IPC, for checkpoints."""
        return self._dump(self._compact())

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's."""
        state = self._load(data)
        self._compacted, self._chunks = (state if state.height else None), []
