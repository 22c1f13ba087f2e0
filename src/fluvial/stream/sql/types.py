"""Flink SQL types: parsing, Arrow types, Flink SQL text and DuckDB type names.

>>> t = parse_type("ROW<id BIGINT, name STRING NOT NULL>")
>>> t.sql()
'ROW<id BIGINT, name STRING NOT NULL>'
>>> to_arrow(parse_type("TIMESTAMP(3)"))
TimestampType(timestamp[ms])
>>> duckdb_type(parse_type("MAP<STRING, ARRAY<INT>>"))
'MAP(VARCHAR, INTEGER[])'
"""

from __future__ import annotations

import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from fluvial.errors import SqlError, UnsupportedSqlError
from fluvial.stream.sql.ast import DataType

__all__ = ["duckdb_type", "from_sqlglot", "parse_type", "to_arrow", "type_sql"]

# sqlglot's type enum → Flink's canonical name (data, not code).
_NAMES: dict[exp.DType, str] = {
    exp.DType.BOOLEAN: "BOOLEAN",
    exp.DType.TINYINT: "TINYINT",
    exp.DType.SMALLINT: "SMALLINT",
    exp.DType.INT: "INT",
    exp.DType.BIGINT: "BIGINT",
    exp.DType.FLOAT: "FLOAT",
    exp.DType.DOUBLE: "DOUBLE",
    exp.DType.DECIMAL: "DECIMAL",
    exp.DType.TEXT: "STRING",
    exp.DType.VARCHAR: "STRING",
    exp.DType.CHAR: "STRING",
    exp.DType.VARBINARY: "BYTES",
    exp.DType.BINARY: "BYTES",
    exp.DType.DATE: "DATE",
    exp.DType.TIME: "TIME",
    exp.DType.TIMESTAMP: "TIMESTAMP",
    exp.DType.TIMESTAMPLTZ: "TIMESTAMP_LTZ",
    exp.DType.STRUCT: "ROW",
    exp.DType.ARRAY: "ARRAY",
    exp.DType.MAP: "MAP",
}

_ARROW: dict[str, pa.DataType] = {
    "BOOLEAN": pa.bool_(),
    "TINYINT": pa.int8(),
    "SMALLINT": pa.int16(),
    "INT": pa.int32(),
    "BIGINT": pa.int64(),
    "FLOAT": pa.float32(),
    "DOUBLE": pa.float64(),
    "STRING": pa.string(),
    "BYTES": pa.binary(),
    "DATE": pa.date32(),
    "TIME": pa.time32("ms"),
}

_DUCKDB: dict[str, str] = {
    "BOOLEAN": "BOOLEAN",
    "TINYINT": "TINYINT",
    "SMALLINT": "SMALLINT",
    "INT": "INTEGER",
    "BIGINT": "BIGINT",
    "FLOAT": "FLOAT",
    "DOUBLE": "DOUBLE",
    "STRING": "VARCHAR",
    "BYTES": "BLOB",
    "DATE": "DATE",
    "TIME": "TIME",
    # Fluvial keeps Flink's TIMESTAMP(3) as milliseconds, like the Arrow schema.
    "TIMESTAMP": "TIMESTAMP_MS",
    "TIMESTAMP_LTZ": "TIMESTAMPTZ",
}

# Flink's defaults when a parameterized type is written bare.
_DEFAULT_PARAMS: dict[str, tuple[int, ...]] = {
    "DECIMAL": (10, 0),
    "TIMESTAMP": (6,),
    "TIMESTAMP_LTZ": (6,),
}


def parse_type(text: str) -> DataType:
    """Parse a Flink type (``BIGINT``, ``ROW<a INT>``, ``TIMESTAMP(3) WITH LOCAL TIME ZONE`` …)."""
    from fluvial.stream.sql.dialect import Flink

    text = text.strip()
    nullable = True
    if text.upper().endswith("NOT NULL"):
        text, nullable = text[: -len("NOT NULL")].rstrip(), False
    try:
        node = sqlglot.parse_one(text, read=Flink, into=exp.DataType)
    except ParseError as exc:
        raise SqlError(f"expected a Flink SQL type, found {text!r}") from exc
    dt = from_sqlglot(node)
    return dt if nullable else _with_nullable(dt, False)


def _with_nullable(dt: DataType, nullable: bool) -> DataType:
    return DataType(dt.name, dt.params, dt.fields, dt.element, dt.value, nullable)


