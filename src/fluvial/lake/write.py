"""Appending Arrow tables to Iceberg tables: one atomic commit per call.

:func:`append` evolves the schema when the data brings new columns (see
:mod:`fluvial.lake.evolution`), writes Parquet data files, and commits them, the schema
change and the caller's snapshot summary properties in **one** Iceberg commit: a crash
leaves either all of it or none of it (plus unreferenced files for maintenance to remove).

Partitioned writes take a fast path for the common case of the lake's zones, a single
time transform: the partition key is computed with one vectorized kernel and rows are
split into contiguous slices (zero-copy when already clustered, one sort otherwise),
instead of one filter pass per partition.

>>> iceberg_arrow_schema(pa.schema([("t", pa.timestamp("ms", tz="UTC")), ("n", pa.uint8())]))
t: timestamp[us, tz=UTC]
n: int32
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.lake.evolution import SchemaChange, evolve

if TYPE_CHECKING:
    from pyiceberg.partitioning import PartitionKey
    from pyiceberg.table import Table, Transaction

__all__ = ["AppendResult", "append", "iceberg_arrow_schema", "to_iceberg_types"]


def _iceberg_type(t: pa.DataType, nullable: bool) -> pa.DataType:
    if pa.types.is_dictionary(t):
        return _iceberg_type(t.value_type, nullable)
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz=t.tz)
    if pa.types.is_time(t):
        return pa.time64("us")
    if pa.types.is_date64(t):
        return pa.date32()
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_integer(t):
        small = t.bit_width < 32 or t == pa.int32()
        return pa.int32() if small else pa.int64()
    if pa.types.is_struct(t):
        return pa.struct([_iceberg_field(f, nullable) for f in t])
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return pa.list_(_iceberg_field(t.value_field, nullable))
    if pa.types.is_map(t):
        return pa.map_(
            _iceberg_field(t.key_field, False).with_nullable(False),
            _iceberg_field(t.item_field, nullable),
        )
    return t


def _iceberg_field(f: pa.Field, nullable: bool) -> pa.Field:
    return pa.field(f.name, _iceberg_type(f.type, nullable), nullable or f.nullable)


def iceberg_arrow_schema(schema: pa.Schema, *, nullable: bool = False) -> pa.Schema:
    """*schema* with types Iceberg stores (microsecond times, signed ints, no dictionaries).

    With *nullable*, every field (nested ones too) becomes optional.
    """
    return pa.schema([_iceberg_field(f, nullable) for f in schema])


def to_iceberg_types(data: pa.Table) -> pa.Table:
    """*data* cast to :func:`iceberg_arrow_schema` (vectorized; a no-op when it fits)."""
    target = iceberg_arrow_schema(data.schema)
    if target.equals(data.schema.remove_metadata(), check_metadata=False):
        return data
    return data.cast(pa.schema(target, metadata=data.schema.metadata))


@dataclass(frozen=True)
class AppendResult:
    """What one :func:`append` committed."""

    snapshot_id: int | None
    records: int
    data_files: int
    schema_changes: tuple[SchemaChange, ...] = ()


def _runs(key: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """Start and stop row of each run of equal keys; None when the keys are not clustered."""
    as_int = key.cast(pa.int32()) if pa.types.is_date32(key.type) else key
    filled = np.asarray(as_int.fill_null(np.iinfo(np.int32).min).to_numpy(zero_copy_only=False))
    starts = np.concatenate(([0], np.flatnonzero(filled[1:] != filled[:-1]) + 1))
    if len(starts) > 1 and len(np.unique(filled[starts])) != len(starts):
        return None
    stops = np.append(starts[1:], len(filled))
    return starts, stops


def _split(metadata: Any, data: pa.Table) -> list[tuple[PartitionKey | None, pa.Table]]:
    """Rows grouped by partition, as (key, slice); None when the fast path does not apply."""
    from pyiceberg.partitioning import PartitionFieldValue, PartitionKey

    spec = metadata.spec()
    if spec.is_unpartitioned():
        return [(None, data)]
    schema = metadata.schema()
    (field,) = spec.fields
    source = schema.find_field(field.source_id)
    column = schema.find_column_name(field.source_id)
    values = data.column(column).combine_chunks()
    key = field.transform.pyarrow_transform(source.field_type)(values)
    runs = _runs(key)
    if runs is None:  # rows of one partition are scattered: one stable sort clusters them
        order = pc.sort_indices(key, sort_keys=[("", "ascending")])
        data, key = data.take(order), key.take(order)
        runs = _runs(key)
        assert runs is not None
    starts, stops = runs
    out: list[tuple[PartitionKey | None, pa.Table]] = []
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):  # one per partition
        value = key[start].as_py()
        pkey = PartitionKey(
            field_values=[PartitionFieldValue(field=field, value=value)],
            partition_spec=spec,
            schema=schema,
        )
        out.append((pkey, data.slice(start, stop - start)))
    return out


def _write(tx: Transaction, table: Table, data: pa.Table, properties: dict[str, str]) -> int:
    from pyiceberg.io.pyarrow import bin_pack_arrow_table, pyarrow_to_schema, write_file
    from pyiceberg.table import TableProperties, WriteTask
    from pyiceberg.utils.properties import property_as_int

    metadata = tx.table_metadata
    target_size = property_as_int(
        metadata.properties,
        TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
        TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
    )
    assert target_size is not None
    task_schema = pyarrow_to_schema(
        data.schema,
        name_mapping=metadata.schema().name_mapping,
        format_version=metadata.format_version,
    )
    if len(metadata.spec().fields) > 1:  # not a zone's layout: pyiceberg's general path
        tx.append(data, snapshot_properties=properties)
        return -1
    files = 0
    with tx.update_snapshot(snapshot_properties=properties).fast_append() as commit:
        counter = itertools.count(0)
        write_uuid = getattr(commit, "commit_uuid", None) or uuid.uuid4()
        tasks = (
            WriteTask(
                write_uuid=write_uuid,
                task_id=next(counter),
                record_batches=batches,
                partition_key=pkey,
                schema=task_schema,
            )
            for pkey, part in _split(metadata, data)
            for batches in bin_pack_arrow_table(part, target_size)
        )
        for data_file in write_file(io=table.io, table_metadata=metadata, tasks=tasks):
            commit.append_data_file(data_file)
            files += 1
    return files


def append(
    table: Table,
    data: pa.Table,
    *,
    properties: dict[str, str] | None = None,
    exclusive: bool = False,
    table_properties: dict[str, str] | None = None,
) -> AppendResult:
    """Append *data* to *table* in one commit, evolving its schema first if needed.

    *properties* go into the snapshot summary (e.g. the log offsets the rows came from).
    An empty *data* still commits a snapshot carrying *properties*. *table_properties*
    are set on the table in the same commit (state that must outlive snapshot expiry).

    By default a commit that loses a race with another writer is retried on top of the
    other's snapshot (pyiceberg's ``commit.retry.*``). With *exclusive*, it fails
    instead: for writers whose properties depend on the snapshot they started from,
    such as the archiver's offsets.

    Raises:
        IncompatibleSchemaError: the data's columns cannot be written into the table's.
        pyiceberg's CommitFailedException: another writer committed first (*exclusive*,
            or when retries ran out).
    """
    data = to_iceberg_types(data)
    props = dict(properties or {})
    with table.transaction() as tx:
        changes = evolve(tx, data.schema)
        files = _write(tx, table, data, props)
        if table_properties:
            tx.set_properties(table_properties)
        if exclusive:
            # pyiceberg retries by re-running the registered snapshot producers on top of
            # the winner's snapshot; with none registered the first conflict is raised
            producers = getattr(tx, "_snapshot_producers", None)
            if producers is None:
                raise RuntimeError("this pyiceberg version cannot commit exclusively")
            producers.clear()
    snapshot = table.current_snapshot()
    if files < 0:  # the general path: count what the snapshot says it added
        summary = snapshot.summary if snapshot is not None else None
        files = int((summary and summary["added-data-files"]) or 0)
    return AppendResult(
        snapshot.snapshot_id if snapshot is not None else None,
        data.num_rows,
        files,
        tuple(changes),
    )
