"""Top-N without a window: ``ROW_NUMBER() OVER (PARTITION BY k ORDER BY …) <= N`` (updating).

Flink's AppendOnlyTopNFunction, per micro-batch: the batch's rows and the kept top rows of
the partitions it touches are ranked together with one stable Polars sort (kept rows before
new ones, new ones in arrival order, so ties keep the earlier row first, as Flink does),
the first N per partition are the new top, and the difference with the old top, keyed by
(partition, rank), is the changelog: ``+I`` for a rank filled for the first time, ``-U``
and ``+U`` for a rank whose row changed. State: the top N rows of every partition.

>>> op = TopN(["k"], [("v", True, False)], 2, "rn")
>>> _ = op.process(pa.table({"k": ["a", "a"], "v": [1, 5]}), None)
>>> [(r["v"], r["rn"], r["_op"]) for r in op.advance(0).to_pylist()]
[(5, 1, 0), (1, 2, 0)]
>>> _ = op.process(pa.table({"k": ["a"], "v": [3]}), None)
>>> [(r["v"], r["rn"], r["_op"]) for r in op.advance(0).to_pylist()]
[(1, 2, 1), (3, 2, 2)]
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import pyarrow as pa

from fluvial.errors import PipelineError
from fluvial.stream.ops.frames import dump_frame, load_frame
from fluvial.stream.ops.keyed import INSERT, UPDATE_AFTER, UPDATE_BEFORE, changelog

__all__ = ["TopN"]


class TopN:
    """The first *n* rows per partition by an ORDER BY; the output is a changelog."""

    eager = True

    def __init__(
        self,
        keys: Sequence[str],
        order: Sequence[tuple[str, bool, bool]],
        n: int,
        rank_col: str,
    ) -> None:
        if n < 1:
            raise PipelineError(f"Top-N needs N >= 1, found {n}")
        self.keys = list(keys)
        self.order = list(order)  # (column, descending, nulls first)
        self.n = n
        self.rank_col = rank_col
        self.late_rows = 0
        self.dropped_ids = None
        self._schema: pa.Schema | None = None
        self._state: pl.DataFrame | None = None  # the top rows, with the rank column
        self._pending: list[pl.DataFrame] = []

    def process(self, table: pa.Table, watermark_ms: int | None) -> int:
        if table.num_rows == 0:
            return 0
        if self._schema is None:
            self._schema = table.schema
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        self._pending.append(frame)
        return 0

    def _rank(self, rows: pl.DataFrame) -> pl.DataFrame:
        cols = [c for c, _, _ in self.order]
        ranked = rows.with_row_index("__arrival").sort(
            [*self.keys, *cols, "__arrival"],
            descending=[False] * len(self.keys) + [d for _, d, _ in self.order] + [False],
            nulls_last=[True] * len(self.keys) + [not f for _, _, f in self.order] + [True],
            maintain_order=True,
        )
        rank = pl.int_range(1, pl.len() + 1, dtype=pl.Int64)
        rank = rank.over(self.keys) if self.keys else rank
        ranked = ranked.with_columns(rank.alias(self.rank_col)).drop("__arrival")
        return ranked.filter(pl.col(self.rank_col) <= self.n)

    def advance(self, watermark_ms: int) -> pa.Table:
        schema = self._output_schema()
        if not self._pending:
            return changelog([(schema.empty_table(), INSERT)])
        new = pl.concat(self._pending, how="vertical_relaxed")
        self._pending = []
        on = [*self.keys, self.rank_col]
        if self._state is not None and self._state.height:
            if self.keys:
                touched = new.select(self.keys).unique()
                old = self._state.join(touched, on=self.keys, how="semi", nulls_equal=True)
                rest = self._state.join(touched, on=self.keys, how="anti", nulls_equal=True)
            else:
                old, rest = self._state, None
            candidates = pl.concat([old.drop(self.rank_col), new], how="vertical_relaxed")
        else:
            old, rest, candidates = None, None, new
        top = self._rank(candidates)
        self._state = top if rest is None else pl.concat([rest, top], how="vertical_relaxed")
        if old is None or not old.height:
            return self._finish([(top, INSERT)], schema)
        values = [c for c in top.columns if c not in on]
        both = old.join(top, on=on, how="inner", suffix="__new", nulls_equal=True)
        same = pl.lit(True)
        for c in values:
            same = same & pl.col(c).eq_missing(pl.col(f"{c}__new"))
        changed = both.filter(~same).select(on)
        fresh = top.join(old.select(on), on=on, how="anti", nulls_equal=True)
        before = old.join(changed, on=on, how="semi", nulls_equal=True)
        after = top.join(changed, on=on, how="semi", nulls_equal=True)
        return self._finish(
            [(before, UPDATE_BEFORE), (after, UPDATE_AFTER), (fresh, INSERT)], schema
        )

    def _finish(self, parts: list[tuple[pl.DataFrame, int]], schema: pa.Schema) -> pa.Table:
        tables = []
        for frame, op in parts:
            if frame.height:
                arrow = frame.select(schema.names).to_arrow()
                tables.append((arrow.cast(schema), op))
        return changelog(tables or [(schema.empty_table(), INSERT)])

    def _output_schema(self) -> pa.Schema:
        fields = list(self._schema) if self._schema is not None else []
        return pa.schema([*fields, pa.field(self.rank_col, pa.int64())])

    def flush(self) -> pa.Table:
        return self.advance(0)

    @property
    def state_bytes(self) -> int:
        return int(self._state.estimated_size()) if self._state is not None else 0

    def snapshot(self) -> bytes:
        if self._pending:
            raise PipelineError("TopN.snapshot() with un-emitted rows: advance first")
        return dump_frame(self._state, self._schema)

    def restore(self, data: bytes) -> None:
        self._state, schema = load_frame(data)
        self._schema = schema or self._schema
        self._pending = []
