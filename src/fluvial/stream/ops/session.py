"""SESSION window aggregation: per key, rows closer than the gap share one window.

Semantics, checked against Flink's table runtime (``TimeWindow``, ``SessionWindowAssigner``,
``MergingWindowProcessFunction``):

* A row at ``t`` opens the window ``[t, t + gap)``; windows merge when they *intersect*,
  and ``TimeWindow.intersects`` is inclusive (``start <= other.end && end >= other.start``),
  so two rows exactly ``gap`` apart are in the same session. A session is
  ``[first, last + gap)``; it fires when ``watermark >= end - 1``.
* Lateness (``MergingWindowProcessFunction.assignActualWindows`` + ``isWindowLate``): the
  row's window is first merged with the key's *open* sessions; it is dropped only if the
  merged window is already late (``end - 1 <= watermark``). So a late row that touches an
  open session joins it, and one that touches only fired sessions (whose state is gone)
  starts a new session if ``t + gap - 1 > watermark``, else is dropped and counted.
* Within a micro-batch Flink's result would depend on row order; we merge all of the
  batch's rows with the open sessions at once, which equals Flink processing the batch's
  on-time rows before its late ones.

Vectorized: the batch's rows and the open sessions of the keys it touches are intervals;
sorted by (keys, start), a new session begins where ``start`` exceeds the running maximum
of the previous ends of the same key (gaps and islands); two ``group_by`` passes merge the
rows' partials and the sessions' partials per island.

>>> op = SessionAggregate(WindowSpec.session(10, ("k",)), "ts", ["k"], [AggSpec("n", "count_star")])
>>> ts = pa.array([0, 5, 15, 40], pa.timestamp("ms"))
>>> op.process(pa.table({"ts": ts, "k": ["a"] * 4}), None)
0
>>> [(r["window_end"].microsecond // 1000, r["n"]) for r in op.flush().to_pylist()]
[(25, 3), (50, 1)]
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import pyarrow as pa

from fluvial.errors import PipelineError
from fluvial.stream.ops.keyed import KeyedWindowOperator
from fluvial.stream.ops.spec import AggSpec, WindowSpec

__all__ = ["SessionAggregate"]


class SessionAggregate(KeyedWindowOperator):
    """Windowed GROUP BY over SESSION windows; ``keys`` include ``spec.partition_by``."""

    def __init__(
        self,
        spec: WindowSpec,
        time_col: str,
        keys: Sequence[str],
        aggs: Sequence[AggSpec],
        schema: pa.Schema | None = None,
    ) -> None:
        if spec.kind != "session":
            raise ValueError(f"SessionAggregate needs a SESSION spec; found {spec.kind}")
        missing = [k for k in spec.partition_by if k not in keys]
        if missing:
            raise PipelineError(
                f"SESSION PARTITION BY columns {missing} must be GROUP BY keys; "
                f"found keys {list(keys)}"
            )
        super().__init__(spec, time_col, keys, aggs, schema)
        self._state: pl.DataFrame | None = None  # one row per session: __ws, __we, keys, …

    def process(self, table: pa.Table, watermark_ms: int | None) -> int:
        """Merge a batch into the sessions; return how many rows were dropped as late."""
        self.dropped_ids = None
        if table.num_rows == 0:
            return 0
        frame, partials = self._frame(table)
        keys = list(self.keys)
        gap = self.spec.gap_ms
        watermark = self._effective_watermark(watermark_ms)
        frame = frame.with_row_index("__i")
        state = self._state
        touched = untouched = None
        if state is not None and state.height:
            # Only the open sessions of keys in this batch take part; fired-but-not-yet-
            # emitted ones (end - 1 <= watermark) are closed to new rows, as in Flink.
            open_ = pl.lit(True) if watermark is None else pl.col("__we") - 1 > watermark
            batch_keys = frame.select(keys).unique() if keys else None
            if batch_keys is None:
                mask = state.select(open_.alias("m"))["m"]
            else:
                hit = state.join(
                    batch_keys.with_columns(pl.lit(True).alias("__hit")),
                    on=keys,
                    how="left",
                    nulls_equal=True,
                    maintain_order="left",
                )
                mask = hit.select((pl.col("__hit").fill_null(False) & open_).alias("m"))["m"]
            touched, untouched = state.filter(mask), state.filter(~mask)
        touched = touched.with_row_index("__i") if touched is not None else None
        intervals = [
            frame.select(
                *keys,
                pl.col("__t").alias("__s"),
                (pl.col("__t") + gap).alias("__e"),
                pl.lit(1, pl.Int8).alias("__src"),
                pl.col("__i"),
            ),
        ]
        if touched is not None and touched.height:
            intervals.append(
                touched.select(
                    *keys,
                    pl.col("__ws").alias("__s"),
                    pl.col("__we").alias("__e"),
                    pl.lit(0, pl.Int8).alias("__src"),
                    pl.col("__i"),
                )
            )
        islands = _islands(pl.concat(intervals, how="vertical_relaxed"), keys)
        bounds = islands.group_by("__island").agg(
            pl.col("__s").min().alias("__ws"), pl.col("__e").max().alias("__we")
        )
        rows = islands.filter(pl.col("__src") == 1).sort("__i")["__island"]
        frame = frame.with_columns(rows.alias("__island"))
        dropped = 0
        if watermark is not None:
            late = bounds.filter(pl.col("__we") - 1 <= watermark)["__island"]
            if late.len():
                is_late = frame["__island"].is_in(late.implode())
                dropped = int(is_late.sum())
                self._note_dropped(table, ~is_late.to_numpy())
                frame = frame.filter(~is_late)
                self.late_rows += dropped
        parts = [frame.group_by(["__island", *keys]).agg(partials.batch)]
        if touched is not None and touched.height:
            ids = islands.filter(pl.col("__src") == 0).sort("__i")["__island"]
            parts.append(touched.with_columns(ids.alias("__island")).select(parts[0].columns))
        merged = pl.concat(parts, how="vertical_relaxed").group_by(["__island", *keys])
        sessions = merged.agg(partials.merge).join(bounds, on="__island").drop("__island")
        sessions = sessions.select("__ws", "__we", *keys, *partials.columns)
        if untouched is not None and untouched.height:
            sessions = pl.concat([untouched, sessions], how="vertical_relaxed")
        self._state = sessions
        return dropped

    def advance(self, watermark_ms: int) -> pa.Table:
        """Emit and forget every session with ``window_end - 1 <= watermark_ms``."""
        watermark = int(watermark_ms)
        self._fired = watermark if self._fired is None else max(self._fired, watermark)
        if self._state is None or self._state.height == 0:
            return self._output(pl.DataFrame())
        due = self._state["__we"] - 1 <= watermark
        out = self._state.filter(due)
        self._state = self._state.filter(~due)
        return self._output(out)

    def flush(self) -> pa.Table:
        """End of bounded input: emit every session left."""
        out = self._state if self._state is not None else pl.DataFrame()
        self._state = None
        return self._output(out)

    @property
    def state_rows(self) -> int:
        """Open sessions held."""
        return self._state.height if self._state is not None else 0

    @property
    def state_bytes(self) -> int:
        """Estimated memory of the open sessions."""
        return int(self._state.estimated_size()) if self._state is not None else 0

    def snapshot(self) -> bytes:
        """The open sessions as Arrow IPC, for checkpoints."""
        state = self._state if self._state is not None else pl.DataFrame({"__we": []})
        return self._dump(state)

    def restore(self, data: bytes) -> None:
        """Replace the open sessions with a snapshot's."""
        state = self._load(data)
        self._state = state if state.height else None


