"""Unbounded ``GROUP BY`` (no window): an updating result, as Flink's GroupAggregate.

State is one row per group key with the aggregates' partial columns (``partials.py``: the
same combiners the window operators use). A micro-batch's rows are pre-aggregated with one
Polars ``group_by``; at the end of the batch (``advance``) the touched keys' partials merge
with their state and the operator emits a changelog (``_op``, Flink's row kinds): ``+I``
for a key seen for the first time, ``-U`` (the result emitted before) and ``+U`` (the new
one) for a key whose result changed; a key whose result did not change emits nothing, as
Flink's mini-batch aggregate does when it can compare results. Work is per batch and per
touched key, never per row.

``table.exec.state.ttl`` (processing time, as in Flink): a key not updated for that long is
forgotten; its next row starts it again (``+I``).

>>> op = GroupAggregate(["k"], [AggSpec("n", "count_star")])
>>> _ = op.process(pa.table({"k": ["a", "a", "b"]}), None)
>>> op.advance(0).to_pylist()
[{'k': 'a', 'n': 2, '_op': 0}, {'k': 'b', 'n': 1, '_op': 0}]
>>> _ = op.process(pa.table({"k": ["a"]}), None)
>>> op.advance(0).to_pylist()
[{'k': 'a', 'n': 2, '_op': 1}, {'k': 'a', 'n': 3, '_op': 2}]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from fluvial.errors import PipelineError
from fluvial.stream.ops.frames import dump_frame, load_frame
from fluvial.stream.ops.keyed import DELETE, INSERT, OP, UPDATE_AFTER, UPDATE_BEFORE, changelog
from fluvial.stream.ops.partials import Partials
from fluvial.stream.ops.spec import AggSpec

__all__ = ["GroupAggregate"]

_KEY = "__k"  # the constant key of a GROUP BY with no keys (a global aggregate)


class GroupAggregate:
    """Unbounded GROUP BY over an append-only input; the output is a changelog."""

    #: emits at the end of every micro-batch, whatever the watermark
    eager = True

    def __init__(
        self,
        keys: Sequence[str],
        aggs: Sequence[AggSpec],
        *,
        ttl_ms: int = 0,
        retract: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = tuple(keys)
        #: the input is a changelog (``_op``): retractions subtract (COUNT, SUM, AVG only)
        self.retract = retract
        self.aggs = tuple(aggs)
        self.ttl_ms = int(ttl_ms)
        self.late_rows = 0
        self.dropped_ids = None
        self._clock = clock
        columns = {a.arg for a in self.aggs if a.arg} | {a.filter for a in self.aggs if a.filter}
        self._inputs = [*self.keys, *sorted(columns - set(self.keys))]
        self._group = list(self.keys) or [_KEY]
        self._schema: pa.Schema | None = None
        self._partials: Partials | None = None
        self._state: pl.DataFrame | None = None  # keys, partials, __t (last update, ms)
        self._pending: list[pl.DataFrame] = []

    def _bind(self, schema: pa.Schema) -> Partials:
        missing = [c for c in self._inputs if c not in schema.names]
        if missing:
            raise PipelineError(f"GROUP BY input lacks columns {missing}; found {schema.names}")
        bound = pa.schema([schema.field(c) for c in self._inputs])
        if self._schema is None:
            self._schema = bound
            self._partials = Partials(
                self.aggs, {f.name: f.type for f in bound}, signed=self.retract
            )
        elif not bound.equals(self._schema):
            raise PipelineError(
                f"GROUP BY input changed type: expected {self._schema}, found {bound}"
            )
        assert self._partials is not None
        return self._partials

    def process(self, table: pa.Table, watermark_ms: int | None) -> int:
        """Pre-aggregate a batch (emitted at the next :meth:`advance`); never drops rows."""
        if table.num_rows == 0:
            return 0
        partials = self._bind(table.schema)
        if self._inputs:
            frame = pl.from_arrow(table.select(self._inputs))
            assert isinstance(frame, pl.DataFrame)
        else:
            frame = pl.DataFrame({"__n": pl.Series([0] * table.num_rows, dtype=pl.Int8)})
        if not self.keys:
            frame = frame.with_columns(pl.lit(0, pl.Int8).alias(_KEY))
        if self.retract:
            ops = table.column(OP).to_numpy() if OP in table.column_names else None
            sign = np.ones(table.num_rows, dtype=np.int64)
            if ops is not None:
                sign[(ops == UPDATE_BEFORE) | (ops == DELETE)] = -1
            frame = frame.with_columns(pl.Series("__sign", sign))
        self._pending.append(frame.group_by(self._group).agg(partials.batch))
        return 0

    def advance(self, watermark_ms: int) -> pa.Table:
        """The changes since the last call (the watermark does not matter)."""
        return self._emit()

    def flush(self) -> pa.Table:
        """End of input: the last changes."""
        return self._emit()

    def _emit(self) -> pa.Table:
        now = int(self._clock() * 1000)
        if self._partials is None or not self._pending:
            self._expire(now)
            return self._finalize([])
        p = self._partials
        batch = pl.concat(self._pending, how="vertical_relaxed")
        self._pending = []
        batch = batch.group_by(self._group).agg(p.merge) if batch.height else batch
        old = pl.DataFrame()
        if self._state is not None and self._state.height:
            self._expire(now)
        if self._state is not None and self._state.height:
            touched = self._state.join(
                batch.select(self._group), on=self._group, how="semi", nulls_equal=True
            )
            old = touched.drop("__t")
            merged = (
                pl.concat([old, batch], how="vertical_relaxed").group_by(self._group).agg(p.merge)
            )
            rest = self._state.join(
                batch.select(self._group), on=self._group, how="anti", nulls_equal=True
            )
        else:
            merged, rest = batch, None
        gone = pl.DataFrame()
        if self.retract:  # a group whose rows were all retracted is deleted
            gone = merged.filter(pl.col("__rows") <= 0).select(self._group)
            merged = merged.filter(pl.col("__rows") > 0)
        merged = merged.with_columns(pl.lit(now, pl.Int64).alias("__t"))
        self._state = merged if rest is None else pl.concat([rest, merged], how="vertical_relaxed")
        new = merged.drop("__t")
        before, after = self._final(old), self._final(new)
        deleted: list[tuple[pl.DataFrame, int]] = []
        if gone.height and before.height:
            deleted = [(before.join(gone, on=self._group, how="semi", nulls_equal=True), DELETE)]
        if old.height:
            fresh = after.join(
                before.select(self._group), on=self._group, how="anti", nulls_equal=True
            )
            changed = self._changed(before, after)
            parts = [
                *deleted,
                (before.join(changed, on=self._group, how="semi", nulls_equal=True), UPDATE_BEFORE),
                (after.join(changed, on=self._group, how="semi", nulls_equal=True), UPDATE_AFTER),
                (fresh, INSERT),
            ]
        else:
            parts = [(after, INSERT)]
        return self._finalize(parts)

    def _expire(self, now: int) -> None:
        if self.ttl_ms and self._state is not None and self._state.height:
            self._state = self._state.filter(pl.col("__t") > now - self.ttl_ms)

    def _final(self, partial: pl.DataFrame) -> pl.DataFrame:
        assert self._partials is not None
        if not partial.height:
            return pl.DataFrame()
        return partial.select(*self._group, *self._partials.final).sort(
            self._group, nulls_last=True
        )

    def _changed(self, before: pl.DataFrame, after: pl.DataFrame) -> pl.DataFrame:
        """The keys whose finalized result differs."""
        names = [a.name for a in self.aggs]
        both = before.join(after, on=self._group, suffix="__new", nulls_equal=True)
        same = pl.lit(True)
        for n in names:
            same = same & pl.col(n).eq_missing(pl.col(f"{n}__new"))
        return both.filter(~same).select(self._group)

    def _finalize(self, parts: list[tuple[pl.DataFrame, int]]) -> pa.Table:
        """Polars frames of finalized rows -> one Arrow changelog of the output schema."""
        schema = self._output_schema()
        tables = []
        for frame, op in parts:
            if not frame.height:
                continue
            arrow = frame.select([f.name for f in schema]).to_arrow()
            tables.append((_conform(arrow, schema), op))
        if not tables:
            tables = [(schema.empty_table(), INSERT)]
        return changelog(tables)

    def _output_schema(self) -> pa.Schema:
        fields = []
        for k in self.keys:
            typ = self._schema.field(k).type if self._schema is not None else pa.null()
            fields.append(pa.field(k, typ))
        types = self._partials.output_types if self._partials is not None else {}
        for a in self.aggs:
            fields.append(pa.field(a.name, types.get(a.name, pa.int64())))
        return pa.schema(fields)

    # -- state ----------------------------------------------------------------------------------

    @property
    def state_rows(self) -> int:
        return self._state.height if self._state is not None else 0

    @property
    def state_bytes(self) -> int:
        return int(self._state.estimated_size()) if self._state is not None else 0

    def snapshot(self) -> bytes:
        """The per-key partials as Arrow IPC (pending rows are emitted before checkpoints)."""
        if self._pending:
            raise PipelineError("GroupAggregate.snapshot() with un-emitted rows: advance first")
        return dump_frame(self._state, self._schema)

    def restore(self, data: bytes) -> None:
        self._state, schema = load_frame(data)
        if schema is not None:
            self._schema = None
            self._bind(schema)
        self._pending = []


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    arrays = []
    for f in schema:
        col = table.column(f.name)
        arrays.append(col if col.type == f.type else col.cast(f.type, safe=False))
    return pa.Table.from_arrays(arrays, schema=schema)
