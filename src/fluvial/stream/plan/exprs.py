"""What the planner's parts share: a planned relation (:class:`Rel`) and small helpers
over sqlglot expressions (positions for errors, function names, qualifiers, quoting)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlglot import exp

from fluvial.stream.ops.spec import WindowSpec
from fluvial.stream.plan.nodes import BATCH, Source, Step
from fluvial.stream.sql import to_duckdb

__all__ = [
    "Rel",
    "and_parts",
    "call_args",
    "flink_detail",
    "func_name",
    "output_name",
    "quote",
    "select_sql",
    "unqualified",
    "where",
]


def where(node: exp.Expr | None) -> tuple[int | None, int | None]:
    """Line and start column of *node* (sqlglot keeps positions on identifiers)."""
    if node is None:
        return None, None
    for n in (node, *node.find_all(exp.Identifier)):
        meta = n.meta if isinstance(n, exp.Expression) else {}
        if meta and "line" in meta:
            col = meta.get("col")
            if col is not None and "start" in meta and "end" in meta:
                col = col - (meta["end"] - meta["start"])
            return meta["line"], col
    return None, None


def func_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).upper()
    if isinstance(node, exp.Func):
        return node.sql_name().upper()
    return ""


def call_args(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.Anonymous):
        return list(node.expressions)
    return [a for a in node.args.values() if isinstance(a, exp.Expression)]


def unqualified(node: exp.Expr) -> exp.Expression:
    """A copy with table qualifiers removed: every step reads one relation, ``batch``.

    ``page.url`` where ``page`` is a ROW column is a field access, kept as it is (DuckDB
    reads ``page.url`` of a struct column the same way)."""
    copy = node.copy()
    assert isinstance(copy, exp.Expression)
    for col in list(copy.find_all(exp.Column)):
        if col.meta.get("row_field"):
            continue
        col.set("table", None)
        col.set("db", None)
        col.set("catalog", None)
    return copy


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def output_name(node: exp.Expression, i: int) -> str:
    if isinstance(node, exp.Alias):
        return node.alias
    if isinstance(node, exp.Column):
        return node.name
    return f"EXPR${i}"


def and_parts(node: exp.Expression) -> list[exp.Expression]:
    """The AND-ed parts of a condition."""
    if isinstance(node, exp.And):
        return [*and_parts(node.this), *and_parts(node.expression)]
    if isinstance(node, exp.Paren) and isinstance(node.this, exp.And):
        return and_parts(node.this)
    return [node]


@dataclass
class Rel:
    """A planned relation: its scan, steps so far and output columns."""

    scan: Source
    steps: list[Step]
    columns: tuple[str, ...]
    rowtime: str | None
    aliases: set[str] = field(default_factory=set)
    #: a window TVF not yet consumed by a GROUP BY: (spec, time column)
    window: tuple[WindowSpec, str] | None = None
    #: over a join: alias -> {input column -> output column}
    scope: dict[str, dict[str, str]] = field(default_factory=dict)
    #: processing-time attributes (``PROCTIME()`` columns)
    proctime: set[str] = field(default_factory=set)
    #: columns holding a fired window's bounds (output -> window_start | window_end | …)
    window_props: dict[str, str] = field(default_factory=dict)
    #: the source itself emits updates (an outer regular join)
    updating: bool = False


def select_sql(
    items: Iterable[exp.Expr], names: Iterable[str], where: exp.Expression | None
) -> str:
    cols = []
    for e, n in zip(items, names, strict=True):
        inner = e.this if isinstance(e, exp.Alias) else e
        cols.append(f"{to_duckdb(unqualified(inner))} AS {quote(n)}")
    sql = f"SELECT {', '.join(cols)} FROM {BATCH}"
    if where is not None:
        sql += f" WHERE {to_duckdb(unqualified(where))}"
    return sql


def flink_detail(
    items: Iterable[exp.Expr], where: exp.Expression | None, names: Iterable[str] = ()
) -> str:
    sel = ", ".join(e.sql() for e in items)
    return f"select=[{sel}]" + (f", where=[{where.sql()}]" if where is not None else "")
