"""MATCH_RECOGNIZE (ONE ROW PER MATCH) over event-time micro-batches, with Flink's semantics.

Semantics, checked against Flink (``CepOperator``, the CEP ``NFA``, ``StreamExecMatch``):

* Rows are buffered per partition and matched only once the watermark passes them, in
  (time, secondary ORDER BY columns, arrival) order; a row at or below the watermark when it
  arrives is late: dropped and counted.
* Variables follow each other strictly (contiguous rows). A greedy quantifier takes every
  row its condition accepts — the next variable may only take a row the loop refuses (the
  NFA ANDs ``NOT loop-condition`` into the next state's edges) — so it never gives rows
  back; a reluctant one takes as few as the rest of the pattern allows.
* Among matches, the one with the earliest first row wins; a match is emitted only when
  no partial match that started earlier can still complete (it could win). AFTER MATCH
  SKIP (default TO NEXT ROW, as in Flink) says where the next match may start; skipping to
  a variable that has no row, or to the match's first row, fails the job, as in Flink.
* ``WITHIN`` keeps a match only if ``last row time - first row time < interval``; partial
  matches with ``watermark - first row time >= interval`` are dropped.
* ``PREV(col, n)`` is *match-local*, as in Flink: the row ``n`` rows before the current
  one in the match, NULL for the match's first ``n`` rows. ``X.col`` in DEFINE is the
  current row's column when ``X`` is the variable being defined, else ``LAST(X.col)``.
* MEASURES: ``FIRST/LAST(X.col[, n])``, ``X.col`` (= LAST), COUNT/SUM/AVG/MIN/MAX over a
  variable's rows (or all rows), ``MATCH_ROWTIME()`` (the last row's time, a time
  attribute); AVG of integers truncates and SUM keeps the input type, as in Flink.

Two matchers, chosen per query:

* **Vectorized** (DEFINE conditions that read only the current row and ``PREV``): one
  DuckDB query per batch classifies every row — a bitmask of the variables it satisfies,
  once per match position ``0 … N`` where ``N`` is the largest PREV offset (PREV is NULL
  at the first positions) — each distinct mask becomes one character, every partition
  one run of characters, and the pattern one compiled Python regular expression in which
  a variable at a position is the character class of the masks that have its bit. Greedy
  quantifiers carry Flink's restriction as a negative lookahead; a second expression
  (the pattern's prefixes followed by the end of the partition) finds partial matches that
  may still complete. Measures are one DuckDB GROUP BY over the matched rows labelled
  ``(match, variable)``.
* **Backtracking** (DEFINE reads other variables: ``A.col`` in B's condition,
  ``FIRST/LAST``, aggregates): a Python matcher that evaluates the conditions row by row
  with the partial match as context. Correct for every pattern the parser accepts, but a
  per-row Python loop: tens of thousands of rows per second instead of millions.

>>> import sqlglot, pyarrow as pa
>>> from fluvial.stream.sql.match_recognize import MatchRecognize, Quantified, Var, Concat
>>> spec = MatchRecognize((), (("ts", True),), {"n": sqlglot.parse_one("COUNT(B.x)")},
...     Concat((Var("A"), Quantified(Var("B"), 1, None), Var("C"))),
...     {"A": sqlglot.parse_one("x = 0"), "B": sqlglot.parse_one("x > 0")})
>>> op = MatchRecognizeOperator(spec)
>>> ts = pa.array([1, 2, 3, 4, 5], pa.timestamp("ms"))
>>> op.process(pa.table({"ts": ts, "x": [0, 1, 2, 0, 9]}), None)
0
>>> op.flush().to_pylist()
[{'n': 2}]
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from fluvial.errors import PipelineError, UnsupportedSqlError
from fluvial.stream.ops.assign import epoch_ms
from fluvial.stream.ops.match_backtrack import Evaluator, match_at
from fluvial.stream.ops.match_terms import (
    AGGS,
    context_free,
    is_nav,
    items_of,
    prev_args,
    quote,
    raw,
    var_of,
)
from fluvial.stream.sql.match_recognize import MatchRecognize
from fluvial.stream.sql.translate import to_duckdb

__all__ = ["MatchRecognizeOperator"]

_SEQ = "__seq"
_SEP = "\x00"
_END = "(?=\x00)"  # the end of a partition's rows
_MAX_CODES = 50_000  # distinct row classes (code points below the surrogate range)


class MatchRecognizeOperator:
    """``MATCH_RECOGNIZE`` as a stream operator: buffer, match when the watermark passes,
    emit one row per match (partition columns, then measures).

    ``time_col`` defaults to the spec's primary ORDER BY column; ``schema`` (optional)
    fixes the input types before the first batch; ``vectorized=False`` forces the
    backtracking matcher (the vectorized one is used whenever the DEFINE conditions allow).
    """

    def __init__(
        self,
        spec: MatchRecognize,
        time_col: str | None = None,
        schema: pa.Schema | None = None,
        *,
        vectorized: bool | None = None,
    ) -> None:
        self.spec = spec
        self.time_col = time_col or spec.time_col
        if spec.order_by[0][0] != self.time_col:
            raise PipelineError(
                f"MATCH_RECOGNIZE must be ordered by the time attribute {self.time_col!r} "
                f"first; found ORDER BY {spec.order_by[0][0]}"
            )
        self.items = items_of(spec)
        self.vars = list(dict.fromkeys(i.var for i in self.items))
        self.keys = tuple(spec.partition_by)
        self.order = [(c, asc) for c, asc in spec.order_by[1:]]
        self.define = {v: spec.define.get(v, exp.true()) for v in self.vars}
        self.prev_depth = 0
        for cond in self.define.values():
            for n in cond.find_all(exp.Anonymous):
                if n.name.upper() == "PREV":
                    self.prev_depth = max(self.prev_depth, prev_args(n)[1])
        #: the vectorized matcher applies (else the backtracking one)
        free = all(context_free(v, c) for v, c in self.define.items())
        if vectorized and not free:
            raise PipelineError("the vectorized matcher needs context-free DEFINE conditions")
        self.vectorized = free if vectorized is None else vectorized
        used: set[str] = set()
        for node in [*self.define.values(), *spec.measures.values()]:
            used |= {c.name for c in node.find_all(exp.Column) if c.name != "*"}
        first = [self.time_col, *self.keys, *(c for c, _ in self.order)]
        #: the columns the operator reads from its input
        self.input_columns = tuple(dict.fromkeys([*first, *sorted(used - set(first))]))
        self.late_rows = 0
        self._fired: int | None = None
        self._seq = 0
        self._pending: list[pa.Table] = []
        self._tail: pa.Table | None = None
        self._schema: pa.Schema | None = None
        self._con = duckdb.connect()
        self._con.execute("SET TimeZone = 'UTC'")
        self._codes: dict[int, int] = {}
        self._regex: tuple[int, re.Pattern[str], re.Pattern[str], list[int]] | None = None
        self._measure_sql: str | None = None
        if schema is not None:
            self._bind(schema)

    # -- input --------------------------------------------------------------------------------

    def _bind(self, schema: pa.Schema) -> None:
        missing = [c for c in self.input_columns if c not in schema.names]
        if missing:
            raise PipelineError(
                f"MATCH_RECOGNIZE input lacks columns {missing}; found {schema.names}"
            )
        bound = pa.schema([schema.field(c) for c in self.input_columns])
        if self._schema is None:
            self._schema = bound
            self._measure_sql = self._measures(bound)
        elif not bound.equals(self._schema):
            raise PipelineError(
                f"MATCH_RECOGNIZE input changed type: expected {self._schema}, found {bound}"
            )

    def process(self, table: pa.Table, watermark_ms: int | None) -> int:
        """Buffer a batch; return how many rows were dropped as late (time <= watermark)."""
        if table.num_rows == 0:
            return 0
        self._bind(table.schema)
        t = epoch_ms(table, self.time_col)
        table = table.select(list(self.input_columns))
        wm = watermark_ms if self._fired is None else max(self._fired, watermark_ms or self._fired)
        dropped = 0
        if wm is not None:
            late = t <= wm
            dropped = int(late.sum())
            if dropped:
                table = table.filter(pa.array(~late))
        seq = np.arange(self._seq, self._seq + table.num_rows, dtype=np.int64)
        self._seq += table.num_rows
        if table.num_rows:
            self._pending.append(table.append_column(_SEQ, pa.array(seq)))
        self.late_rows += dropped
        return dropped

    # -- firing -------------------------------------------------------------------------------

    def advance(self, watermark_ms: int) -> pa.Table:
        """Match every buffered row with time <= ``watermark_ms``; emit the matches found."""
        wm = int(watermark_ms)
        self._fired = wm if self._fired is None else max(self._fired, wm)
        ready: pa.Table | None = None
        if self._pending:
            pending = pa.concat_tables(self._pending)
            due = epoch_ms(pending, self.time_col) <= wm
            ready = pending.filter(pa.array(due))
            rest = pending.filter(pa.array(~due))
            self._pending = [rest] if rest.num_rows else []
        if (ready is None or ready.num_rows == 0) and (
            self.spec.within_ms is None or self._tail is None
        ):
            return self._empty()
        parts = [t for t in (self._tail, ready) if t is not None and t.num_rows]
        if not parts:
            return self._empty()
        rows = pa.concat_tables(parts)
        return self._match(rows, wm)

    def flush(self) -> pa.Table:
        """End of bounded input: the watermark goes to +infinity; partial matches are
        dropped (they can never complete)."""
        out = self.advance(2**63 - 1)
        self._tail = None
        return out

    def _empty(self) -> pa.Table:
        schema = self._output_schema()
        return schema.empty_table()

    def _output_schema(self) -> pa.Schema:
        if self._schema is None or self._measure_sql is None:
            return pa.schema([(k, pa.null()) for k in (*self.keys, *self.spec.measures)])
        empty = self._sql(self._measure_sql, self._labelled_empty())
        return empty.schema

    # -- matching -----------------------------------------------------------------------------

    def _sorted(self, rows: pa.Table, extra: str = "") -> pa.Table:
        order = [*(quote(k) for k in self.keys), quote(self.time_col)]
        order += [f"{quote(c)} {'ASC' if asc else 'DESC'}" for c, asc in self.order]
        order.append(quote(_SEQ))
        return self._sql(
            f"SELECT *{extra} FROM rows ORDER BY {', '.join(order)}", rows, window=True
        )

    def _sql(self, sql: str, table: pa.Table, window: bool = False) -> pa.Table:
        if window:
            by = ", ".join(quote(k) for k in self.keys)
            order = [
                quote(self.time_col),
                *(f"{quote(c)} {'ASC' if a else 'DESC'}" for c, a in self.order),
            ]
            part = f"PARTITION BY {by} " if by else ""
            sql = (
                sql.replace(
                    " FROM rows",
                    f" FROM rows WINDOW __w AS ({part}ORDER BY {', '.join(order)}, {quote(_SEQ)})",
                    1,
                )
                if "__w" in sql
                else sql
            )
        self._con.register("rows", table)
        try:
            out = self._con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise PipelineError(f"MATCH_RECOGNIZE: evaluating {sql!r} failed: {exc}") from exc
        finally:
            self._con.unregister("rows")
        # DuckDB returns microseconds; the engine's rows (and kept tails) are TIMESTAMP(3)
        for i, f in enumerate(out.schema):
            if pa.types.is_timestamp(f.type) and f.type.unit != "ms":
                ms = pa.timestamp("ms", tz=f.type.tz)
                out = out.set_column(i, f.name, out.column(i).cast(ms, safe=False))
        return out

    def _match(self, rows: pa.Table, wm: int) -> pa.Table:
        if self.vectorized:
            rows = self._sorted(rows, ", " + self._mask_sql() + " AS __mask")
        else:
            rows = self._sorted(rows)
        times = epoch_ms(rows, self.time_col)
        starts = _partition_starts(rows, self.keys)
        if self.vectorized:
            found, tails = self._regex_match(rows, times, starts, wm)
        else:
            found, tails = self._backtrack(rows, times, starts, wm)
        keep = np.zeros(rows.num_rows, dtype=bool)
        ends = [*starts[1:], rows.num_rows]
        for p, t in tails.items():
            keep[t : ends[p]] = True
        tail = rows.select([*self.input_columns, _SEQ]).filter(pa.array(keep))
        self._tail = tail if tail.num_rows else None
        if not found[0].size:
            return self._empty()
        row_idx, match_id, var_idx = found
        labelled = rows.select([*self.input_columns]).take(pa.array(row_idx))
        labelled = labelled.append_column("__match", pa.array(match_id))
        labelled = labelled.append_column("__var", pa.array(var_idx, pa.int32()))
        labelled = labelled.append_column("__pos", pa.array(row_idx))
        assert self._measure_sql is not None
        return self._sql(self._measure_sql, labelled)

    def _skip(self, start: int, end: int, labels: Callable[[str], list[int]]) -> int:
        kind = self.spec.after_match.kind
        if kind == "past_last_row":
            return end
        if kind == "next_row":
            return start + 1
        var = self.spec.after_match.var
        assert var is not None
        got = labels(var)
        if not got:
            raise PipelineError(
                f"MATCH_RECOGNIZE: could not skip to {var}: no row of the match is {var} "
                "(as in Flink, the job fails)"
            )
        to = got[0] if kind == "to_first" else got[-1]
        if to == start:
            raise PipelineError(
                "MATCH_RECOGNIZE: could not skip to the first row of a match (it would loop "
                "forever; Flink fails the job too)"
            )
        return to

    def _timed_out(self, times: np.ndarray, first: int, last_time: int) -> bool:
        within = self.spec.within_ms
        return within is not None and last_time - int(times[first]) >= within

    # -- vectorized matcher -------------------------------------------------------------------

    def _mask_sql(self) -> str:
        """``(cond_v_k::BIGINT << bit) + …``: bit ``k * V + v`` is variable v at position k."""
        terms = []
        nvars = len(self.vars)
        for k in range(self.prev_depth + 1):
            for v, var in enumerate(self.vars):
                cond = _define_sql(var, self.define[var], k)
                terms.append(f"(CAST(COALESCE(({cond}), FALSE) AS BIGINT) << {k * nvars + v})")
        return "(" + " + ".join(terms) + ")"

    def _compile(self) -> tuple[re.Pattern[str], re.Pattern[str], list[int]]:
        """The pattern (and its prefixes reaching a partition's end) over the current code
        table; ``groups[g]`` is the pattern item of capture group ``g + 1``."""
        if self._regex is not None and self._regex[0] == len(self._codes):
            return self._regex[1], self._regex[2], self._regex[3]
        nvars = len(self.vars)
        depth = self.prev_depth
        groups: list[int] = []

        def cls(var: str, pos: int) -> str:
            bit = 1 << (min(pos, depth) * nvars + self.vars.index(var))
            chars = [chr(c) for m, c in self._codes.items() if m & bit]
            return "[" + "".join(re.escape(c) for c in chars) + "]" if chars else "(?!)"

        def build(i: int, pos: int) -> tuple[str, str]:
            if i == len(self.items):
                return "", _END
            item = self.items[i]
            lo, hi = item.min, item.max
            # counts whose rows all sit at positions below `depth` are spelled out; the
            # rest share the class of positions >= depth
            explicit = [c for c in range(lo, depth - pos) if hi is None or c <= hi]
            fixed = "".join(cls(item.var, pos + k) for k in range(max(depth - pos, 0)))
            n_fixed = max(depth - pos, 0)
            tail_ok = hi is None or hi >= n_fixed
            choices: list[tuple[str, int]] = []  # (rows regex incl. lookahead, next pos)
            for c in explicit:
                rows = "".join(cls(item.var, pos + k) for k in range(c))
                look = (
                    f"(?!{cls(item.var, pos + c)})"
                    if item.greedy and (hi is None or c < hi)
                    else ""
                )
                choices.append((f"({rows}){look}", pos + c))
            if tail_ok and (hi is None or hi >= lo):
                c_all = cls(item.var, depth)
                a = max(lo - n_fixed, 0)
                b = None if hi is None else hi - n_fixed
                if b == 0:
                    loop = ""
                elif not item.greedy:
                    lazy = "?" if item.reluctant else ""
                    loop = f"{c_all}{{{a},{'' if b is None else b}}}{lazy}"
                elif b is None:
                    loop = f"{c_all}{{{a},}}(?!{c_all})"
                elif a <= b - 1:
                    loop = f"(?:{c_all}{{{b}}}|{c_all}{{{a},{b - 1}}}(?!{c_all}))"
                else:
                    loop = f"{c_all}{{{b}}}"
                choices.append((f"({fixed}{loop})", max(pos, depth)))
            if not item.reluctant:
                choices.reverse()
            fulls, prefixes = [], []
            for rows, nxt in choices:
                groups.append(i)
                rest_full, rest_prefix = build(i + 1, nxt)
                fulls.append(rows + rest_full)
                prefixes.append(rows.replace("(", "(?:", 1) + rest_prefix)
            # alive inside this item: some of its rows, then the partition's end
            for k in range(n_fixed if hi is None else min(n_fixed, hi + 1)):
                prefixes.append("".join(cls(item.var, pos + j) for j in range(k)) + _END)
            if tail_ok:
                most = "" if hi is None else str(hi - n_fixed)
                prefixes.append(f"{fixed}{cls(item.var, depth)}{{0,{most}}}{_END}")
            return "(?:" + "|".join(fulls) + ")", "(?:" + "|".join(prefixes) + ")"

        full, prefix = build(0, 0)
        # a partial match starts at a row, not at a partition's end
        compiled = (re.compile(full, re.S), re.compile("(?=[^\x00])" + prefix, re.S), groups)
        self._regex = (len(self._codes), *compiled)
        return compiled

    def _regex_match(
        self, rows: pa.Table, times: np.ndarray, starts: list[int], wm: int
    ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[int, int]]:
        masks = rows.column("__mask").to_numpy()
        uniq, inverse = np.unique(masks, return_inverse=True)
        for mask in uniq.tolist():
            if mask not in self._codes:
                if len(self._codes) >= _MAX_CODES:
                    raise PipelineError("MATCH_RECOGNIZE: too many distinct row classes")
                self._codes[mask] = len(self._codes) + 1
        points = np.array([self._codes[m] for m in uniq.tolist()], dtype=np.uint32)[inverse]
        # one separator before every partition and at the end: position = row + partition + 1
        n = rows.num_rows
        part_of_row = np.zeros(n, dtype=np.int64)
        part_of_row[starts[1:]] = 1
        part_of_row = np.cumsum(part_of_row)
        text_arr = np.zeros(n + len(starts) + 1, dtype=np.uint32)
        text_arr[np.arange(n) + part_of_row + 1] = points
        text = text_arr.tobytes().decode("utf-32-le")
        full, prefix, groups = self._compile()
        ends = np.asarray([*starts[1:], n], dtype=np.int64)
        seg_end = ends + np.arange(len(ends), dtype=np.int64) + 1
        # each matched group's rows as (first row, end row, variable, match number); the
        # rows themselves are expanded once, vectorized, after the scan
        g_first: list[int] = []
        g_end: list[int] = []
        g_var: list[int] = []
        g_match: list[int] = []
        tails: dict[int, int] = {}
        var_of_item = [self.vars.index(it.var) for it in self.items]
        n_matches = 0
        pos = 1
        m: re.Match[str] | None = None
        a: re.Match[str] | None = None
        while pos < len(text):
            if m is None or m.start() < pos:
                m = full.search(text, pos)
            if a is None or a.start() < pos:
                a = prefix.search(text, pos)
                while a is not None:  # partial matches WITHIN has expired do not count
                    row = a.start() - _segment(seg_end, a.start()) - 1
                    if not self._timed_out(times, row, wm):
                        break
                    a = prefix.search(text, a.start() + 1)
            if a is not None and (m is None or a.start() < m.start()):
                part = _segment(seg_end, a.start())
                row = a.start() - part - 1
                tails[part] = row
                pos = int(seg_end[part]) + 1
                continue
            if m is None:
                break
            part = _segment(seg_end, m.start())
            first = m.start() - part - 1
            last = m.end() - part - 2
            if self._timed_out(times, first, int(times[last])):
                pos = m.start() + 1
                continue
            spans: dict[str, list[int]] = {}
            for g in range(1, len(groups) + 1):
                s, e = m.span(g)
                if s < 0 or e <= s:
                    continue
                item = groups[g - 1]
                g_first.append(s - part - 1)
                g_end.append(e - part - 1)
                g_var.append(var_of_item[item])
                g_match.append(n_matches)
                spans.setdefault(self.items[item].var, []).extend(range(s - part - 1, e - part - 1))
            n_matches += 1
            nxt = self._skip(first, last + 1, functools.partial(_spans_of, spans))
            pos = nxt + part + 1
        return _expand_groups(g_first, g_end, g_var, g_match), tails

    # -- backtracking matcher -----------------------------------------------------------------

    def _backtrack(
        self, rows: pa.Table, times: np.ndarray, starts: list[int], wm: int
    ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[int, int]]:
        cols = {}
        for name in self.input_columns:
            col = rows.column(name)
            if pa.types.is_timestamp(col.type):
                col = pc.cast(col.cast(pa.timestamp(col.type.unit)), pa.int64())
                if col.type != pa.int64():
                    col = col.cast(pa.int64())
                unit = rows.column(name).type.unit
                scale = {"s": 1000, "ms": 1, "us": 0.001, "ns": 0.000001}[unit]
                cols[name] = [None if v is None else int(v * scale) for v in col.to_pylist()]
            else:
                cols[name] = col.to_pylist()
        conds = {v: Evaluator(v, self.define[v]) for v in self.vars}
        ends = [*starts[1:], rows.num_rows]
        out_rows: list[int] = []
        out_match: list[int] = []
        out_var: list[int] = []
        tails: dict[int, int] = {}
        n_matches = 0
        for p, (ps, pe) in enumerate(zip(starts, ends, strict=True)):
            pos = ps
            while pos < pe:
                res = match_at(self.items, conds, cols, pos, pe)
                if res is None:
                    pos += 1
                    continue
                if res == "pending":
                    if self._timed_out(times, pos, wm):
                        pos += 1
                        continue
                    tails[p] = pos
                    break
                assert isinstance(res, list)
                last = pos + len(res) - 1
                if self._timed_out(times, pos, int(times[last])):
                    pos += 1
                    continue
                for k, var in enumerate(res):
                    out_rows.append(pos + k)
                    out_match.append(n_matches)
                    out_var.append(self.vars.index(var))
                n_matches += 1
                labels = res
                start = pos
                pos = self._skip(
                    start,
                    last + 1,
                    functools.partial(_rows_of, start, labels),
                )
        return (
            (
                np.array(out_rows, dtype=np.int64),
                np.array(out_match, dtype=np.int64),
                np.array(out_var, dtype=np.int32),
            ),
            tails,
        )

    # -- measures -----------------------------------------------------------------------------

    def _labelled_empty(self) -> pa.Table:
        assert self._schema is not None
        empty = self._schema.empty_table()
        empty = empty.append_column("__match", pa.array([], pa.int64()))
        empty = empty.append_column("__var", pa.array([], pa.int32()))
        return empty.append_column("__pos", pa.array([], pa.int64()))

    def _measures(self, schema: pa.Schema) -> str:
        """One GROUP BY over the labelled rows: partition columns, then the measures."""
        types = {f.name: f.type for f in schema}
        selects = [f"first({quote(k)}) AS {quote(k)}" for k in self.keys]
        for name, node in self.spec.measures.items():
            sql = to_duckdb(_measure_tree(node.copy(), self.vars, types, self.time_col))
            selects.append(f"{sql} AS {quote(name)}")
        ranks = (
            "row_number() OVER (PARTITION BY __match, __var ORDER BY __pos) - 1 AS __vr, "
            "row_number() OVER (PARTITION BY __match, __var ORDER BY __pos DESC) - 1 AS __vrr, "
            "row_number() OVER (PARTITION BY __match ORDER BY __pos) - 1 AS __r, "
            "row_number() OVER (PARTITION BY __match ORDER BY __pos DESC) - 1 AS __rr"
        )
        return (
            f"WITH l AS (SELECT *, {ranks} FROM rows) "
            f"SELECT {', '.join(selects)} FROM l GROUP BY __match ORDER BY __match"
        )

    # -- state --------------------------------------------------------------------------------

    @property
    def state_rows(self) -> int:
        """Rows held: buffered and in partial matches."""
        pending = sum(t.num_rows for t in self._pending)
        return pending + (self._tail.num_rows if self._tail is not None else 0)

    def snapshot(self) -> bytes:
        """Buffered rows and partial-match tails as one Arrow IPC stream."""
        parts = []
        schema = None
        if self._schema is not None:
            schema = pa.schema([*self._schema, pa.field(_SEQ, pa.int64())])
        for kind, tables in (("p", self._pending), ("t", [self._tail] if self._tail else [])):
            for t in tables:
                parts.append(t.append_column("__kind", pa.array([kind] * t.num_rows)))
        meta = {"fired": self._fired, "late_rows": self.late_rows, "seq": self._seq}
        if parts:
            table = pa.concat_tables(parts)
        elif schema is not None:
            table = schema.append(pa.field("__kind", pa.string())).empty_table()
        else:
            table = pa.table({"__kind": pa.array([], pa.string())})
        table = table.replace_schema_metadata({b"fluvial.match_state": json.dumps(meta).encode()})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return bytes(sink.getvalue().to_pybytes())

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's."""
        try:
            table = pa.ipc.open_stream(data).read_all()
            meta = json.loads((table.schema.metadata or {})[b"fluvial.match_state"])
        except (pa.ArrowInvalid, KeyError, ValueError) as exc:
            raise PipelineError(f"not a MATCH_RECOGNIZE snapshot: {exc}") from exc
        self._fired = meta["fired"]
        self.late_rows = int(meta["late_rows"])
        self._seq = int(meta["seq"])
        self._pending, self._tail = [], None
        if table.num_columns > 1:
            data_cols = [c for c in table.column_names if c != "__kind"]
            self._schema = None
            self._bind(pa.schema([table.schema.field(c) for c in data_cols if c != _SEQ]))
            kind = table.column("__kind")
            pending = table.filter(pc.equal(kind, "p")).select(data_cols)
            tail = table.filter(pc.equal(kind, "t")).select(data_cols)
            self._pending = [pending] if pending.num_rows else []
            self._tail = tail if tail.num_rows else None


def _spans_of(spans: dict[str, list[int]], var: str) -> list[int]:
    return sorted(spans.get(var, []))


def _rows_of(start: int, labels: list[str], var: str) -> list[int]:
    return [start + k for k, x in enumerate(labels) if x == var]


def _segment(seg_end: np.ndarray, position: int) -> int:
    """The partition of a text position (``seg_end[p]`` is partition p's separator)."""
    return int(seg_end.searchsorted(position, side="left"))


def _expand_groups(
    first: list[int], end: list[int], var: list[int], match: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row of every matched group: (row, match number, variable), in group order.

    >>> rows, matches, variables = _expand_groups([3, 7], [5, 8], [0, 1], [0, 0])
    >>> rows.tolist(), matches.tolist(), variables.tolist()
    ([3, 4, 7], [0, 0, 0], [0, 0, 1])
    """
    lo = np.asarray(first, dtype=np.int64)
    lengths = np.asarray(end, dtype=np.int64) - lo
    total = int(lengths.sum()) if len(lengths) else 0
    group_start = np.cumsum(lengths) - lengths  # where each group's rows begin in the output
    rows = np.repeat(lo - group_start, lengths) + np.arange(total, dtype=np.int64)
    matches = np.repeat(np.asarray(match, dtype=np.int64), lengths)
    variables = np.repeat(np.asarray(var, dtype=np.int32), lengths)
    return rows, matches, variables


def _partition_starts(rows: pa.Table, keys: Sequence[str]) -> list[int]:
    n = rows.num_rows
    if n == 0:
        return []
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for k in keys:
        col = rows.column(k).combine_chunks()
        prev, cur = col.slice(0, n - 1), col.slice(1)
        differ = pc.fill_null(pc.not_equal(prev, cur), True)
        nulls = pc.and_(pc.is_null(prev), pc.is_null(cur))
        differ = pc.and_(differ, pc.invert(nulls))
        change[1:] |= differ.to_numpy(zero_copy_only=False)
    return np.flatnonzero(change).tolist()


# -- DEFINE and MEASURES translation ----------------------------------------------------------


def _define_sql(var: str, cond: exp.Expression, position: int) -> str:
    """A context-free DEFINE condition as DuckDB SQL at a match position (PREV is NULL
    for the first rows of a match)."""
    tree = cond.copy()
    for node in list(tree.find_all(exp.Anonymous)):
        if node.name.upper() == "PREV":
            name, n = prev_args(node)
            sql = "NULL" if position < n else f"lag({quote(name)}, {n}) OVER __w"
            node.replace(raw(sql))
    for col in list(tree.find_all(exp.Column)):
        if col.table == var:
            col.set("table", None)
    return to_duckdb(tree)


def duckdb_type_of_arrow(typ: pa.DataType) -> str:
    """The DuckDB name of an Arrow integer type (SUM and AVG keep it, as in Flink)."""
    names = {8: "TINYINT", 16: "SMALLINT", 32: "INTEGER", 64: "BIGINT"}
    return names[typ.bit_width] if pa.types.is_signed_integer(typ) else "BIGINT"


def _strip(node: exp.Expression) -> str:
    tree = node.copy()
    for col in list(tree.find_all(exp.Column)):
        col.set("table", None)
    return to_duckdb(tree)


def _measure_tree(
    tree: exp.Expression, variables: list[str], types: dict[str, pa.DataType], time_col: str
) -> exp.Expression:
    def where(var: str | None, extra: str = "") -> str:
        conds = [f"__var = {variables.index(var)}"] if var is not None else []
        if extra:
            conds.append(extra)
        return f" FILTER (WHERE {' AND '.join(conds)})" if conds else ""

    def rewrite(node: exp.Expression) -> exp.Expression:
        if is_nav(node, "MATCH_ROWTIME"):
            return raw(f"max({quote(time_col)})")
        if is_nav(node, "FIRST", "LAST"):
            assert isinstance(node, exp.Anonymous)
            args = node.expressions
            offset = int(args[1].name) if len(args) > 1 else 0
            var = var_of(args[0], variables)
            rank = (
                ("__vr" if var else "__r")
                if node.name.upper() == "FIRST"
                else ("__vrr" if var else "__rr")
            )
            return raw(f"first({_strip(args[0])}){where(var, f'{rank} = {offset}')}")
        if isinstance(node, AGGS):
            arg = node.this
            if isinstance(arg, exp.Star) or (
                isinstance(arg, exp.Column) and isinstance(arg.this, exp.Star)
            ):
                var = arg.table or None if isinstance(arg, exp.Column) else None
                return raw(f"count(*){where(var)}")
            var = var_of(arg, variables)
            inner = _strip(arg)
            name = type(node).__name__.lower()
            sql = f"{name}({inner}){where(var)}"
            typ = types.get(arg.name) if isinstance(arg, exp.Column) else None
            if typ is not None and pa.types.is_integer(typ):
                target = duckdb_type_of_arrow(typ)
                if isinstance(node, exp.Avg):
                    sql = f"CAST(trunc({sql}) AS {target})"
                elif isinstance(node, exp.Sum):
                    sql = f"CAST({sql} AS {target})"
            if isinstance(node, exp.Count):
                sql = f"count({inner}){where(var)}"
            return raw(sql)
        if isinstance(node, exp.Column):
            var = node.table or None
            if var is not None and var not in variables:
                raise UnsupportedSqlError(f"{var} in {node.sql()} is not a pattern variable")
            rank = "__vrr" if var else "__rr"
            return raw(f"first({quote(node.name)}){where(var, f'{rank} = 0')}")
        return node

    return tree.transform(rewrite, copy=False)
