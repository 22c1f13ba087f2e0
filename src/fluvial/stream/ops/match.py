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
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from fluvial.errors import PipelineError, UnsupportedSqlError
from fluvial.stream.ops.assign import epoch_ms
from fluvial.stream.sql.intervals import interval_ms
from fluvial.stream.sql.match_recognize import Concat, MatchRecognize, Quantified, Var
from fluvial.stream.sql.translate import to_duckdb

__all__ = ["MatchRecognizeOperator"]

_SEQ = "__seq"
_SEP = "\x00"
_END = "(?=\x00)"  # the end of a partition's rows
_MAX_CODES = 50_000  # distinct row classes (code points below the surrogate range)
_AGGS = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max)


@dataclass(frozen=True)
class _Item:
    """One element of the (flat) pattern: a variable and its quantifier."""

    var: str
    min: int
    max: int | None
    reluctant: bool

    @property
    def greedy(self) -> bool:
        return not self.reluctant and self.max != self.min


def _items(spec: MatchRecognize) -> list[_Item]:
    nodes = spec.pattern.items if isinstance(spec.pattern, Concat) else (spec.pattern,)
    out = []
    for node in nodes:
        if isinstance(node, Var):
            out.append(_Item(node.name, 1, 1, False))
        elif isinstance(node, Quantified) and isinstance(node.this, Var):
            out.append(_Item(node.this.name, node.min, node.max, node.reluctant))
        else:
            raise UnsupportedSqlError("MATCH_RECOGNIZE supports sequences of variables only")
    return out


