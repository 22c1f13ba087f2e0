"""Two-input joins over micro-batches: window join, interval join and regular join.

Each operator keeps its two sides' rows as Arrow tables and does the matching with one
DuckDB join per micro-batch (never per row; inner joins materialize late — the condition
runs over the columns it reads, then only matched rows are taken and projected): the sides are registered as ``l`` and ``r``
and :class:`~fluvial.stream.plan.nodes.JoinSpec` carries the planned ``ON`` condition
(over ``l."col"`` / ``r."col"``) and the output projection. The operators share the
runtime's operator interface with a side argument: ``process(table, side, watermark)``
(side 0 = left, 1 = right; returns late rows dropped), ``advance(watermark)`` (the rows
to emit), ``flush()``, ``snapshot()`` / ``restore()``.

* **Window join** (Flink's WindowJoin): both inputs carry ``window_start`` /
  ``window_end``; rows wait until the watermark (the minimum of the two inputs') passes
  their window's end, then the window's rows of both sides are joined — inner, left,
  right or full — and forgotten. A row whose window has already fired is late (dropped).
* **Interval join** (``l.t BETWEEN r.t - a AND r.t + b`` plus equality keys): every new
  row is joined at once with the other side's kept rows (and the new rows of the same
  batch), and emitted; a row is kept while a future row of the other side could still
  match it given the watermark (a row behind the watermark joins with what is kept and is
  not kept itself, as Flink's TimeIntervalJoin). Inner joins.
* **Regular join** (equality keys, no time bounds): both sides are kept (until
  ``table.exec.state.ttl``, processing time); new rows join with the other side's kept
  rows as they come. Inner joins of append-only inputs: the result is append-only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import PipelineError
from fluvial.stream.ops.assign import epoch_ms
from fluvial.stream.ops.keyed import DELETE, INSERT, OP

if TYPE_CHECKING:
    from fluvial.stream.plan.nodes import JoinSpec

__all__ = ["IntervalJoin", "RegularJoin", "WindowJoin", "make_join"]

_MIN = -(2**63)


class _TwoSided:
    """What the joins share: the two sides' kept rows, DuckDB, the output query."""

    def __init__(self, spec: JoinSpec) -> None:
        self.spec = spec
        self.late_rows = 0
        self.dropped_ids = None
        self.kept: list[pa.Table | None] = [None, None]
        self.out: list[pa.Table] = []
        self.schemas: list[pa.Schema | None] = [None, None]
        self._con = duckdb.connect()
        self._con.execute("SET TimeZone = 'UTC'")
        self._on_columns = _on_columns(spec.on_sql)

    def _bind(self, side: int, table: pa.Table) -> None:
        if self.schemas[side] is None:
            self.schemas[side] = table.schema
        elif not table.schema.equals(self.schemas[side]):
            table_schema = self.schemas[side]
            raise PipelineError(
                f"join input {'left' if side == 0 else 'right'} changed type: expected "
                f"{table_schema}, found {table.schema}"
            )

    def _join(self, left: pa.Table, right: pa.Table, how: str | None = None) -> pa.Table:
        """``left ⋈ right`` on the planned condition, projected to the output columns."""
        how = (how or self.spec.how).upper()
        if how == "INNER" and self._on_columns is not None:
            return self._inner_join(left, right, *self._on_columns)
        sql = f"SELECT {self.spec.select_sql} FROM l {how} JOIN r ON {self.spec.on_sql}"
        self._con.register("l", left)
        self._con.register("r", right)
        try:
            out = self._con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise PipelineError(f"join failed: {exc} (in {sql!r})") from exc
        finally:
            self._con.unregister("l")
            self._con.unregister("r")
        return _ms(out)

    def _inner_join(
        self, left: pa.Table, right: pa.Table, lcols: list[str], rcols: list[str]
    ) -> pa.Table:
        """An inner join, materialized late: the ON condition runs over the columns it
        reads and a row number (so the kept side's other columns — the bulk of a bid or a
        person — are not scanned for every batch), then only the matched rows are taken
        and projected side by side (``POSITIONAL JOIN``)."""
        lkeys = left.select(lcols).append_column(_ROW, pa.array(np.arange(left.num_rows)))
        rkeys = right.select(rcols).append_column(_ROW, pa.array(np.arange(right.num_rows)))
        pairs = self._sql_pair(
            f'SELECT l."{_ROW}" AS li, r."{_ROW}" AS ri FROM l INNER JOIN r ON {self.spec.on_sql}',
            lkeys,
            rkeys,
        )
        matched_l = left.take(pairs["li"])
        matched_r = right.take(pairs["ri"])
        return _ms(
            self._sql_pair(
                f"SELECT {self.spec.select_sql} FROM l POSITIONAL JOIN r", matched_l, matched_r
            )
        )

    def _sql_pair(self, sql: str, left: pa.Table, right: pa.Table) -> pa.Table:
        self._con.register("l", left)
        self._con.register("r", right)
        try:
            return self._con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise PipelineError(f"join failed: {exc} (in {sql!r})") from exc
        finally:
            self._con.unregister("l")
            self._con.unregister("r")

    def _empty(self, side: int) -> pa.Table:
        schema = self.schemas[side]
        return schema.empty_table() if schema is not None else pa.table({})

    def _emit(self) -> pa.Table:
        out, self.out = self.out, []
        tables = [t for t in out if t.num_rows]
        if not tables:
            return pa.table({})
        return pa.concat_tables(tables, promote_options="permissive")

    def flush(self) -> pa.Table:
        return self.advance(2**63 - 1)

    def advance(self, watermark_ms: int) -> pa.Table:
        raise NotImplementedError

    @property
    def state_bytes(self) -> int:
        return sum(t.nbytes for t in self.kept if t is not None)

    def snapshot(self) -> bytes:
        if any(t.num_rows for t in self.out):
            raise PipelineError("join snapshot with un-emitted rows: advance first")
        sink = pa.BufferOutputStream()
        parts = []
        for side in (0, 1):
            t = self.kept[side]
            if t is None and self.schemas[side] is not None:
                t = self._empty(side)
            parts.append(t)
        meta = {"late_rows": self.late_rows, **self._meta()}
        # two IPC streams, length-prefixed, then the JSON metadata
        for t in parts:
            buf = pa.BufferOutputStream()
            if t is not None:
                with pa.ipc.new_stream(buf, t.schema) as writer:
                    writer.write_table(t)
            data = buf.getvalue().to_pybytes()
            sink.write(len(data).to_bytes(8, "little"))
            sink.write(data)
        sink.write(json.dumps(meta).encode())
        return bytes(sink.getvalue().to_pybytes())

    def restore(self, data: bytes) -> None:
        pos = 0
        for side in (0, 1):
            n = int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
            chunk = data[pos : pos + n]
            pos += n
            if n:
                t = pa.ipc.open_stream(chunk).read_all()
                # the input's own columns (kept rows also carry __seen / __id / __matches)
                self.schemas[side] = pa.schema(
                    [f for f in t.schema if f.name not in ("__seen", "__id", "__matches")]
                )
                self.kept[side] = t if t.num_rows else None
        meta = json.loads(data[pos:].decode())
        self.late_rows = int(meta.pop("late_rows", 0))
        self._load_meta(meta)

    def _meta(self) -> dict[str, Any]:
        return {}

    def _load_meta(self, meta: dict[str, Any]) -> None:
        pass


