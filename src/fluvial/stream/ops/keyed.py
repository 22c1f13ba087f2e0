"""What the window operators share: input checks, output shaping, and state snapshots.

State is a Polars DataFrame of partial aggregates (``partials.py``) with two int64 window
bounds ``__ws``/``__we`` (epoch ms) and the GROUP BY keys. A snapshot is that frame as one
Arrow IPC stream; the operator's scalars (watermark already fired, late rows, the input
types) travel in the schema metadata, so a restored operator needs no batch to know its
output types.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from fluvial.errors import PipelineError
from fluvial.stream.ops.assign import epoch_ms, validate_spec, window_columns
from fluvial.stream.ops.partials import Partials
from fluvial.stream.ops.spec import AggSpec, WindowSpec

__all__ = [
    "DELETE",
    "INSERT",
    "OP",
    "ROW_ID",
    "ROW_WATERMARK",
    "UPDATE_AFTER",
    "UPDATE_BEFORE",
    "KeyedWindowOperator",
    "changelog",
]

_META = b"fluvial.window_state"

#: the changelog column of updating results, with Flink's RowKind byte values
OP = "_op"
INSERT, UPDATE_BEFORE, UPDATE_AFTER, DELETE = 0, 1, 2, 3
#: an optional input column: each row's own watermark (``pipeline.auto-watermark-interval``
#: = 0, watermarks per record), epoch ms
ROW_WATERMARK = "__wm"
#: an optional input column: each row's index in its source batch (late-events side output)
ROW_ID = "__rid"


def changelog(parts: Sequence[tuple[pa.Table, int]]) -> pa.Table:
    """Concatenate result tables, each tagged with its row kind in an int8 ``_op`` column."""
    tagged = [
        t.append_column(OP, pa.array(np.full(t.num_rows, op, dtype=np.int8))) for t, op in parts
    ]
    return pa.concat_tables(tagged)


class KeyedWindowOperator:
    """Base of the window aggregates: keys, aggregates, input schema, late-row count."""

    def __init__(
        self,
        spec: WindowSpec,
        time_col: str,
        keys: Sequence[str],
        aggs: Sequence[AggSpec],
        schema: pa.Schema | None = None,
        allowed_lateness_ms: int = 0,
    ) -> None:
        validate_spec(spec)
        if allowed_lateness_ms < 0:
            raise PipelineError(
                f"allowed lateness must not be negative; found {allowed_lateness_ms}"
            )
        #: a fired window keeps its state this long and fires again, updated, on late rows
        self.allowed_lateness_ms = int(allowed_lateness_ms)
        self._extra: dict[str, object] = {}
        self.spec = spec
        self.time_col = time_col
        self.keys = tuple(keys)
        self.aggs = tuple(aggs)
        if len(set(self.keys)) != len(self.keys):
            raise PipelineError(f"GROUP BY keys must be distinct; found {list(self.keys)}")
        columns = {a.arg for a in self.aggs if a.arg} | {a.filter for a in self.aggs if a.filter}
        self._inputs = [time_col, *self.keys, *sorted(columns - {time_col, *self.keys})]
        self.late_rows = 0
        #: the :data:`ROW_ID` values of the rows the last ``process`` dropped as late
        self.dropped_ids: npt.NDArray[np.int64] | None = None
        self._fired: int | None = None  # the highest watermark advance() has fired up to
        self._schema: pa.Schema | None = None
        self._partials: Partials | None = None
        if schema is not None:
            self._bind(schema)

    # -- input --------------------------------------------------------------------------------

    def _bind(self, schema: pa.Schema) -> Partials:
        """Fix the input types from the first batch (or a declared schema)."""
        missing = [c for c in self._inputs if c not in schema.names]
        if missing:
            raise PipelineError(
                f"window aggregate input lacks columns {missing}; found {schema.names}"
            )
        bound = pa.schema([schema.field(c) for c in self._inputs])
        if self._schema is None:
            self._schema = bound
            self._partials = Partials(self.aggs, {f.name: f.type for f in bound})
        elif not bound.equals(self._schema):
            raise PipelineError(
                f"window aggregate input changed type: expected {self._schema}, found {bound}"
            )
        assert self._partials is not None
        return self._partials

    def _frame(self, table: pa.Table) -> tuple[pl.DataFrame, Partials]:
        """The batch's needed columns as Polars, plus ``__t`` (event time, epoch ms)."""
        partials = self._bind(table.schema)
        t = epoch_ms(table, self.time_col)
        inputs = [c for c in self._inputs if c != self.time_col]
        time = pl.Series("__t", t, dtype=pl.Int64)
        if not inputs:  # COUNT(*) without keys: the event time is the only column
            return pl.DataFrame([time]), partials
        frame = pl.from_arrow(table.select(inputs))
        assert isinstance(frame, pl.DataFrame)
        return frame.with_columns(time), partials

    def _effective_watermark(self, watermark_ms: int | None) -> int | None:
        """Rows are judged against the later of the batch's watermark and the fired one."""
        if self._fired is None:
            return watermark_ms
        return self._fired if watermark_ms is None else max(self._fired, watermark_ms)

    def _row_watermarks(
        self, table: pa.Table, watermark_ms: int | None
    ) -> int | npt.NDArray[np.int64] | None:
        """The watermark each row is judged against: the batch's (a scalar), or each row's
        own when the input carries :data:`ROW_WATERMARK` — never below what has fired."""
        scalar = self._effective_watermark(watermark_ms)
        if ROW_WATERMARK not in table.column_names:
            return scalar
        rows = table.column(ROW_WATERMARK).to_numpy()
        return rows if scalar is None else np.maximum(rows, scalar)

    def _note_dropped(self, table: pa.Table, kept: npt.NDArray[np.bool_]) -> None:
        """Remember which input rows (their :data:`ROW_ID`) the last batch dropped."""
        if ROW_ID in table.column_names:
            self.dropped_ids = table.column(ROW_ID).to_numpy()[~kept]

    # -- output -------------------------------------------------------------------------------

    def _output(self, windows: pl.DataFrame) -> pa.Table:
        """Finalize ``__ws, __we, keys, partials`` rows into the documented output table."""
        schema = self._schema
        time_type = schema.field(self.time_col).type if schema else pa.timestamp("ms")
        key_types = [schema.field(k).type if schema else pa.null() for k in self.keys]
        agg_types = self._partials.output_types if self._partials else {}
        if self._partials is None or windows.height == 0:
            arrays: list[pa.Array] = [pa.array([], t) for t in key_types]
            aggs = [pa.array([], agg_types.get(a.name, pa.int64())) for a in self.aggs]
            starts = ends = pl.Series([], dtype=pl.Int64).to_numpy()
        else:
            windows = windows.sort(["__we", "__ws", *self.keys], nulls_last=True)
            final = windows.select(*self.keys, *self._partials.final).to_arrow()
            arrays = [_cast(final.column(k), t) for k, t in zip(self.keys, key_types, strict=True)]
            aggs = [_cast(final.column(a.name), agg_types[a.name]) for a in self.aggs]
            starts, ends = windows["__ws"].to_numpy(), windows["__we"].to_numpy()
        names = ["window_start", "window_end", "window_time", *self.keys]
        names += [a.name for a in self.aggs]
        return pa.Table.from_arrays(
            [*window_columns(starts, ends, time_type), *arrays, *aggs], names
        )

    # -- snapshots ----------------------------------------------------------------------------

    def _dump(self, state: pl.DataFrame, extra: dict[str, object] | None = None) -> bytes:
        meta = {"fired": self._fired, "late_rows": self.late_rows, **(extra or {})}
        table = state.to_arrow()
        metadata = {_META: json.dumps(meta).encode()}
        if self._schema is not None:
            metadata[b"fluvial.input_schema"] = self._schema.serialize().to_pybytes()
        table = table.replace_schema_metadata(metadata)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return bytes(sink.getvalue().to_pybytes())

    def _load(self, data: bytes) -> pl.DataFrame:
        try:
            table = pa.ipc.open_stream(data).read_all()
            metadata = table.schema.metadata or {}
            meta = json.loads(metadata[_META])
        except (pa.ArrowInvalid, KeyError, ValueError) as exc:
            raise PipelineError(f"not a window operator snapshot: {exc}") from exc
        if b"fluvial.input_schema" in metadata:
            schema = pa.ipc.read_schema(pa.py_buffer(metadata[b"fluvial.input_schema"]))
            self._schema = None
            self._bind(schema)
        self._fired = meta["fired"]
        self.late_rows = int(meta["late_rows"])
        self._extra = {k: v for k, v in meta.items() if k not in ("fired", "late_rows")}
        frame = pl.from_arrow(table.replace_schema_metadata(None))
        assert isinstance(frame, pl.DataFrame)
        return frame


def _cast(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    if column.type == target:
        return column
    # safe=False: SUM(INT) wraps around on overflow, as Java's int arithmetic in Flink does.
    return column.cast(target, safe=False)