def _islands(intervals: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Number the merged sessions: ``__island`` per interval (gaps and islands).

    Sorted by (keys, start), an interval starts a new session when it starts after every
    earlier interval of its key has ended (inclusive, as ``TimeWindow.intersects``).

    The running maximum of the previous ends *per key* is computed without a per-key
    window (``.over(keys)``, a hash partition: most of this operator's time): number the
    key runs of the sorted frame ``g = 1, 2, …`` and shift each run's times by
    ``g * span`` (``span`` > every end minus the smallest start), so one global running
    maximum never carries an end across keys — a run's shifted times all exceed every
    earlier run's. Falls back to the per-key window when that could overflow int64.
    """
    intervals = intervals.sort([*keys, "__s"], nulls_last=True)
    lo, hi = intervals["__s"].min(), intervals["__e"].max()
    fast = (
        keys
        and intervals["__s"].null_count() == 0
        and intervals["__e"].null_count() == 0
        and isinstance(lo, int)
        and isinstance(hi, int)
        and (intervals.height + 2) * (hi - lo + 1) < 2**62
    )
    if not fast:
        previous_end = pl.col("__e").cum_max().shift(1)
        if keys:
            previous_end = previous_end.over(keys)
        start = pl.col("__s")
    else:
        assert isinstance(lo, int) and isinstance(hi, int)
        run = pl.lit(False)
        for k in keys:
            run = run | pl.col(k).ne_missing(pl.col(k).shift(1))
        shift = run.cum_sum().cast(pl.Int64) * (hi - lo + 1) - lo
        previous_end = (pl.col("__e") + shift).cum_max().shift(1)
        start = pl.col("__s") + shift
    return intervals.with_columns(
        (previous_end.is_null() | (start > previous_end)).cum_sum().cast(pl.Int64).alias("__island")
    )