class WindowJoin(_TwoSided):
    """Join the rows of the same window of both sides once the window has fired."""

    def __init__(self, spec: JoinSpec) -> None:
        super().__init__(spec)
        self.fired: int | None = None

    def process(self, table: pa.Table, side: int, watermark_ms: int | None) -> int:
        if table.num_rows == 0:
            return 0
        self._bind(side, table)
        end_col = self.spec.window_end[side]
        ends = epoch_ms(table, end_col)
        wm = max(w for w in (self.fired, watermark_ms, _MIN) if w is not None)
        live = ends - 1 > wm
        dropped = int(len(live) - np.count_nonzero(live))
        if dropped:
            table = table.filter(pa.array(live))
            self.late_rows += dropped
        kept = self.kept[side]
        self.kept[side] = table if kept is None else pa.concat_tables([kept, table])
        return dropped

    def advance(self, watermark_ms: int) -> pa.Table:
        wm = int(watermark_ms)
        self.fired = wm if self.fired is None else max(self.fired, wm)
        due: list[pa.Table] = []
        for side in (0, 1):
            kept = self.kept[side]
            if kept is None or kept.num_rows == 0:
                due.append(self._empty(side))
                continue
            ends = epoch_ms(kept, self.spec.window_end[side])
            fire = ends - 1 <= wm
            due.append(kept.filter(pa.array(fire)))
            rest = kept.filter(pa.array(~fire))
            self.kept[side] = rest if rest.num_rows else None
        if (due[0].num_rows or due[1].num_rows) and all(s is not None for s in self.schemas):
            self.out.append(self._join(due[0], due[1]))
        return self._emit()

    def _meta(self) -> dict[str, Any]:
        return {"fired": self.fired}

    def _load_meta(self, meta: dict[str, Any]) -> None:
        self.fired = meta.get("fired")


