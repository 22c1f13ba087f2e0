"""What the Flink SQL front end produces: statements, column types and window TVFs.

A pipeline file is a :class:`Script` of statements. Queries (the bodies of ``CREATE VIEW``
and ``INSERT INTO … SELECT``) are sqlglot expression trees in which every window table
function (``FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))``) is a
:class:`WindowTVF` node, so passes can walk one tree with sqlglot's tools.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pyarrow as pa
from sqlglot import exp

__all__ = [
    "ColumnDef",
    "CreateTable",
    "CreateView",
    "DataType",
    "Insert",
    "Position",
    "Script",
    "SetOption",
    "Statement",
    "WatermarkDef",
    "WindowKind",
    "WindowTVF",
]

WindowKind = Literal["TUMBLE", "HOP", "CUMULATE", "SESSION"]


@dataclass(frozen=True)
class Position:
    """Where a construct starts in the source text (1-based)."""

    line: int
    column: int


@dataclass(frozen=True)
class DataType:
    """A Flink SQL type.

    ``name`` is the canonical upper-case name (BOOLEAN, TINYINT, SMALLINT, INT, BIGINT,
    FLOAT, DOUBLE, DECIMAL, STRING, BYTES, DATE, TIME, TIMESTAMP, TIMESTAMP_LTZ, ROW,
    ARRAY, MAP); ``VARCHAR(n)``/``CHAR(n)`` are STRING with ``params=(n,)``;
    ``DECIMAL(p, s)``, ``TIMESTAMP(p)`` keep their parameters.
    """

    name: str
    params: tuple[int, ...] = ()
    fields: tuple[tuple[str, DataType], ...] = ()  # ROW<name type, ...>
    element: DataType | None = None  # ARRAY<element>; MAP's key
    value: DataType | None = None  # MAP's value
    nullable: bool = True

    def to_arrow(self) -> pa.DataType:
        """The Arrow type Fluvial uses for this SQL type (timestamps in milliseconds)."""
        from fluvial.stream.sql.types import to_arrow

        return to_arrow(self)

    def sql(self) -> str:
        """Back to Flink SQL text."""
        from fluvial.stream.sql.types import type_sql

        return type_sql(self)


@dataclass(frozen=True)
class ColumnDef:
    """A physical column (``type``), or a computed one (``expr``: ``c AS expr``)."""

    name: str
    type: DataType | None
    expr: exp.Expression | None = None
    position: Position | None = None

    @property
    def computed(self) -> bool:
        return self.expr is not None


@dataclass(frozen=True)
class WatermarkDef:
    """``WATERMARK FOR column AS expr``; ``delay_ms`` when expr is ``column - INTERVAL …``
    (or just ``column``: 0), else None (then the expression is evaluated per row)."""

    column: str
    expr: exp.Expression
    delay_ms: int | None
    position: Position | None = None


@dataclass(frozen=True)
class CreateTable:
    name: str
    columns: tuple[ColumnDef, ...]
    options: dict[str, str]
    watermark: WatermarkDef | None = None
    primary_key: tuple[str, ...] = ()
    temporary: bool = False
    if_not_exists: bool = False
    position: Position | None = None
    #: ``PARTITIONED BY (a, b)``: a filesystem sink writes ``a=…/b=…/`` folders
    partition_by: tuple[str, ...] = ()

    @property
    def physical(self) -> tuple[ColumnDef, ...]:
        return tuple(c for c in self.columns if not c.computed)

    def physical_schema(self) -> pa.Schema:
        """The Arrow schema a source must produce: the physical columns, in order."""
        return pa.schema(
            [pa.field(c.name, c.type.to_arrow(), c.type.nullable) for c in self.physical if c.type]
        )


@dataclass(frozen=True)
class CreateView:
    name: str
    query: exp.Query
    temporary: bool = False
    position: Position | None = None


@dataclass(frozen=True)
class Insert:
    table: str
    query: exp.Query
    columns: tuple[str, ...] = ()  # INSERT INTO t (a, b) SELECT …
    overwrite: bool = False
    position: Position | None = None


@dataclass(frozen=True)
class SetOption:
    key: str
    value: str
    position: Position | None = None


Statement = CreateTable | CreateView | Insert | SetOption


@dataclass(frozen=True)
class Script:
    """A pipeline file: its statements in order (one job: a statement set of its INSERTs)."""

    statements: tuple[Statement, ...]
    source: str = ""  # file name, for messages
    text: str = ""

    @property
    def tables(self) -> dict[str, CreateTable]:
        return {s.name: s for s in self.statements if isinstance(s, CreateTable)}

    @property
    def views(self) -> dict[str, CreateView]:
        return {s.name: s for s in self.statements if isinstance(s, CreateView)}

    @property
    def inserts(self) -> list[Insert]:
        return [s for s in self.statements if isinstance(s, Insert)]

    @property
    def settings(self) -> dict[str, str]:
        return {s.key: s.value for s in self.statements if isinstance(s, SetOption)}


class WindowTVF(exp.Expression):
    """A window table function in FROM, as a node of the sqlglot tree.

    args:
        kind: "TUMBLE" | "HOP" | "CUMULATE" | "SESSION" (a str)
        this: the input relation — an ``exp.Table`` or an ``exp.Subquery``
        time_col: the DESCRIPTOR column name (a str)
        size_ms: window size (TUMBLE, HOP, CUMULATE max size)
        slide_ms: HOP's slide
        step_ms: CUMULATE's step
        gap_ms: SESSION's gap
        offset_ms: TUMBLE/HOP/CUMULATE's optional offset (0 by default)
        partition_by: SESSION's PARTITION BY column names (a list of str)
        alias: the relation alias, if any (a str)
    """

    arg_types: ClassVar[dict[str, Any]] = {
        "kind": True,
        "this": True,
        "time_col": True,
        "size_ms": False,
        "slide_ms": False,
        "step_ms": False,
        "gap_ms": False,
        "offset_ms": False,
        "partition_by": False,
        "alias": False,
    }

    @property
    def kind(self) -> WindowKind:
        kind: WindowKind = self.args["kind"]
        return kind
