"""Deduplication, ``ROW_NUMBER() OVER (PARTITION BY k ORDER BY rowtime ASC|DESC) = 1``.

Flink's rowtime deduplication keeps, per key, the row with the first (``ASC``) or the last
(``DESC``) event time; ties keep the earlier arrival for ``ASC`` and the later for
``DESC``. It emits as rows arrive: ``+I`` for a key's first row, and ``-U`` (the row kept
before) ``+U`` (the new one) when a row replaces it, so its result is updating (Flink's
planner says the same: only processing-time keep-first deduplication is insert-only).

Per micro-batch: one stable sort and ``unique`` pick each key's best row of the batch, one
join with the kept rows decides replacements. State: the kept row per key (all columns).

>>> import datetime as dt
>>> op = Deduplicate(["k"], "ts", keep_last=False)
>>> t = pa.table({"k": ["a", "a", "b"], "ts": pa.array([5, 3, 9], pa.timestamp("ms"))})
>>> op.process(t, None)
0
>>> [(r["k"], r["_op"]) for r in op.advance(0).to_pylist()]
[('a', 0), ('b', 0)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import polars as pl
import pyarrow as pa

from fluvial.errors import PipelineError
from fluvial.stream.ops.assign import epoch_ms
from fluvial.stream.ops.frames import dump_frame, load_frame
from fluvial.stream.ops.keyed import INSERT, UPDATE_AFTER, UPDATE_BEFORE, changelog

__all__ = ["Deduplicate"]


class Deduplicate:
    """Keep the first or last row per key by event time; the output is a changelog."""

    eager = True

    def __init__(self, keys: Sequence[str], time_col: str, *, keep_last: bool) -> None:
        self.keys = tuple(keys)
        self.time_col = time_col
        self.keep_last = keep_last
        self.late_rows = 0
        self.dropped_ids = None
        self._schema: pa.Schema | None = None
        self._state: pl.DataFrame | None = None  # kept rows, plus __t (epoch ms)
        self._out: list[tuple[pl.DataFrame, int]] = []

    def process(self, table: pa.Table, watermark_ms: int | None) -> int:
        if table.num_rows == 0:
            return 0
        if self._schema is None:
            self._schema = table.schema
        elif not table.schema.equals(self._schema):
            raise PipelineError(
                f"deduplication input changed type: expected {self._schema}, found {table.schema}"
            )
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        frame = frame.with_columns(pl.Series("__t", epoch_ms(table, self.time_col)))
        keep: Literal["first", "last"] = "last" if self.keep_last else "first"
        best = frame.sort("__t", maintain_order=True).unique(
            subset=list(self.keys), keep=keep, maintain_order=True
        )
        keys = list(self.keys)
        if self._state is None or not self._state.height:
            self._state = best
            self._out.append((best, INSERT))
            return 0
        old = self._state.join(best.select(keys), on=keys, how="semi", nulls_equal=True)
        fresh = best.join(old.select(keys), on=keys, how="anti", nulls_equal=True)
        pairs = old.join(best, on=keys, suffix="__new", nulls_equal=True)
        if self.keep_last:
            wins = pl.col("__t__new") >= pl.col("__t")
        else:
            wins = pl.col("__t__new") < pl.col("__t")
        replaced = pairs.filter(wins).select(keys)
        before = old.join(replaced, on=keys, how="semi", nulls_equal=True)
        after = best.join(replaced, on=keys, how="semi", nulls_equal=True)
        rest = self._state.join(after.select(keys), on=keys, how="anti", nulls_equal=True)
        self._state = pl.concat([rest, after, fresh], how="vertical_relaxed")
        self._out += [(before, UPDATE_BEFORE), (after, UPDATE_AFTER), (fresh, INSERT)]
        return 0

    def advance(self, watermark_ms: int) -> pa.Table:
        """The changes of the batches processed since the last call."""
        out, self._out = self._out, []
        schema = self._schema or pa.schema([])
        parts = [
            (frame.drop("__t").to_arrow().cast(schema), op) for frame, op in out if frame.height
        ]
        return changelog(parts or [(schema.empty_table(), INSERT)])

    def flush(self) -> pa.Table:
        return self.advance(0)

    @property
    def state_bytes(self) -> int:
        return int(self._state.estimated_size()) if self._state is not None else 0

    def snapshot(self) -> bytes:
        if self._out:
            raise PipelineError("Deduplicate.snapshot() with un-emitted changes: advance first")
        return dump_frame(self._state, self._schema)

    def restore(self, data: bytes) -> None:
        self._state, schema = load_frame(data)
        self._schema = schema or self._schema
        self._out = []