def _q(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def _raw(sql: str) -> exp.Expression:
    return exp.Var(this=sql)


def _column_vars(node: exp.Expression) -> set[str | None]:
    return {c.table or None for c in node.find_all(exp.Column)}


def _prev_args(node: exp.Anonymous) -> tuple[str, int]:
    args = node.expressions
    col = args[0] if args else None
    if not isinstance(col, exp.Column) or col.table:
        raise UnsupportedSqlError(
            "PREV needs an unqualified column, PREV(col) or PREV(col, n) (Flink does not "
            f"support physical offsets within partition); found {node.sql()}"
        )
    n = 1
    if len(args) > 1:
        lit = args[1]
        if not (isinstance(lit, exp.Literal) and not lit.is_string and lit.name.isdigit()):
            raise UnsupportedSqlError(f"PREV's offset must be a whole number, found {lit.sql()}")
        n = int(lit.name)
    return col.name, n


def _is_nav(node: Any, *names: str) -> bool:
    return isinstance(node, exp.Anonymous) and node.name.upper() in names


def _context_free(var: str, node: exp.Expression) -> bool:
    """Whether a DEFINE condition reads only the current row (and PREV)."""
    for n in node.walk():
        if isinstance(n, _AGGS) or _is_nav(n, "FIRST", "LAST"):
            return False
        if isinstance(n, exp.Column) and n.table and n.table != var:
            return False
    return True


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
        self.items = _items(spec)
        self.vars = list(dict.fromkeys(i.var for i in self.items))
        self.keys = tuple(spec.partition_by)
        self.order = [(c, asc) for c, asc in spec.order_by[1:]]
        self.define = {v: spec.define.get(v, exp.true()) for v in self.vars}
        self.prev_depth = 0
        for cond in self.define.values():
            for n in cond.find_all(exp.Anonymous):
                if n.name.upper() == "PREV":
                    self.prev_depth = max(self.prev_depth, _prev_args(n)[1])
        #: the vectorized matcher applies (else the backtracking one)
        context_free = all(_context_free(v, c) for v, c in self.define.items())
        if vectorized and not context_free:
            raise PipelineError("the vectorized matcher needs context-free DEFINE conditions")
        self.vectorized = context_free if vectorized is None else vectorized
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
        order = [*(_q(k) for k in self.keys), _q(self.time_col)]
        order += [f"{_q(c)} {'ASC' if asc else 'DESC'}" for c, asc in self.order]
        order.append(_q(_SEQ))
        return self._sql(
            f"SELECT *{extra} FROM rows ORDER BY {', '.join(order)}", rows, window=True
        )

    def _sql(self, sql: str, table: pa.Table, window: bool = False) -> pa.Table:
        if window:
            by = ", ".join(_q(k) for k in self.keys)
            order = [
                _q(self.time_col),
                *(f"{_q(c)} {'ASC' if a else 'DESC'}" for c, a in self.order),
            ]
            part = f"PARTITION BY {by} " if by else ""
            sql = (
                sql.replace(
                    " FROM rows",
                    f" FROM rows WINDOW __w AS ({part}ORDER BY {', '.join(order)}, {_q(_SEQ)})",
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
        conds = {v: _Evaluator(v, self.define[v]) for v in self.vars}
        ends = [*starts[1:], rows.num_rows]
        out_rows: list[int] = []
        out_match: list[int] = []
        out_var: list[int] = []
        tails: dict[int, int] = {}
        n_matches = 0
        for p, (ps, pe) in enumerate(zip(starts, ends, strict=True)):
            pos = ps
            while pos < pe:
                res = _match_at(self.items, conds, cols, pos, pe)
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
        selects = [f"first({_q(k)}) AS {_q(k)}" for k in self.keys]
        for name, node in self.spec.measures.items():
            sql = to_duckdb(_measure_tree(node.copy(), self.vars, types, self.time_col))
            selects.append(f"{sql} AS {_q(name)}")
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
            name, n = _prev_args(node)
            sql = "NULL" if position < n else f"lag({_q(name)}, {n}) OVER __w"
            node.replace(_raw(sql))
    for col in list(tree.find_all(exp.Column)):
        if col.table == var:
            col.set("table", None)
    return to_duckdb(tree)


def duckdb_type_of_arrow(typ: pa.DataType) -> str:
    """The DuckDB name of an Arrow integer type (SUM and AVG keep it, as in Flink)."""
    names = {8: "TINYINT", 16: "SMALLINT", 32: "INTEGER", 64: "BIGINT"}
    return names[typ.bit_width] if pa.types.is_signed_integer(typ) else "BIGINT"


def _var_of(node: exp.Expression, variables: list[str]) -> str | None:
    tables = _column_vars(node)
    named = {t for t in tables if t is not None}
    if len(named) > 1:
        raise UnsupportedSqlError(
            f"{node.sql()} mixes variables {sorted(named)}; a navigation or aggregate reads "
            "one variable"
        )
    var = next(iter(named), None)
    if var is not None and var not in variables:
        raise UnsupportedSqlError(f"{var} in {node.sql()} is not a pattern variable")
    return var


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
        if _is_nav(node, "MATCH_ROWTIME"):
            return _raw(f"max({_q(time_col)})")
        if _is_nav(node, "FIRST", "LAST"):
            assert isinstance(node, exp.Anonymous)
            args = node.expressions
            offset = int(args[1].name) if len(args) > 1 else 0
            var = _var_of(args[0], variables)
            rank = (
                ("__vr" if var else "__r")
                if node.name.upper() == "FIRST"
                else ("__vrr" if var else "__rr")
            )
            return _raw(f"first({_strip(args[0])}){where(var, f'{rank} = {offset}')}")
        if isinstance(node, _AGGS):
            arg = node.this
            if isinstance(arg, exp.Star) or (
                isinstance(arg, exp.Column) and isinstance(arg.this, exp.Star)
            ):
                var = arg.table or None if isinstance(arg, exp.Column) else None
                return _raw(f"count(*){where(var)}")
            var = _var_of(arg, variables)
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
            return _raw(sql)
        if isinstance(node, exp.Column):
            var = node.table or None
            if var is not None and var not in variables:
                raise UnsupportedSqlError(f"{var} in {node.sql()} is not a pattern variable")
            rank = "__vrr" if var else "__rr"
            return _raw(f"first({_q(node.name)}){where(var, f'{rank} = 0')}")
        return node

    return tree.transform(rewrite, copy=False)


# -- the backtracking matcher -----------------------------------------------------------------


def _match_at(
    items: Sequence[_Item],
    conds: dict[str, _Evaluator],
    cols: dict[str, list[Any]],
    start: int,
    end: int,
) -> list[str] | str | None:
    """The labels of the match starting at ``start``; None if none can start there;
    ``"pending"`` if the rows so far cannot decide."""

    def run(i: int, labels: list[str]) -> list[str] | str | None:
        if i == len(items):
            return labels
        item = items[i]
        if item.reluctant and item.min == 0:  # reluctant: the empty loop first
            res = run(i + 1, list(labels))
            if res is not None:
                return res
        taken: list[str] = list(labels)
        count = 0
        hit_end = False
        while item.max is None or count < item.max:
            r = start + len(taken)
            if r >= end:
                hit_end = True
                break
            if not conds[item.var](cols, r, start, taken):
                break
            taken.append(item.var)
            count += 1
            if item.reluctant and count >= item.min:
                res = run(i + 1, list(taken))
                if res is not None:
                    return res
        if item.reluctant:
            return "pending" if hit_end else None
        # greedy or exact: the loop keeps every row it accepts (Flink's greedy NFA edges)
        if hit_end:
            return "pending"
        if count < item.min:
            return None
        return run(i + 1, taken)

    return run(0, [])


class _Evaluator:
    """A DEFINE condition evaluated in Python with the partial match as context."""

    def __init__(self, var: str, cond: exp.Expression) -> None:
        self.var = var
        self.cond = cond
        for n in cond.walk():
            if not isinstance(n, _SUPPORTED) and not _is_nav(n, "FIRST", "LAST", "PREV"):
                raise UnsupportedSqlError(
                    f"{n.key.upper()} is not supported in a DEFINE condition that reads other "
                    f"variables ({cond.sql()})"
                )

    def __call__(self, cols: dict[str, list[Any]], row: int, start: int, labels: list[str]) -> bool:
        return self._eval(self.cond, cols, row, start, labels) is True

    def _rows(self, var: str | None, row: int, start: int, labels: list[str]) -> list[int]:
        got = [start + k for k, v in enumerate(labels) if var is None or v == var]
        if var is None or var == self.var:
            got.append(row)
        return got

    def _eval(
        self, n: exp.Expression, cols: dict[str, list[Any]], row: int, start: int, labels: list[str]
    ) -> Any:
        ev = self._eval
        if isinstance(n, exp.Paren):
            return ev(n.this, cols, row, start, labels)
        if isinstance(n, exp.Boolean):
            return bool(n.this)
        if isinstance(n, exp.Null):
            return None
        if isinstance(n, exp.Literal):
            if n.is_string:
                return n.name
            return float(n.name) if "." in n.name or "e" in n.name.lower() else int(n.name)
        if isinstance(n, exp.Interval):
            return interval_ms(n)
        if isinstance(n, exp.Column):
            var = n.table or None
            if var is None or var == self.var:
                return cols[n.name][row]
            got = self._rows(var, row, start, labels)
            return cols[n.name][got[-1]] if got else None
        if isinstance(n, exp.Anonymous):
            name = n.name.upper()
            args = n.expressions
            if name == "PREV":
                col, k = _prev_args(n)
                return cols[col][row - k] if row - k >= start else None
            var = _var_of(args[0], [self.var, *(c.table for c in args[0].find_all(exp.Column))])
            got = self._rows(var, row, start, labels)
            off = int(args[1].name) if len(args) > 1 else 0
            if off >= len(got):
                return None
            at = got[off] if name == "FIRST" else got[-1 - off]
            return self._eval(_unqualified(args[0]), cols, at, start, labels)
        if isinstance(n, _AGGS):
            arg = n.this
            var = (
                None
                if isinstance(arg, exp.Star)
                else _var_of(arg, [self.var, *(c.table for c in arg.find_all(exp.Column))])
            )
            got = self._rows(var, row, start, labels)
            if isinstance(arg, exp.Star):
                return len(got)
            vals = [self._eval(_unqualified(arg), cols, r, start, labels) for r in got]
            vals = [v for v in vals if v is not None]
            if isinstance(n, exp.Count):
                return len(vals)
            if not vals:
                return None
            if isinstance(n, exp.Sum):
                return sum(vals)
            if isinstance(n, exp.Min):
                return min(vals)
            if isinstance(n, exp.Max):
                return max(vals)
            avg = sum(vals) / len(vals)
            return int(avg) if all(isinstance(v, int) for v in vals) else avg
        if isinstance(n, exp.Not):
            v = ev(n.this, cols, row, start, labels)
            return None if v is None else not v
        if isinstance(n, exp.And):
            a, b = ev(n.this, cols, row, start, labels), ev(n.expression, cols, row, start, labels)
            if a is False or b is False:
                return False
            return None if a is None or b is None else True
        if isinstance(n, exp.Or):
            a, b = ev(n.this, cols, row, start, labels), ev(n.expression, cols, row, start, labels)
            if a is True or b is True:
                return True
            return None if a is None or b is None else False
        if isinstance(n, exp.Is):
            v = ev(n.this, cols, row, start, labels)
            return v is None
        if isinstance(n, exp.Neg):
            v = ev(n.this, cols, row, start, labels)
            return None if v is None else -v
        a, b = ev(n.this, cols, row, start, labels), ev(n.expression, cols, row, start, labels)
        if a is None or b is None:
            return None
        return _BINARY[type(n)](a, b)


def _unqualified(node: exp.Expression) -> exp.Expression:
    tree = node.copy()
    for col in list(tree.find_all(exp.Column)):
        col.set("table", None)
    return tree


def _div(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        return None if b == 0 else int(a / b)
    return a / b


_BINARY: dict[type[exp.Expression], Callable[[Any, Any], Any]] = {
    exp.EQ: lambda a, b: a == b,
    exp.NEQ: lambda a, b: a != b,
    exp.GT: lambda a, b: a > b,
    exp.GTE: lambda a, b: a >= b,
    exp.LT: lambda a, b: a < b,
    exp.LTE: lambda a, b: a <= b,
    exp.Add: lambda a, b: a + b,
    exp.Sub: lambda a, b: a - b,
    exp.Mul: lambda a, b: a * b,
    exp.Div: _div,
    exp.Mod: lambda a, b: a % b,
}
_SUPPORTED: tuple[type, ...] = (
    exp.Paren,
    exp.Boolean,
    exp.Null,
    exp.Literal,
    exp.Interval,
    exp.Column,
    exp.Identifier,
    exp.Star,
    exp.Var,
    exp.Not,
    exp.And,
    exp.Or,
    exp.Is,
    exp.Neg,
    *_AGGS,
    *_BINARY,
)
