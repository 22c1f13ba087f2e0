"""Hold a window TVF's rows until their window fires (window Top-N and deduplication).

``ROW_NUMBER() OVER (PARTITION BY window_start, window_end, … ORDER BY …)`` directly on a
window TVF ranks each window's rows once the window is complete, as Flink's
WindowRank/WindowDeduplicate do. This operator assigns windows to rows (``assign_windows``,
vectorized), drops rows whose window has fired (late, counted), and at ``advance`` emits
every row of the windows the watermark passed, together — so the ranking that follows is
one stateless DuckDB window query over them. State: the pending rows, as Arrow.

>>> op = WindowBuffer(WindowSpec.tumble(10), "ts")
>>> op.process(pa.table({"ts": pa.array([1, 12, 3], pa.timestamp("ms"))}), None)
0
>>> op.advance(9)["ts"].cast(pa.int64()).to_pylist()
[1, 3]
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import PipelineError
from fluvial.stream.ops.assign import assign_windows, epoch_ms, last_window_end
from fluvial.stream.ops.keyed import ROW_WATERMARK
from fluvial.stream.ops.spec import WindowSpec

__all__ = ["WindowBuffer"]


class WindowBuffer:
    """Rows with their window columns, released when their window fires."""

    def __init__(self, spec: WindowSpec, time_col: str) -> None:
        if spec.kind == "session":
            raise PipelineError("ranking over SESSION windows is not supported")
        self.spec = spec
        self.time_col = time_col
        self.late_rows = 0
        self.dropped_ids = None
        self._rows: list[pa.Table] = []
        self._fired: int | None = None

    def process(self, table: pa.Table, watermark_ms: int | None) -> int:
        """Buffer a batch's rows with their windows; return how many rows were late (every
        window containing them had fired)."""
        if table.num_rows == 0:
            return 0
        if ROW_WATERMARK in table.column_names:
            table = table.drop_columns([ROW_WATERMARK])
        fired = [w for w in (self._fired, watermark_ms) if w is not None]
        dropped = 0
        if fired:
            wm = max(fired)
            on_time = last_window_end(self.spec, epoch_ms(table, self.time_col)) - 1 > wm
            dropped = int(len(on_time) - np.count_nonzero(on_time))
            if dropped:
                table = table.filter(pa.array(on_time))
                self.late_rows += dropped
        rows = assign_windows(table, self.time_col, self.spec)
        if fired and rows.num_rows:  # a HOP row keeps only its windows still open
            open_ = pc.greater(pc.subtract(rows["window_end"].cast(pa.int64()), 1), max(fired))
            rows = rows.filter(open_)
        if rows.num_rows:
            self._rows.append(rows)
        return dropped

    def advance(self, watermark_ms: int) -> pa.Table:
        return self._release(int(watermark_ms))

    def flush(self) -> pa.Table:
        return self._release(None)

    def _release(self, watermark: int | None) -> pa.Table:
        if watermark is not None:
            self._fired = watermark if self._fired is None else max(self._fired, watermark)
        if not self._rows:
            return pa.table({})
        rows = pa.concat_tables(self._rows)
        if watermark is None:
            self._rows = []
            return rows
        due = pc.less_equal(pc.subtract(rows["window_end"].cast(pa.int64()), 1), watermark)
        self._rows = [rows.filter(pc.invert(due))]
        return rows.filter(due)

    @property
    def state_bytes(self) -> int:
        return sum(t.nbytes for t in self._rows)

    def snapshot(self) -> bytes:
        rows = pa.concat_tables(self._rows) if self._rows else pa.table({})
        sink = pa.BufferOutputStream()
        meta = {b"fluvial.fired": str(self._fired).encode()}
        rows = rows.replace_schema_metadata(meta)
        with pa.ipc.new_stream(sink, rows.schema) as writer:
            writer.write_table(rows)
        return bytes(sink.getvalue().to_pybytes())

    def restore(self, data: bytes) -> None:
        rows = pa.ipc.open_stream(data).read_all()
        fired = (rows.schema.metadata or {}).get(b"fluvial.fired", b"None").decode()
        self._fired = None if fired == "None" else int(fired)
        rows = rows.replace_schema_metadata(None)
        self._rows = [rows] if rows.num_rows else []
