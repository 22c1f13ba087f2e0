"""Column lineage from SQL: for each output column, the input columns and how they were used.

sqlglot's :func:`sqlglot.lineage.lineage` walks a query's scopes (CTEs, subqueries, set
operations, views given as *sources*) from every output column down to the table columns it
reads. Each step from a select expression to a column it references is classified the way
OpenLineage's ``columnLineage`` facet (1-2-0) describes it:

- ``DIRECT / IDENTITY``: the column itself (``SELECT a``, ``SELECT a AS b``);
- ``DIRECT / TRANSFORMATION``: the value is computed from the column (``a + 1``, ``upper(a)``,
  ``CASE … THEN a``);
- ``DIRECT / AGGREGATION``: the column is an argument of an aggregate (``sum(a)``);
- ``INDIRECT / CONDITIONAL``: the column only decides which value is taken (``CASE WHEN a …``);
- ``INDIRECT / FILTER``: the column is in an aggregate's ``FILTER (WHERE …)``;
- ``INDIRECT / WINDOW``: the column partitions or orders a window (``OVER (PARTITION BY a)``).

A path through several scopes keeps the strongest step: an aggregate of a transformed column
is an ``AGGREGATION``; any indirect step makes the whole path indirect. ``masking`` marks a
hash (``md5``, ``sha256``, ``hash``…) or a ``count`` on the way.

>>> lin = column_lineage("SELECT user_id, sum(amount * 2) AS total FROM raw.orders GROUP BY 1")
>>> [(f.table, f.column, f.subtypes) for f in lin["total"]]
[('raw.orders', 'amount', ('AGGREGATION',))]
>>> [(f.table, f.column, f.subtypes) for f in lin["user_id"]]
[('raw.orders', 'user_id', ('IDENTITY',))]
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import DialectType
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.lineage import Node, lineage

from fluvial.errors import SqlError

__all__ = ["InputField", "Transformation", "column_lineage", "sqlglot_schema"]

#: functions whose result hides the input value (OpenLineage's ``masking``)
MASKING_FUNCTIONS = frozenset(
    {"MD5", "SHA", "SHA1", "SHA2", "SHA256", "SHA512", "HASH", "MURMUR3", "XXHASH64"}
)
MASKING_AGGREGATES: tuple[type[exp.Expr], ...] = (exp.Count, exp.CountIf)

_RANK = {"IDENTITY": 0, "TRANSFORMATION": 1, "AGGREGATION": 2}


@dataclass(frozen=True, order=True)
class Transformation:
    """How an input column reaches an output column (OpenLineage's ``transformations`` item)."""

    type: str  # DIRECT | INDIRECT
    subtype: str  # IDENTITY | TRANSFORMATION | AGGREGATION | CONDITIONAL | FILTER | WINDOW
    masking: bool = False
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the facet."""
        return {
            "type": self.type,
            "subtype": self.subtype,
            "description": self.description,
            "masking": self.masking,
        }


@dataclass(frozen=True)
class InputField:
    """One input column of an output column: ``table`` as the SQL names it, e.g. ``raw.orders``."""

    table: str
    column: str
    transformations: tuple[Transformation, ...] = field(default_factory=tuple)

    @property
    def subtypes(self) -> tuple[str, ...]:
        return tuple(t.subtype for t in self.transformations)


def sqlglot_schema(schemas: Mapping[str, pa.Schema | Sequence[str]]) -> dict[str, Any]:
    """A sqlglot schema mapping (nested by ``db.table``) from table names to their columns.

    Only the most common depth is kept (sqlglot wants one depth): ``raw.events`` and
    ``refined.clicks`` nest as ``{raw: {events: …}}``; one-part names stay flat.

    >>> sqlglot_schema({"raw.e": pa.schema([("a", pa.int64())])})
    {'raw': {'e': {'a': 'UNKNOWN'}}}
    """
    by_depth: dict[int, list[tuple[list[str], list[str]]]] = {}
    for name, schema in schemas.items():
        parts = name.split(".")
        columns = list(schema.names) if isinstance(schema, pa.Schema) else list(schema)
        by_depth.setdefault(len(parts), []).append((parts, columns))
    if not by_depth:
        return {}
    depth = max(by_depth, key=lambda d: (len(by_depth[d]), -d))
    mapping: dict[str, Any] = {}
    for parts, columns in by_depth[depth]:
        node = mapping
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = {c: "UNKNOWN" for c in columns}
    return mapping


def column_lineage(
    sql: str | exp.Expr,
    *,
    dialect: DialectType = "duckdb",
    schemas: Mapping[str, pa.Schema | Sequence[str]] | None = None,
    sources: Mapping[str, str | exp.Expr] | None = None,
    output_columns: Sequence[str] | None = None,
) -> dict[str, list[InputField]]:
    """For each output column of the SELECT *sql*, its input columns, in output order.

    *schemas* (table name → columns) lets ``*`` expand and unqualified columns of a join
    resolve; *sources* are views (name → query) expanded in place; *output_columns* renames
    the outputs by position (the target table's columns of an ``INSERT``).

    Raises:
        SqlError: *sql* does not parse, or its columns cannot be traced (says where).
    """
    try:
        tree = sqlglot.parse_one(sql, dialect=dialect) if isinstance(sql, str) else sql
        nodes = lineage(
            None,
            tree,
            schema=sqlglot_schema(schemas or {}),
            sources=dict(sources) if sources else None,
            dialect=dialect,
        )
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        raise SqlError(
            f"cannot read the SQL for column lineage: {first.get('description') or exc}",
            line=first.get("line"),
            column=first.get("col"),
        ) from exc
    except SqlglotError as exc:
        raise SqlError(f"cannot trace column lineage: {exc}") from exc
    assert isinstance(nodes, dict)
    names = list(nodes)
    if output_columns is not None and len(output_columns) == len(names):
        names = list(output_columns)
    spelling = _spellings(schemas or {})
    result = {
        name: [_respell(f, spelling) for f in _inputs(node)]
        for name, node in zip(names, nodes.values(), strict=True)
    }
    if output_columns is None:
        result = {_output_name(name, tree, inputs): inputs for name, inputs in result.items()}
    return result


def _output_name(name: str, tree: exp.Expr, inputs: list[InputField]) -> str:
    """*name* as the query spells it (sqlglot folds case): its alias, or the column of a
    ``*`` as the schema spells it."""
    if isinstance(tree, exp.Query):
        for item in tree.selects:
            if item.alias_or_name.lower() == name.lower() and item.alias_or_name != "*":
                return item.alias_or_name
    same = {f.column for f in inputs if f.column.lower() == name.lower()}
    return same.pop() if len(same) == 1 else name


def _spellings(
    schemas: Mapping[str, pa.Schema | Sequence[str]],
) -> dict[tuple[str, str], str]:
    """(table, column) lower-cased → the column as the schema spells it."""
    out: dict[tuple[str, str], str] = {}
    for table, schema in schemas.items():
        columns = schema.names if isinstance(schema, pa.Schema) else schema
        for column in columns:
            out[(table.lower(), column.lower())] = column
    return out


def _respell(f: InputField, spelling: Mapping[tuple[str, str], str]) -> InputField:
    """*f* with its column spelled as its table's schema spells it (SQL folds case)."""
    column = spelling.get((f.table.lower(), f.column.lower()))
    return f if column is None or column == f.column else replace(f, column=column)


# --------------------------------------------------------------------------- paths


def _inputs(root: Node) -> list[InputField]:
    found: dict[tuple[str, str], set[Transformation]] = {}
    for leaf, steps in _paths(root, []):
        key = (_table_name(leaf.expression), leaf.name.rsplit(".", 1)[-1])
        for combo in itertools.product(*steps):
            found.setdefault(key, set()).add(_combine(combo))
    return [
        InputField(table, column, tuple(sorted(found[(table, column)])))
        for table, column in sorted(found)
    ]


def _paths(
    node: Node, steps: list[list[Transformation]]
) -> Iterator[tuple[Node, list[list[Transformation]]]]:
    if isinstance(node.expression, exp.Table):
        yield node, steps
        return
    for child in node.downstream:
        yield from _paths(child, [*steps, _step(node.expression, child)])


def _table_name(table: exp.Expr) -> str:
    assert isinstance(table, exp.Table)
    return ".".join(part.name for part in table.parts)


def _combine(steps: Sequence[Transformation]) -> Transformation:
    masking = any(s.masking for s in steps)
    indirect = [s for s in steps if s.type == "INDIRECT"]
    if indirect:  # the step nearest the output says how it is used
        return Transformation("INDIRECT", indirect[0].subtype, masking)
    subtype = max((s.subtype for s in steps), key=_RANK.__getitem__, default="IDENTITY")
    return Transformation("DIRECT", subtype, masking)


# --------------------------------------------------------------------------- one step


def _step(expression: exp.Expr, child: Node) -> list[Transformation]:
    """The ways *expression* (a select item) uses the column *child* stands for."""
    body = expression.this if isinstance(expression, exp.Alias) else expression
    refs = [c for c in body.find_all(exp.Column) if _ref_name(c) == child.name.lower()]
    if not refs:  # a set operation's branch, or a column the expression reaches as a whole
        if isinstance(body, exp.Column):
            return [Transformation("DIRECT", "IDENTITY")]
        return [_classify(body, body)]
    return sorted({_classify(ref, body) for ref in refs})


def _ref_name(column: exp.Column) -> str:
    return (f"{column.table}.{column.name}" if column.table else column.name).lower()


def _classify(ref: exp.Expr, body: exp.Expr) -> Transformation:
    if ref is body:
        return Transformation("DIRECT", "IDENTITY")
    masking = False
    aggregated = False
    indirect: str | None = None
    child: exp.Expr = ref
    node = ref.parent
    while node is not None:
        if isinstance(node, exp.If | exp.Case) and child is node.args.get("this"):
            indirect = indirect or "CONDITIONAL"
        elif isinstance(node, exp.Filter) and child is node.args.get("expression"):
            indirect = indirect or "FILTER"
        elif isinstance(node, exp.Window) and child is not node.this:
            indirect = indirect or "WINDOW"
        if isinstance(node, exp.AggFunc):
            aggregated = True
            masking = masking or isinstance(node, MASKING_AGGREGATES)
        if _function_name(node) in MASKING_FUNCTIONS:
            masking = True
        if node is body:
            break
        child, node = node, node.parent
    if indirect is not None:
        return Transformation("INDIRECT", indirect, masking)
    return Transformation("DIRECT", "AGGREGATION" if aggregated else "TRANSFORMATION", masking)


def _function_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).upper()
    if isinstance(node, exp.Func):
        return node.sql_name().upper()
    return ""
