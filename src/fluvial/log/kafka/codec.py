"""Arrow rows ⇄ one JSON document per Kafka message, vectorized both ways.

Each row becomes one JSON object (``{"column": value, …}``), so any Kafka tool, and Apache
Flink's Kafka connector with ``'format' = 'json'``, can read the topic. Timestamps are
written as ISO-8601 UTC strings (``2026-11-24T10:00:00.123Z``: as many fraction digits as
the unit has), dates as ``YYYY-MM-DD``; structs are objects and lists are arrays.

Encoding: timestamps and dates are turned into strings column by column (recursing into
structs and lists), then Polars writes the whole batch as NDJSON and the text is split
on newlines (JSON escapes newlines inside strings, so one line is one row). Decoding
joins a poll's values with newlines and parses them in one go with ``pyarrow.json`` and
an explicit schema, then casts to the topic schema exactly (which also enforces its
non-null fields).

>>> import pyarrow as pa
>>> schema = pa.schema([("user", pa.string()), ("at", pa.timestamp("ms", tz="UTC"))])
>>> table = pa.table({"user": ["ann", None], "at": pa.array([0, 1500], schema.field("at").type)})
>>> values = encode_rows(table)
>>> values[0]
b'{"user":"ann","at":"1970-01-01T00:00:00.000Z"}'
>>> decode_rows(values, schema).equals(table)
True

JSON has no NaN or infinities: such floats are written as ``null``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from fluvial.errors import LogError

__all__ = [
    "check_json_schema",
    "decode_rows",
    "encode_rows",
    "schema_from_text",
    "schema_to_text",
]

_MIN_BLOCK = 1 << 20


def _unsupported(ty: pa.DataType) -> bool:
    return (
        pa.types.is_binary(ty)
        or pa.types.is_large_binary(ty)
        or pa.types.is_fixed_size_binary(ty)
        or pa.types.is_binary_view(ty)
        or pa.types.is_dictionary(ty)
        or pa.types.is_map(ty)
        or pa.types.is_union(ty)
        or pa.types.is_duration(ty)
        or pa.types.is_time(ty)
        or pa.types.is_interval(ty)
        or pa.types.is_date64(ty)
    )


def check_json_schema(schema: pa.Schema, topic: str) -> None:
    """Raise :class:`LogError` if a column's type has no faithful JSON form here."""

    def walk(ty: pa.DataType, path: str) -> None:
        if _unsupported(ty):
            raise LogError(
                f"topic '{topic}': column '{path}' has type {ty}, which the Kafka backend "
                "cannot store as JSON; expected strings, numbers, booleans, decimals, "
                "timestamps, date32, structs or lists of these"
            )
        if pa.types.is_struct(ty):
            for f in ty:
                walk(f.type, f"{path}.{f.name}")
        elif pa.types.is_list(ty) or pa.types.is_large_list(ty) or pa.types.is_fixed_size_list(ty):
            walk(ty.value_type, f"{path}[]")

    for field in schema:
        walk(field.type, field.name)


# -- encoding -----------------------------------------------------------------------------


def _to_wire(arr: pa.Array) -> pa.Array:
    """*arr* with timestamps and dates as ISO-8601 strings, recursively."""
    ty = arr.type
    if pa.types.is_timestamp(ty):
        if ty.tz is not None:
            # the same instants, formatted in UTC so the "Z" suffix is true
            return pc.strftime(arr.cast(pa.timestamp(ty.unit, "UTC")), format="%Y-%m-%dT%H:%M:%SZ")
        return pc.strftime(arr, format="%Y-%m-%dT%H:%M:%S")
    if pa.types.is_date32(ty):
        return arr.cast(pa.string())
    if pa.types.is_struct(ty):
        children = [_to_wire(arr.field(i)) for i in range(ty.num_fields)]
        if all(c is arr.field(i) for i, c in enumerate(children)):
            return arr
        return pa.StructArray.from_arrays(
            children, names=[f.name for f in ty], mask=arr.is_null() if arr.null_count else None
        )
    if pa.types.is_list(ty) or pa.types.is_large_list(ty):
        values = arr.values
        wired = _to_wire(values)
        if wired is values:
            return arr
        cls = pa.ListArray if pa.types.is_list(ty) else pa.LargeListArray
        return cls.from_arrays(arr.offsets, wired, mask=arr.is_null() if arr.null_count else None)
    if pa.types.is_fixed_size_list(ty):
        return _to_wire(arr.cast(pa.list_(ty.value_type)))
    return arr


def encode_rows(data: pa.Table | pa.RecordBatch) -> list[bytes]:
    """One compact JSON object per row, as UTF-8 bytes."""
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    if table.num_rows == 0:
        return []
    columns = [_to_wire(col.combine_chunks()) for col in table.columns]
    wire = pa.Table.from_arrays(columns, names=table.column_names)
    text = pl.from_arrow(wire, rechunk=False).write_ndjson()  # type: ignore[union-attr]
    lines = text.encode("utf-8").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) != table.num_rows:  # pragma: no cover - guards the newline assumption
        raise LogError(f"JSON encoding produced {len(lines)} lines for {table.num_rows} rows")
    return lines


# -- decoding -----------------------------------------------------------------------------


def _wire_type(ty: pa.DataType) -> pa.DataType:
    """The type pyarrow's JSON reader parses a column as (always nullable)."""
    if pa.types.is_date32(ty):
        return pa.string()
    if pa.types.is_struct(ty):
        return pa.struct([pa.field(f.name, _wire_type(f.type)) for f in ty])
    if pa.types.is_list(ty) or pa.types.is_large_list(ty) or pa.types.is_fixed_size_list(ty):
        return pa.list_(_wire_type(ty.value_type))
    return ty


def _wire_schema(schema: pa.Schema) -> pa.Schema:
    # nullable everywhere: the reader rejects nulls in required fields with a vague message,
    # the final cast rejects them naming the column
    return pa.schema([pa.field(f.name, _wire_type(f.type)) for f in schema])


def decode_rows(
    values: Sequence[bytes], schema: pa.Schema, *, max_value_bytes: int = 0
) -> pa.Table:
    """Parse JSON objects (one per value) into a table of exactly *schema*."""
    if not values:
        return schema.empty_table()
    data = b"\n".join(values)
    # a block must hold the longest document; one big block also keeps row order trivial
    block = max(_MIN_BLOCK, 2 * max_value_bytes + 1)
    try:
        table = pj.read_json(
            io.BytesIO(data),
            read_options=pj.ReadOptions(block_size=block, use_threads=True),
            parse_options=pj.ParseOptions(
                explicit_schema=_wire_schema(schema),
                unexpected_field_behavior="ignore",
                newlines_in_values=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise LogError(
            f"message values are not one-line JSON objects of the topic schema: {exc}"
        ) from exc
    if table.num_rows != len(values):
        raise LogError(
            f"expected one JSON object per message ({len(values)}), found {table.num_rows} rows"
        )
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, ValueError) as exc:
        raise LogError(f"message values do not match the topic schema: {exc}") from exc


# -- schema handling ----------------------------------------------------------------------


def schema_to_text(schema: pa.Schema) -> str:
    """A schema as base64 of its Arrow IPC form (exact, metadata included)."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def schema_from_text(text: str) -> pa.Schema:
    """The inverse of :func:`schema_to_text`."""
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))
