"""MATCH_RECOGNIZE's backtracking matcher: for DEFINE conditions that read other variables
(``A.col`` in B's condition, ``FIRST/LAST``, aggregates over a variable's rows), a Python
matcher evaluates each condition row by row with the partial match as its context.

Correct for every pattern the parser accepts, but a per-row Python loop (tens of thousands
of rows per second): :mod:`fluvial.stream.ops.match` uses it only where its vectorized
matcher cannot say the pattern.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlglot import exp

from fluvial.errors import UnsupportedSqlError
from fluvial.stream.ops.match_terms import AGGS, Item, is_nav, prev_args, var_of
from fluvial.stream.sql.intervals import interval_ms

__all__ = ["Evaluator", "match_at"]


def match_at(
    items: Sequence[Item],
    conds: dict[str, Evaluator],
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


class Evaluator:
    """A DEFINE condition evaluated in Python with the partial match as context."""

    def __init__(self, var: str, cond: exp.Expression) -> None:
        self.var = var
        self.cond = cond
        for n in cond.walk():
            if not isinstance(n, _SUPPORTED) and not is_nav(n, "FIRST", "LAST", "PREV"):
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
                col, k = prev_args(n)
                return cols[col][row - k] if row - k >= start else None
            var = var_of(args[0], [self.var, *(c.table for c in args[0].find_all(exp.Column))])
            got = self._rows(var, row, start, labels)
            off = int(args[1].name) if len(args) > 1 else 0
            if off >= len(got):
                return None
            at = got[off] if name == "FIRST" else got[-1 - off]
            return self._eval(_unqualified(args[0]), cols, at, start, labels)
        if isinstance(n, AGGS):
            arg = n.this
            var = (
                None
                if isinstance(arg, exp.Star)
                else var_of(arg, [self.var, *(c.table for c in arg.find_all(exp.Column))])
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
    *AGGS,
    *_BINARY,
)