class IntervalJoin(_TwoSided):
    """``l.t - r.t`` within ``[lower, upper]`` (and the equality keys): rows join as they
    come; each side keeps its rows while the other side could still match them."""

    def __init__(self, spec: JoinSpec) -> None:
        super().__init__(spec)
        if spec.left_time is None or spec.right_time is None:
            raise PipelineError("an interval join needs a time column on both sides")
        self.watermark: int | None = None

    def _horizon(self, side: int) -> int:
        """How far past a row's time the other side may still match it (ms)."""
        # l.t - r.t in [lo, hi]: a left row matches right rows with r.t <= l.t - lo;
        # a right row matches left rows with l.t <= r.t + hi
        return -self.spec.lower_ms if side == 0 else self.spec.upper_ms

    def process(self, table: pa.Table, side: int, watermark_ms: int | None) -> int:
        if table.num_rows == 0:
            return 0
        self._bind(side, table)
        col = self.spec.left_time if side == 0 else self.spec.right_time
        assert col is not None
        other = self.kept[1 - side]
        if other is not None and other.num_rows and self.schemas[1 - side] is not None:
            pair = (table, other) if side == 0 else (other, table)
            self.out.append(self._join(*pair, how="inner"))
        # keep the rows the other side's future rows may still match (as Flink's
        # TimeIntervalJoin: a row behind the watermark joins with what is kept, and is
        # not kept itself)
        wm = max(w for w in (self.watermark, watermark_ms, _MIN) if w is not None)
        if wm > _MIN:
            live = epoch_ms(table, col) + self._horizon(side) > wm
            table = table.filter(pa.array(live))
        if table.num_rows:
            kept = self.kept[side]
            self.kept[side] = table if kept is None else pa.concat_tables([kept, table])
        return 0

    def advance(self, watermark_ms: int) -> pa.Table:
        wm = int(watermark_ms)
        self.watermark = wm if self.watermark is None else max(self.watermark, wm)
        for side in (0, 1):
            kept = self.kept[side]
            if kept is None or not kept.num_rows:
                continue
            col = self.spec.left_time if side == 0 else self.spec.right_time
            assert col is not None
            live = epoch_ms(kept, col) + self._horizon(side) > self.watermark
            rest = kept.filter(pa.array(live))
            self.kept[side] = rest if rest.num_rows else None
        return self._emit()

    def _meta(self) -> dict[str, Any]:
        return {"watermark": self.watermark}

    def _load_meta(self, meta: dict[str, Any]) -> None:
        self.watermark = meta.get("watermark")


