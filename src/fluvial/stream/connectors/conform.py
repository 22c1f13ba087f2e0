"""Fit Arrow data to a table's physical schema by column name, as Flink's formats do.

Sources read whatever the topic or file holds; a table declares the columns it wants.
:func:`conform` selects the declared columns by name (struct fields too, recursively),
and casts where the types differ: a ``timestamp[ms, tz=UTC]`` column read as a
``TIMESTAMP(3)`` becomes naive UTC wall-clock time (same instants, no zone), exactly as
Flink reads a ``TIMESTAMP_LTZ`` into a ``TIMESTAMP`` column in a UTC session.

>>> import pyarrow as pa
>>> t = pa.table({"b": [1, 2], "a": ["x", "y"]})
>>> conform(t, pa.schema([("a", pa.string()), ("b", pa.float64())]), what="t").to_pylist()
[{'a': 'x', 'b': 1.0}, {'a': 'y', 'b': 2.0}]
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import SqlError, did_you_mean

__all__ = ["ColumnMismatch", "conform", "conform_array"]


class ColumnMismatch(SqlError):
    """A declared column is missing from the data, or its data cannot take the type."""


def conform(table: pa.Table, schema: pa.Schema, *, what: str) -> pa.Table:
    """*table*'s columns named in *schema*, in its order and with its types.

    *what* names the data in messages (``"topic 'events'"``, a file path).

    Raises:
        ColumnMismatch: a column of *schema* is missing from *table*, or cannot be cast.
    """
    if table.schema.equals(schema):
        return table
    names = table.column_names
    columns = []
    for field in schema:
        if field.name not in names:
            raise ColumnMismatch(
                f"column '{field.name}' is not in {what}{did_you_mean(field.name, names)}; "
                f"its columns are {', '.join(names)}"
            )
        columns.append(conform_array(table[field.name], field.type, f"{what}: {field.name}"))
    return pa.Table.from_arrays(columns, schema=schema)


def conform_array(
    array: pa.Array | pa.ChunkedArray, target: pa.DataType, what: str
) -> pa.Array | pa.ChunkedArray:
    """*array* as *target*: struct fields by name, list elements recursively, else a cast."""
    source = array.type
    if source.equals(target):
        return array
    if isinstance(array, pa.ChunkedArray):
        chunks = [conform_array(c, target, what) for c in array.chunks]
        return pa.chunked_array(chunks, type=target)
    if pa.types.is_struct(target) and pa.types.is_struct(source):
        struct: pa.StructArray = array
        have = [source.field(i).name for i in range(source.num_fields)]
        children = []
        for i in range(target.num_fields):
            sub = target.field(i)
            if sub.name not in have:
                raise ColumnMismatch(
                    f"field '{sub.name}' is not in {what}{did_you_mean(sub.name, have)}; "
                    f"its fields are {', '.join(have)}"
                )
            child = struct.field(sub.name)  # ignores the parent's nulls; the mask below keeps them
            children.append(conform_array(child, sub.type, f"{what}.{sub.name}"))
        mask = array.is_null() if array.null_count else None
        return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)
    if pa.types.is_list(target) and (pa.types.is_list(source) or pa.types.is_large_list(source)):
        values = conform_array(array.flatten(), target.value_type, f"{what}[]")
        offsets = pc.subtract(array.offsets, array.offsets[0])
        mask = array.is_null() if array.null_count else None
        return pa.ListArray.from_arrays(offsets, values, type=target, mask=mask)
    if pa.types.is_timestamp(target) and pa.types.is_timestamp(source):
        # naive <-> UTC keeps the stored instant: a naive timestamp is UTC wall-clock time
        if target.tz is None and source.tz is not None:
            array = array.cast(pa.timestamp(source.unit))
        elif target.tz is not None and source.tz is None:
            array = array.cast(pa.timestamp(source.unit)).cast(pa.timestamp(source.unit, target.tz))
    try:
        return array.cast(target, safe=not pa.types.is_timestamp(target))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ColumnMismatch(
            f"{what}: expected values of type {target}, found {source} that do not fit ({exc})"
        ) from exc
