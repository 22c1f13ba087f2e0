"""Arrow tables as JSON-ready columns and rows, and as CSV.

Columns are normalized with Arrow kernels before values are taken out: nanosecond times
become microseconds (what Python holds), whole decimals become integers and other
decimals floats (what JSON numbers are), binary becomes base64 text.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from fluvial.errors import UsageError

__all__ = ["column_types", "to_csv", "to_rows", "typed_values"]


def _normalize(column: pa.ChunkedArray) -> pa.ChunkedArray | list[Any]:
    typ = column.type
    if pa.types.is_timestamp(typ) and typ.unit == "ns":
        return pc.cast(column, pa.timestamp("us", typ.tz), safe=False)
    if (pa.types.is_time64(typ) or pa.types.is_duration(typ)) and typ.unit == "ns":
        target = pa.time64("us") if pa.types.is_time64(typ) else pa.duration("us")
        return pc.cast(column, target, safe=False)
    if pa.types.is_decimal(typ):
        if typ.scale == 0 and typ.precision <= 18:
            return pc.cast(column, pa.int64())
        if typ.scale == 0:  # exact Python ints (beyond int64)
            return [None if v is None else int(v) for v in column.to_pylist()]
        return pc.cast(column, pa.float64())
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        return [
            None if v is None else base64.b64encode(v).decode("ascii") for v in column.to_pylist()
        ]
    return column


def column_types(table: pa.Table) -> list[dict[str, str]]:
    """``[{"name", "type"}]`` for *table*'s columns."""
    return [{"name": f.name, "type": str(f.type)} for f in table.schema]


def to_rows(table: pa.Table) -> list[list[Any]]:
    """*table*'s rows as lists of JSON-ready values (dates and times stay Python objects,
    which the response encoder writes as ISO-8601)."""
    columns = []
    for column in table.columns:
        norm = _normalize(column)
        columns.append(norm if isinstance(norm, list) else norm.to_pylist())
    return [list(row) for row in zip(*columns, strict=True)] if columns else []


def to_csv(table: pa.Table) -> bytes:
    """*table* as CSV with a header row.

    Raises:
        UsageError: a column is nested (lists, structs, maps), which CSV cannot hold.
    """
    nested = [f.name for f in table.schema if pa.types.is_nested(f.type)]
    if nested:
        raise UsageError(
            f"CSV cannot hold the nested column(s) {', '.join(nested)}; ask for JSON instead"
        )
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer)
    return buffer.getvalue()


def typed_values(texts: list[str], fields: list[pa.Field], what: str) -> list[Any]:
    """Key values given as text (a URL), cast to their columns' types with Arrow.

    Raises:
        ValidationError: a text is not a value of its column's type.
    """
    from fluvial.errors import ValidationError

    out = []
    for text, field in zip(texts, fields, strict=True):
        try:
            out.append(pa.array([text], pa.string()).cast(field.type)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise ValidationError(
                f"{what} '{field.name}' is {field.type}; found {text!r}", path=field.name
            ) from exc
    return out