class RegularJoin(_TwoSided):
    """Equality keys, no time bounds: both sides kept (up to the state TTL).

    Inner joins of append-only inputs are append-only. Outer joins (LEFT, RIGHT, FULL)
    are a changelog, as in Flink: a row of an outer side without a match is emitted
    padded with NULLs (``+I``), and retracted (``-D``) when its first match arrives. Each
    kept row carries an id and its number of matches (vectorized bookkeeping: one DuckDB
    join and one ``group_by`` per batch).
    """

    def __init__(self, spec: JoinSpec, clock: Callable[[], float] = time.time) -> None:
        super().__init__(spec)
        self._clock = clock
        outer = {"inner": (), "left": (0,), "right": (1,), "full": (0, 1)}
        if spec.how not in outer:
            raise PipelineError(f"unknown join type {spec.how!r}")
        self.outer = outer[spec.how]
        self._next_id = 0

    def process(self, table: pa.Table, side: int, watermark_ms: int | None) -> int:
        if table.num_rows == 0:
            return 0
        self._bind(side, table)
        if self.spec.ttl_ms:
            now = int(self._clock() * 1000)
            table = table.append_column("__seen", pa.array(np.full(table.num_rows, now)))
        if not self.outer:
            other = self.kept[1 - side]
            if other is not None and other.num_rows:
                pair = (table, other) if side == 0 else (other, table)
                self.out.append(self._join(*pair, how="inner"))
            kept = self.kept[side]
            self.kept[side] = table if kept is None else pa.concat_tables([kept, table])
            return 0
        ids = np.arange(self._next_id, self._next_id + table.num_rows, dtype=np.int64)
        self._next_id += table.num_rows
        table = table.append_column("__id", pa.array(ids)).append_column(
            "__matches", pa.array(np.zeros(table.num_rows, dtype=np.int64))
        )
        other = self.kept[1 - side]
        new_matches = np.zeros(table.num_rows, dtype=np.int64)
        if other is not None and other.num_rows:
            pair = (table, other) if side == 0 else (other, table)
            joined = self._join_ids(*pair)
            mine = joined["__lid" if side == 0 else "__rid"].to_numpy()
            theirs = joined["__rid" if side == 0 else "__lid"].to_numpy()
            out = joined.drop_columns(["__lid", "__rid"])
            if (1 - side) in self.outer and len(theirs):
                # the other side's rows that had no match so far: retract their padded row
                counts = other["__matches"].to_numpy()
                other_ids = other["__id"].to_numpy()
                hit_ids, hits = np.unique(theirs, return_counts=True)
                pos = np.searchsorted(other_ids, hit_ids)
                first = counts[pos] == 0
                if first.any():
                    lonely = other.take(pa.array(pos[first]))
                    self.out.append(_tag(self._padded(lonely, 1 - side), DELETE))
                counts = counts.copy()
                np.add.at(counts, pos, hits)
                other = other.set_column(
                    other.schema.get_field_index("__matches"), "__matches", pa.array(counts)
                )
                self.kept[1 - side] = other
            if out.num_rows:
                self.out.append(_tag(out, INSERT))
            if len(mine):
                index = mine - ids[0]
                np.add.at(new_matches, index, 1)
        table = table.set_column(
            table.schema.get_field_index("__matches"), "__matches", pa.array(new_matches)
        )
        if side in self.outer:
            lonely = table.filter(pa.array(new_matches == 0))
            if lonely.num_rows:
                self.out.append(_tag(self._padded(lonely, side), INSERT))
        kept = self.kept[side]
        self.kept[side] = table if kept is None else pa.concat_tables([kept, table])
        return 0

    def _join_ids(self, left: pa.Table, right: pa.Table) -> pa.Table:
        sql = (
            f'SELECT {self.spec.select_sql}, l."__id" AS "__lid", r."__id" AS "__rid" '
            f"FROM l INNER JOIN r ON {self.spec.on_sql}"
        )
        return self._sql(sql, left, right)

    def _padded(self, rows: pa.Table, side: int) -> pa.Table:
        """*rows* of one side as output rows, the other side's columns NULL."""
        empty = self.kept[1 - side]
        other = empty.slice(0, 0) if empty is not None else None
        if other is None:
            schema = self.schemas[1 - side]
            if schema is not None:
                other = schema.empty_table()
            else:  # not seen yet: NULL columns (the sink casts them to its types)
                names = self.spec.input_columns[1 - side]
                other = pa.table({c: pa.nulls(0) for c in names})
        pair = (rows, other) if side == 0 else (other, rows)
        how = "LEFT" if side == 0 else "RIGHT"
        sql = f"SELECT {self.spec.select_sql} FROM l {how} JOIN r ON FALSE"
        out = self._sql(sql, *pair)
        if self.schemas[1 - side] is None:  # the padding's type is not known yet: NULL
            n_left = len(self.spec.input_columns[0])
            padded = range(n_left, out.num_columns) if side == 0 else range(n_left)
            for i in padded:
                out = out.set_column(i, out.schema.field(i).name, pa.nulls(out.num_rows))
        return out

    def _sql(self, sql: str, left: pa.Table, right: pa.Table) -> pa.Table:
        self._con.register("l", left)
        self._con.register("r", right)
        try:
            out = self._con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise PipelineError(f"join failed: {exc} (in {sql!r})") from exc
        finally:
            self._con.unregister("l")
            self._con.unregister("r")
        return _ms(out)

    def advance(self, watermark_ms: int) -> pa.Table:
        if self.spec.ttl_ms:
            cutoff = int(self._clock() * 1000) - self.spec.ttl_ms
            for side in (0, 1):
                kept = self.kept[side]
                if kept is not None and kept.num_rows:
                    rest = kept.filter(pc.greater(kept["__seen"], cutoff))
                    self.kept[side] = rest if rest.num_rows else None
        out = self._emit()
        if self.outer and OP not in out.column_names:
            out = out.append_column(OP, pa.array(np.zeros(out.num_rows, dtype=np.int8)))
        return out

    def _meta(self) -> dict[str, Any]:
        return {"next_id": self._next_id}

    def _load_meta(self, meta: dict[str, Any]) -> None:
        self._next_id = int(meta.get("next_id", 0))


