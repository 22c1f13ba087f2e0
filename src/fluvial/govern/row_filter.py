"""Row filter predicates: checked once, when a filter is set, so enforcement can trust them.

A predicate must parse as DuckDB SQL, be a boolean expression (a comparison, ``IN``,
``BETWEEN``, ``IS``, ``LIKE``, ``AND``/``OR``/``NOT`` or ``true``/``false``), and read only
the table's own columns, unqualified: no subqueries, no aggregates or window functions, no
parameters, no second statement. It is stored as sqlglot renders it.

>>> check_row_filter("country='DE' and  event_time > DATE '2026-01-01'", ["country", "event_time"])
"country = 'DE' AND event_time > CAST('2026-01-01' AS DATE)"
>>> check_row_filter("country IN (SELECT c FROM t)", ["country"])
Traceback (most recent call last):
...
fluvial.errors.UsageError: row filter 'country IN (SELECT c FROM t)': a subquery is not allowed; a filter reads only its own table's row
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from fluvial.errors import NotFoundError, UsageError, did_you_mean

__all__ = ["check_row_filter"]

_BOOLEAN = (exp.Predicate, exp.Connector, exp.Not, exp.Boolean)
_FORBIDDEN: tuple[tuple[Any, str], ...] = (
    (exp.Query, "a subquery is not allowed; a filter reads only its own table's row"),
    (exp.Exists, "a subquery is not allowed; a filter reads only its own table's row"),
    (exp.AggFunc, "an aggregate is not allowed; a filter looks at one row at a time"),
    (exp.Window, "a window function is not allowed; a filter looks at one row at a time"),
    (exp.Placeholder, "a parameter is not allowed; write the value itself"),
    (exp.Parameter, "a parameter is not allowed; write the value itself"),
    (exp.Star, "'*' is not allowed; name the columns"),
)


def check_row_filter(text: str, columns: Sequence[str]) -> str:
    """The canonical form of predicate *text* over a table with *columns*.

    Raises:
        UsageError: it does not parse, is not boolean, or uses something not allowed.
        NotFoundError: it names a column the table does not have.
    """
    where = f"row filter {text!r}"
    try:
        statements = sqlglot.parse(text, read="duckdb")
    except ParseError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid SQL"
        raise UsageError(f"{where} does not parse: {first}") from None
    trees = [s for s in statements if s is not None]
    if len(trees) != 1:
        raise UsageError(f"{where}: expected one boolean expression, found {len(trees)} statements")
    tree = trees[0]
    core: Any = tree
    for kind, why in _FORBIDDEN:
        if tree.find(kind) is not None:
            raise UsageError(f"{where}: {why}")
    while isinstance(core, exp.Paren):
        core = core.this
    if not isinstance(core, _BOOLEAN):
        raise UsageError(
            f"{where}: expected a boolean expression such as \"country = 'DE'\", found "
            f"{type(core).__name__.lower()} {core.sql(dialect='duckdb')!r}"
        )
    for column in tree.find_all(exp.Column):
        if column.table:
            raise UsageError(f"{where}: write column {column.name!r} without a table name")
        if column.name not in columns:
            raise NotFoundError(
                f"{where}: the table has no column '{column.name}'{did_you_mean(column.name, columns)}"
            )
    return tree.sql(dialect="duckdb")
