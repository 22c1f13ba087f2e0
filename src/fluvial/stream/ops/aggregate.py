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
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from fluvial.stream.ops.assign import explode, first_window_end, last_window_end, slice_size
from fluvial.stream.ops.keyed import (
    INSERT,
    UPDATE_AFTER,
    UPDATE_BEFORE,
    KeyedWindowOperator,
    changelog,
)
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
        allowed_lateness_ms: int = 0,
    ) -> None:
        if spec.kind == "session":
            raise ValueError("SESSION windows need SessionAggregate, not WindowAggregate")
        super().__init__(spec, time_col, keys, aggs, schema, allowed_lateness_ms)
        self._slice = slice_size(spec)
        self._compacted: pl.DataFrame | None = None  # one row per (slice, keys)
        self._chunks: list[pl.DataFrame] = []  # batch partials appended since compaction
        # allowed lateness: the ends of fired windows that late rows changed, and the
        # merged partials of every fired window still within the lateness
        self._dirty: list[pl.DataFrame] = []  # (__we, keys) of changed fired windows
        self._emitted: pl.DataFrame | None = None
        # per-record watermarks: a row some of whose windows fired before it arrived (mid
        # batch) counts only in windows ending at or after ``__me`` (its slice keeps it apart)
        self._per_row = False

    # -- input --------------------------------------------------------------------------------

    def process(self, table: pa.Table, watermark_ms: int | None) -> int:
        """Accumulate a batch; return how many rows were dropped as late."""
        self.dropped_ids = None
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
        watermark = self._row_watermarks(table, watermark_ms)
        if watermark is not None:
            on_time = last_window_end(spec, t) - 1 + self.allowed_lateness_ms > watermark
            dropped = int(len(t) - np.count_nonzero(on_time))
            if dropped:
                frame = frame.filter(pl.Series(on_time))
                self.late_rows += dropped
                t = t[on_time]
                self._note_dropped(table, on_time)
        if self.allowed_lateness_ms and self._fired is not None and frame.height:
            self._mark_updates(frame, t, watermark, on_time if dropped else None)
        if isinstance(watermark, np.ndarray) and not self.allowed_lateness_ms:
            self._per_row = True
            rows_wm = watermark[on_time] if dropped else watermark
            frame = frame.with_columns(pl.Series("__me", self._min_ends(t, rows_wm)))
        if frame.height:
            chunk = frame.group_by(self._slice_keys).agg(partials.batch)
            self._chunks.append(chunk)
            self._maybe_compact()
        return dropped

    def _mark_updates(
        self,
        frame: pl.DataFrame,
        t: npt.NDArray[np.int64],
        watermark: Any,
        kept: npt.NDArray[np.bool_] | None,
    ) -> None:
        """Note the fired windows, still within the lateness, that rows at *t* change."""
        assert self._fired is not None
        again = first_window_end(self.spec, t) - 1 <= self._fired
        if not again.any():
            return
        rows, _, ends = explode(self.spec, t[again])
        if isinstance(watermark, np.ndarray):  # per-row watermarks
            watermark = (watermark if kept is None else watermark[kept])[again][rows]
        elif watermark is None:
            watermark = _NO_WATERMARK
        live = (ends - 1 <= self._fired) & (ends - 1 + self.allowed_lateness_ms > watermark)
        if live.any():
            rows, ends = np.flatnonzero(again)[rows[live]], ends[live]
            keys = frame.select(self.keys)[rows] if self.keys else pl.DataFrame()
            self._dirty.append(keys.with_columns(pl.Series("__we", ends, dtype=pl.Int64)))

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
            merged = merged.group_by(self._slice_keys).agg(self._partials.merge)
        self._compacted, self._chunks = merged, []
        return merged

    def _empty_state(self) -> pl.DataFrame:
        return pl.DataFrame({"__we": pl.Series([], dtype=pl.Int64)})

    @property
    def _slice_keys(self) -> list[str]:
        return ["__we", "__me", *self.keys] if self._per_row else ["__we", *self.keys]

    def _min_ends(
        self, t: npt.NDArray[np.int64], watermark: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        """Per row, the least end of a window it may count in: windows that ended at or
        before its own watermark fired before it arrived (0: every window)."""
        first = first_window_end(self.spec, t)
        fired = _NO_WATERMARK if self._fired is None else self._fired
        behind = (first - 1 <= watermark) & (watermark > fired)
        if not behind.any():
            return np.zeros(len(t), dtype=np.int64)
        stride = self.spec.slide_ms if self.spec.kind == "hop" else self.spec.step_ms
        if self.spec.kind == "tumble":
            stride = self.spec.size_ms
        skip = np.floor_divide(np.maximum(watermark + 1 - first, 0), stride) + 1
        return np.where(behind, first + skip * stride, 0)

    # -- output -------------------------------------------------------------------------------

    def advance(self, watermark_ms: int) -> pa.Table:
        """Emit and forget every window with ``window_end - 1 <= watermark_ms``."""
        return self._fire(int(watermark_ms))

    def flush(self) -> pa.Table:
        """End of bounded input: emit every window left (the watermark is +∞)."""
        return self._fire(None)

    def _fire(self, watermark: int | None) -> pa.Table:
        state = self._compact()
        previous = self._fired
        if self._partials is None or state.height == 0:
            if watermark is not None:
                self._fired = max(watermark, self._fired or _NO_WATERMARK)
            return self._changes(pl.DataFrame(), None)
        slice_end = state["__we"].to_numpy()
        if watermark is None:
            due = np.ones(len(slice_end), dtype=bool)
        else:
            due = slice_end - 1 <= watermark
        windows = self._windows(state.filter(pl.Series(due)), watermark)
        updates = self._refire(state, previous) if self._dirty else None
        out = self._changes(windows, updates)
        if watermark is None:
            self._compacted = self._emitted = None
        else:
            lateness = self.allowed_lateness_ms
            keep = last_window_end(self.spec, slice_end - 1) - 1 + lateness > watermark
            self._compacted = state.filter(pl.Series(keep))
            self._fired = max(watermark, self._fired or _NO_WATERMARK)
            if lateness:
                self._remember(windows, updates, watermark)
        return out

    def _refire(self, state: pl.DataFrame, fired: int | None) -> pl.DataFrame | None:
        """The fired windows that late rows changed, recomputed from all their slices."""
        assert self._partials is not None
        dirty = pl.concat(self._dirty, how="vertical_relaxed").unique()
        self._dirty = []
        if fired is None or not dirty.height:
            return None
        targets = dirty["__we"].unique().to_numpy()
        rows, starts, ends = explode(self.spec, state["__we"].to_numpy() - 1)
        hit = np.isin(ends, targets)
        rows, starts, ends = rows[hit], starts[hit], ends[hit]
        exploded = state.drop("__we")[rows].with_columns(
            pl.Series("__ws", starts, dtype=pl.Int64), pl.Series("__we", ends, dtype=pl.Int64)
        )
        merged = exploded.group_by(["__ws", "__we", *self.keys]).agg(self._partials.merge)
        return merged.join(dirty, on=["__we", *self.keys], how="semi", nulls_equal=True)

    def _remember(
        self, windows: pl.DataFrame, updates: pl.DataFrame | None, watermark: int
    ) -> None:
        """Keep what fired windows emitted while they may still change; forget the rest."""
        on = ["__ws", "__we", *self.keys]
        parts = [] if self._emitted is None else [self._emitted]
        if updates is not None and updates.height and parts:
            parts = [parts[0].join(updates.select(on), on=on, how="anti", nulls_equal=True)]
        parts += [f for f in (windows, updates) if f is not None and f.height]
        if not parts:
            return
        emitted = pl.concat(parts, how="vertical_relaxed")
        live = emitted["__we"] - 1 + self.allowed_lateness_ms > watermark
        self._emitted = emitted.filter(live) if emitted.height else None

    def _changes(self, windows: pl.DataFrame, updates: pl.DataFrame | None) -> pa.Table:
        """The output: appends, or with allowed lateness a changelog (``_op``)."""
        if not self.allowed_lateness_ms:
            return self._output(windows)
        parts = [(self._output(windows), INSERT)]
        if updates is not None and updates.height:
            on = ["__ws", "__we", *self.keys]
            before = pl.DataFrame()
            if self._emitted is not None:
                before = self._emitted.join(updates.select(on), on=on, nulls_equal=True)
                before = before.select(updates.columns)
            known = updates.join(before.select(on), on=on, how="semi", nulls_equal=True)
            fresh = updates.join(before.select(on), on=on, how="anti", nulls_equal=True)
            parts = [
                (self._output(before), UPDATE_BEFORE),
                (self._output(known), UPDATE_AFTER),
                (self._output(fresh), INSERT),
                *parts,
            ]
        return changelog(parts)

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
        if "__me" in slices.columns:
            firing &= window_end >= slices["__me"].to_numpy()[rows]
            slices = slices.drop("__me")
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
        """The state as Arrow IPC, for checkpoints (with allowed lateness, the emitted
        windows too: rows with a ``__ws``)."""
        state = self._compact()
        if not self.allowed_lateness_ms:
            return self._dump(state)
        parts = [state.with_columns(pl.lit(0, pl.Int8).alias("__part"))]
        if self._emitted is not None:
            parts.append(self._emitted.with_columns(pl.lit(1, pl.Int8).alias("__part")))
        parts += [d.with_columns(pl.lit(2, pl.Int8).alias("__part")) for d in self._dirty]
        return self._dump(pl.concat(parts, how="diagonal_relaxed"))

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's."""
        state = self._load(data)
        if "__part" in state.columns:  # allowed lateness: emitted windows and changes too
            part = state["__part"]
            values = [c for c in state.columns if c not in ("__part", "__ws", "__we", *self.keys)]
            emitted = state.filter(part == 1).select("__ws", "__we", *self.keys, *values)
            dirty = state.filter(part == 2).select("__we", *self.keys)
            state = state.filter(part == 0).drop("__part", "__ws")
            self._emitted = emitted if emitted.height else None
            self._dirty = [dirty] if dirty.height else []
        self._per_row = "__me" in state.columns
        self._compacted, self._chunks = (state if state.height else None), []