def from_sqlglot(node: exp.DataType) -> DataType:
    """Convert sqlglot's type node (as parsed by the Flink dialect) to a :class:`DataType`."""
    kind = node.this
    name = _NAMES.get(kind)
    if name is None:
        raise UnsupportedSqlError(f"type {node.sql()} is not supported")
    nullable = node.args.get("nullable") is not False
    params = tuple(
        int(p.this.name) for p in node.expressions if isinstance(p, exp.DataTypeParam)
    ) or _DEFAULT_PARAMS.get(name, ())
    if name == "ROW":
        fields = []
        for field in node.expressions:
            if not isinstance(field, exp.ColumnDef) or not isinstance(
                field.args.get("kind"), exp.DataType
            ):
                raise SqlError(f"expected 'name TYPE' in ROW, found {field.sql()}")
            fields.append((field.name, from_sqlglot(field.args["kind"])))
        return DataType("ROW", fields=tuple(fields), nullable=nullable)
    if name == "ARRAY":
        return DataType("ARRAY", element=from_sqlglot(node.expressions[0]), nullable=nullable)
    if name == "MAP":
        key, value = node.expressions
        return DataType(
            "MAP", element=from_sqlglot(key), value=from_sqlglot(value), nullable=nullable
        )
    if name == "STRING" and kind != exp.DType.TEXT and not params:
        params = (1,) if kind == exp.DType.CHAR else ()
    return DataType(name, params=params, nullable=nullable)


def to_arrow(dt: DataType) -> pa.DataType:
    """The Arrow type of a Flink type (timestamps in milliseconds, LTZ with tz UTC)."""
    if dt.name in _ARROW:
        return _ARROW[dt.name]
    if dt.name == "TIMESTAMP":
        return pa.timestamp("ms")
    if dt.name == "TIMESTAMP_LTZ":
        return pa.timestamp("ms", tz="UTC")
    if dt.name == "DECIMAL":
        p, s = (*dt.params, 0)[:2]
        return pa.decimal128(p, s)
    if dt.name == "ROW":
        return pa.struct([pa.field(n, to_arrow(t), t.nullable) for n, t in dt.fields])
    if dt.name == "ARRAY" and dt.element:
        return pa.list_(pa.field("element", to_arrow(dt.element), dt.element.nullable))
    if dt.name == "MAP" and dt.element and dt.value:
        return pa.map_(to_arrow(dt.element), to_arrow(dt.value))
    raise UnsupportedSqlError(f"type {type_sql(dt)} has no Arrow mapping")


def type_sql(dt: DataType) -> str:
    """Flink SQL text of a type."""
    if dt.name == "ROW":
        body = ", ".join(f"{_ident(n)} {type_sql(t)}" for n, t in dt.fields)
        text = f"ROW<{body}>"
    elif dt.name == "ARRAY" and dt.element:
        text = f"ARRAY<{type_sql(dt.element)}>"
    elif dt.name == "MAP" and dt.element and dt.value:
        text = f"MAP<{type_sql(dt.element)}, {type_sql(dt.value)}>"
    elif dt.name == "STRING" and dt.params:
        text = f"VARCHAR({dt.params[0]})"
    elif dt.params:
        text = f"{dt.name}({', '.join(map(str, dt.params))})"
    else:
        text = dt.name
    return text if dt.nullable else f"{text} NOT NULL"


def duckdb_type(dt: DataType) -> str:
    """DuckDB type name of a Flink type (for CAST)."""
    if dt.name in _DUCKDB:
        if dt.name == "TIMESTAMP" and dt.params and dt.params[0] > 3:
            return "TIMESTAMP"
        return _DUCKDB[dt.name]
    if dt.name == "DECIMAL":
        p, s = (*dt.params, 0)[:2]
        return f"DECIMAL({p}, {s})"
    if dt.name == "ROW":
        return "STRUCT(" + ", ".join(f'"{n}" {duckdb_type(t)}' for n, t in dt.fields) + ")"
    if dt.name == "ARRAY" and dt.element:
        return f"{duckdb_type(dt.element)}[]"
    if dt.name == "MAP" and dt.element and dt.value:
        return f"MAP({duckdb_type(dt.element)}, {duckdb_type(dt.value)})"
    raise UnsupportedSqlError(f"type {type_sql(dt)} has no DuckDB mapping")


def _ident(name: str) -> str:
    return name if name.isidentifier() else f"`{name}`"