_ROW = "__fluvial_row"


def _on_columns(on_sql: str) -> tuple[list[str], list[str]] | None:
    """The columns of ``l`` and of ``r`` the ON condition reads (None: not parseable, or
    reading a column without its side: then joins scan every column)."""
    import sqlglot

    try:
        tree = sqlglot.parse_one(on_sql, read="duckdb")
    except sqlglot.errors.ParseError:
        return None
    sides: dict[str, list[str]] = {"l": [], "r": []}
    for col in tree.find_all(sqlglot.exp.Column):
        names = sides.get(col.table)
        if names is None:
            return None
        if col.name not in names:
            names.append(col.name)
    return sides["l"], sides["r"]


def _tag(table: pa.Table, op: int) -> pa.Table:
    return table.append_column(OP, pa.array(np.full(table.num_rows, op, dtype=np.int8)))


def make_join(spec: JoinSpec) -> _TwoSided:
    """The operator for a planned join."""
    if spec.kind == "window":
        return WindowJoin(spec)
    if spec.kind == "interval":
        return IntervalJoin(spec)
    return RegularJoin(spec)


def _ms(table: pa.Table) -> pa.Table:
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type) and f.type.unit != "ms":
            table = table.set_column(
                i, f.name, pc.cast(table[i], pa.timestamp("ms", tz=f.type.tz), safe=False)
            )
    return table
