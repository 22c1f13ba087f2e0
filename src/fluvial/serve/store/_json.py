"""Rows as JSON objects, one per row, for stores that keep a row as one value (Redis, DynamoDB).

Columns are written as what JSON carries exactly: floats as their IEEE bits (an int64),
timestamps and dates as integers, decimals as text, binary as hex. Rows are encoded by
Polars and decoded by Arrow's JSON reader against the stored schema: both vectorized.

>>> import datetime as dt
>>> t = pa.table({"k": [1, 2], "f": [0.1, float("inf")], "d": [dt.date(2024, 1, 1), None]})
>>> rows = encode_rows(t)
>>> rows[1]
b'{"k":2,"f":9218868437227405312,"d":null}'
>>> decode_rows(rows, t.schema).equals(t)
True
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from fluvial.serve.store._codec import hex_decode, hex_encode

__all__ = ["decode_rows", "encode_rows"]

_FEW = 32  # rows decoded one by one rather than by Arrow's JSON reader


def _wire_type(typ: pa.DataType) -> pa.DataType:
    """The type a column of *typ* has in the JSON rows."""
    if pa.types.is_boolean(typ):
        return pa.bool_()
    if pa.types.is_date32(typ):
        return pa.int32()
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return pa.string()
    if pa.types.is_decimal128(typ) or pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        return pa.string()
    return pa.int64()  # ints, timestamps, floats (their bits)


def _to_wire(column: pa.ChunkedArray, typ: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if pa.types.is_floating(typ):
        return pc.cast(column, pa.float64()).combine_chunks().view(pa.int64())
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        return hex_encode(column)
    return pc.cast(column, _wire_type(typ))


def _from_wire(column: pa.ChunkedArray, typ: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if pa.types.is_floating(typ):
        return pc.cast(column.combine_chunks().view(pa.float64()), typ)
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        return hex_decode(column, typ)
    return pc.cast(column, typ)


def encode_rows(table: pa.Table) -> list[bytes]:
    """One JSON object per row (see the module docstring)."""
    import polars as pl

    if table.num_rows == 0:
        return []
    wire = pa.table({f.name: _to_wire(table[f.name], f.type) for f in table.schema})
    frame = pl.from_arrow(wire)
    assert isinstance(frame, pl.DataFrame)
    return frame.write_ndjson().encode().split(b"\n")[: table.num_rows]


def decode_rows(values: Sequence[bytes] | pa.Array, schema: pa.Schema) -> pa.Table:
    """The rows :func:`encode_rows` wrote (a list or a binary array), with *schema*'s types."""
    if len(values) == 0:
        return schema.empty_table()
    wire = pa.schema([pa.field(f.name, _wire_type(f.type)) for f in schema])
    if len(values) <= _FEW:
        # a point lookup: parsing a few objects beats setting up Arrow's JSON reader
        items = values.to_pylist() if isinstance(values, pa.Array) else values
        objects = [orjson.loads(v) for v in items]
        raw = pa.table({f.name: pa.array([o.get(f.name) for o in objects], f.type) for f in wire})
        return pa.Table.from_arrays(
            [_from_wire(raw[f.name], f.type) for f in schema], schema=schema
        )
    lines = values if isinstance(values, pa.Array) else pa.array(values, pa.binary())
    # one buffer of newline-terminated objects, joined by an Arrow kernel
    joined = pc.binary_join_element_wise(lines, pa.scalar(b"\n"), pa.scalar(b""))
    joined = pc.cast(joined, pa.large_binary())
    offsets = joined.buffers()[1]
    start = int.from_bytes(offsets[joined.offset * 8 : joined.offset * 8 + 8], "little")
    end = int.from_bytes(offsets[(joined.offset + len(joined)) * 8 :][:8], "little")
    data = joined.buffers()[2][start:end]
    options = pajson.ParseOptions(explicit_schema=wire, unexpected_field_behavior="ignore")
    raw = pajson.read_json(pa.BufferReader(data), parse_options=options)
    arrays = [_from_wire(raw[f.name], f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)
