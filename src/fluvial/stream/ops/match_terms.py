"""What MATCH_RECOGNIZE's matchers share: the pattern as a list of quantified variables,
and small helpers over DEFINE and MEASURES expressions (navigation calls, PREV's
arguments, which variable a column belongs to)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from fluvial.errors import UnsupportedSqlError
from fluvial.stream.sql.match_recognize import Concat, MatchRecognize, Quantified, Var

__all__ = [
    "AGGS",
    "Item",
    "column_vars",
    "context_free",
    "is_nav",
    "items_of",
    "prev_args",
    "quote",
    "raw",
    "var_of",
]

AGGS = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max)


@dataclass(frozen=True)
class Item:
    """One element of the (flat) pattern: a variable and its quantifier."""

    var: str
    min: int
    max: int | None
    reluctant: bool

    @property
    def greedy(self) -> bool:
        return not self.reluctant and self.max != self.min


def items_of(spec: MatchRecognize) -> list[Item]:
    nodes = spec.pattern.items if isinstance(spec.pattern, Concat) else (spec.pattern,)
    out = []
    for node in nodes:
        if isinstance(node, Var):
            out.append(Item(node.name, 1, 1, False))
        elif isinstance(node, Quantified) and isinstance(node.this, Var):
            out.append(Item(node.this.name, node.min, node.max, node.reluctant))
        else:
            raise UnsupportedSqlError("MATCH_RECOGNIZE supports sequences of variables only")
    return out


def quote(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def raw(sql: str) -> exp.Expression:
    return exp.Var(this=sql)


def column_vars(node: exp.Expression) -> set[str | None]:
    return {c.table or None for c in node.find_all(exp.Column)}


def prev_args(node: exp.Anonymous) -> tuple[str, int]:
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


def is_nav(node: Any, *names: str) -> bool:
    return isinstance(node, exp.Anonymous) and node.name.upper() in names


def context_free(var: str, node: exp.Expression) -> bool:
    """Whether a DEFINE condition reads only the current row (and PREV)."""
    for n in node.walk():
        if isinstance(n, AGGS) or is_nav(n, "FIRST", "LAST"):
            return False
        if isinstance(n, exp.Column) and n.table and n.table != var:
            return False
    return True


def var_of(node: exp.Expression, variables: list[str]) -> str | None:
    tables = column_vars(node)
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
