"""Preparing an append: fit the rows to the topic's schema, then split them by partition.

Both steps are vectorized: casts are Arrow compute kernels, and the split is one stable
``argsort`` of the partition numbers, one ``take`` and zero-copy slices.

>>> import pyarrow as pa, numpy as np
>>> t = pa.table({"k": ["a", "b", "c", "d"], "v": [1, 2, 3, 4]})
>>> [(p, part.column("v").to_pylist()) for p, part in split(t, np.array([1, 0, 1, 0]), 2)]
[(0, [2, 4]), (1, [1, 3])]
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import LogError
from fluvial.log.base import SYSTEM_COLUMNS

__all__ = [
    "check_name",
    "conform",
    "partition_error",
    "prepare_append",
    "split",
    "strip_system_columns",
]

_SYSTEM_NAMES = frozenset(f.name for f in SYSTEM_COLUMNS)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")

Keys: TypeAlias = pa.Array | pa.ChunkedArray


def check_name(name: str, what: str = "topic") -> str:
    """Return *name* if it is a valid topic (or group) name, else raise LogError.

    >>> check_name("events")
    'events'
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise LogError(
            f"invalid {what} name {name!r}: expected 1-200 letters, digits, '.', '_' or '-', "
            "not starting with '.', '_' or '-'"
        )
    return name


def partition_error(topic: str, partitions: int, partition: object) -> LogError:
    """The error for a partition number outside ``0 .. partitions - 1``."""
    return LogError(
        f"topic '{topic}' has partitions 0-{partitions - 1}, found partition {partition!r}"
    )


def prepare_append(
    data: pa.Table | pa.RecordBatch,
    *,
    topic: str,
    partitions: int,
    key: str | Keys | None,
    partition: int | None,
) -> tuple[pa.Table, Keys | None]:
    """Check an append's arguments (see :meth:`EventLog.append`).

    Returns the rows as a table without system columns, and the routing keys: ``None``
    when the rows go to *partition* or round-robin.
    """
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    elif not isinstance(data, pa.Table):
        raise LogError(
            f"append expects a pyarrow Table or RecordBatch, found {type(data).__name__}"
        )
    table = strip_system_columns(data)
    if partition is not None:
        if not isinstance(partition, int) or not 0 <= partition < partitions:
            raise partition_error(topic, partitions, partition)
        return table, None
    if isinstance(key, str):
        if key not in table.column_names:
            raise LogError(
                f"key column '{key}' is not in the data; columns: {', '.join(table.column_names)}"
            )
        return table, table.column(key)
    if key is not None and len(key) != table.num_rows:
        raise LogError(f"expected {table.num_rows} keys (one per row), found {len(key)}")
    return table, key


def strip_system_columns(table: pa.Table) -> pa.Table:
    """Drop ``_partition``/``_offset``/``_timestamp`` (so a read can be re-appended)."""
    names = [n for n in table.column_names if n in _SYSTEM_NAMES]
    return table.drop_columns(names) if names else table


def conform(table: pa.Table, schema: pa.Schema, topic: str) -> pa.Table:
    """*table* with exactly *schema*'s columns and types, cast where that is safe.

    A missing nullable column is filled with nulls. Raises :class:`LogError` naming the
    column for an unknown or missing column, an unsafe cast, or nulls in a non-null column.
    """
    if table.schema.equals(schema, check_metadata=False):
        return table.replace_schema_metadata(schema.metadata)
    present = set(table.column_names)
    extra = [n for n in table.column_names if n not in set(schema.names)]
    if extra:
        raise LogError(
            f"topic '{topic}': unexpected column(s) {', '.join(map(repr, extra))}; "
            f"the topic's columns are {', '.join(schema.names)}"
        )
    columns = []
    for field in schema:
        if field.name not in present:
            if not field.nullable:
                raise LogError(
                    f"topic '{topic}': missing column '{field.name}' ({field.type}, not null)"
                )
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if column.type != field.type:
            try:
                column = pc.cast(column, field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise LogError(
                    f"topic '{topic}': column '{field.name}' should be {field.type}, found "
                    f"{table.schema.field(field.name).type} that cannot be cast safely: {exc}"
                ) from exc
        if not field.nullable and column.null_count:
            raise LogError(
                f"topic '{topic}': column '{field.name}' is not nullable but has "
                f"{column.null_count} null(s)"
            )
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def split(table: pa.Table, parts: np.ndarray, partitions: int) -> Iterator[tuple[int, pa.Table]]:
    """``(partition, rows)`` for each partition that gets rows, keeping their order."""
    if len(parts) != table.num_rows:
        raise LogError(f"expected {table.num_rows} partition keys, found {len(parts)}")
    if table.num_rows == 0:
        return
    first = int(parts[0])
    if (parts == first).all():  # common: one key, or a batch already split upstream
        yield first, table
        return
    order = np.argsort(parts, kind="stable")  # stable: rows keep their order per partition
    counts = np.bincount(parts, minlength=partitions)
    ordered = table.take(pa.array(order))
    start = 0
    for p, n in enumerate(counts.tolist()):
        if n:
            yield p, ordered.slice(start, n)
            start += n
