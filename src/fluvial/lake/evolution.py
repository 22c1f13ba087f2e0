"""Schema evolution: new columns join a table, safe widenings apply, the rest is refused.

Incoming Arrow data is compared with a table's schema, column by column and by name
(nested struct fields, list elements and map keys/values included):

* a column the table lacks is **added** (optional, at the end of its struct);
* a **widening** Iceberg allows is applied: ``int -> long``, ``float -> double``, and a
  decimal's precision growing at the same scale;
* data narrower than its column (an ``int`` into a ``long``) is written as is: readers
  see the column's type;
* anything else (``string`` into ``long``, a struct where a list was, a decimal whose
  scale changes, a time zone appearing) raises
  :class:`~fluvial.errors.IncompatibleSchemaError` naming the column.

Columns the data lacks stay in the table and read as null. Every change is a new
Iceberg schema version; :func:`schema_history` lists them with what changed.

>>> old = pa.schema([("id", pa.int32()), ("name", pa.string())])
>>> new = pa.schema([("id", pa.int64()), ("name", pa.string()), ("age", pa.int16())])
>>> [str(c) for c in plan_changes(old, new)]
['widen id: int -> long', 'add age: int']
>>> plan_changes(old, pa.schema([("name", pa.int64())]))
Traceback (most recent call last):
...
fluvial.errors.IncompatibleSchemaError: column 'name': the table has string, the data has long; ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from fluvial.errors import IncompatibleSchemaError

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table, Transaction

__all__ = [
    "SchemaChange",
    "SchemaVersion",
    "evolve",
    "plan_changes",
    "schema_history",
    "type_name",
]


@dataclass(frozen=True)
class SchemaChange:
    """One change to a table's schema: a column added or widened (dotted path)."""

    kind: Literal["add", "widen"]
    column: str
    new_type: str
    old_type: str = ""

    def __str__(self) -> str:
        if self.kind == "add":
            return f"add {self.column}: {self.new_type}"
        return f"widen {self.column}: {self.old_type} -> {self.new_type}"


def _norm(t: pa.DataType) -> pa.DataType:
    """Arrow types that are one Iceberg type, made one (string/large_string, list kinds)."""
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_dictionary(t):
        return _norm(t.value_type)
    if pa.types.is_large_list(t) or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return pa.list_(t.value_field)
    if pa.types.is_integer(t):
        return pa.int32() if t.bit_width <= 32 and t != pa.uint32() else pa.int64()
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz=None if t.tz is None else "UTC")
    if pa.types.is_date64(t):
        return pa.date32()
    return t


_ICEBERG_NAMES = {
    pa.int32(): "int",
    pa.int64(): "long",
    pa.float32(): "float",
    pa.float64(): "double",
    pa.string(): "string",
    pa.binary(): "binary",
    pa.bool_(): "boolean",
    pa.date32(): "date",
    pa.timestamp("us"): "timestamp",
    pa.timestamp("us", tz="UTC"): "timestamptz",
}


def type_name(t: pa.DataType) -> str:
    """An Arrow type under its Iceberg name (``long``, ``struct<…>``, ``decimal(p, s)``)."""
    t = _norm(t)
    if t in _ICEBERG_NAMES:
        return _ICEBERG_NAMES[t]
    if pa.types.is_decimal(t):
        return f"decimal({t.precision}, {t.scale})"
    if pa.types.is_struct(t):
        return "struct<" + ", ".join(f"{f.name}: {type_name(f.type)}" for f in t) + ">"
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t):
        return f"list<{type_name(t.value_type)}>"
    if pa.types.is_map(t):
        return f"map<{type_name(t.key_type)}, {type_name(t.item_type)}>"
    return str(t)


def _widening(old: pa.DataType, new: pa.DataType) -> Literal["same", "narrower", "widen"] | None:
    """How a primitive *new* relates to the column's *old* type; None when incompatible."""
    if old == new:
        return "same"
    pairs = ((pa.int32(), pa.int64()), (pa.float32(), pa.float64()))
    for small, big in pairs:
        if (old, new) == (small, big):
            return "widen"
        if (old, new) == (big, small):
            return "narrower"
    if pa.types.is_decimal(old) and pa.types.is_decimal(new) and old.scale == new.scale:
        return "widen" if new.precision > old.precision else "narrower"
    return None


def _compare(
    path: str, old: pa.DataType, new: pa.DataType, changes: list[SchemaChange]
) -> pa.DataType:
    """The merged type of a column, recording changes; raises when incompatible."""
    old, new = _norm(old), _norm(new)
    if pa.types.is_struct(old) and pa.types.is_struct(new):
        return pa.struct(_merge_fields(path + ".", list(old), list(new), changes))
    if pa.types.is_list(old) and pa.types.is_list(new):
        element = _compare(path + ".element", old.value_type, new.value_type, changes)
        return pa.list_(old.value_field.with_type(element))
    if pa.types.is_map(old) and pa.types.is_map(new):
        key = _compare(path + ".key", old.key_type, new.key_type, changes)
        item = _compare(path + ".value", old.item_type, new.item_type, changes)
        return pa.map_(old.key_field.with_type(key), old.item_field.with_type(item))
    nested = (pa.types.is_struct, pa.types.is_list, pa.types.is_map)
    how = None if any(f(old) or f(new) for f in nested) else _widening(old, new)
    if how is None:
        raise IncompatibleSchemaError(
            f"column '{path}': the table has {type_name(old)}, the data has {type_name(new)}; "
            "only new columns and int -> long, float -> double or a wider decimal are accepted",
            field=path,
        )
    if how == "widen":
        changes.append(SchemaChange("widen", path, type_name(new), type_name(old)))
        return new
    return old


def _merge_fields(
    prefix: str, old: list[pa.Field], new: list[pa.Field], changes: list[SchemaChange]
) -> list[pa.Field]:
    by_name = {f.name: f for f in new}
    merged = []
    for field in old:
        if field.name in by_name:
            merged.append(
                field.with_type(
                    _compare(prefix + field.name, field.type, by_name[field.name].type, changes)
                )
            )
        else:
            merged.append(field)
    known = {f.name for f in old}
    for field in new:
        if field.name not in known:
            changes.append(SchemaChange("add", prefix + field.name, type_name(field.type)))
            merged.append(field.with_nullable(True))
    return merged


def plan_changes(table_schema: pa.Schema, data_schema: pa.Schema) -> list[SchemaChange]:
    """What writing *data_schema* into a table of *table_schema* changes, in order.

    Raises:
        IncompatibleSchemaError: a column's type cannot become the data's (``.field``
            names the column, dotted for nested ones).
    """
    return _merged(table_schema, data_schema)[1]


def _plain(t: pa.DataType) -> pa.DataType:
    """*t* without field metadata (Iceberg field ids), so columns match by name alone."""
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _plain(f.type), f.nullable) for f in t])
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(pa.field("element", _plain(t.value_type), t.value_field.nullable))
    if pa.types.is_map(t):
        return pa.map_(
            pa.field("key", _plain(t.key_type), False),
            pa.field("value", _plain(t.item_type), t.item_field.nullable),
        )
    return t


def _merged(
    table_schema: pa.Schema, data_schema: pa.Schema
) -> tuple[pa.Schema, list[SchemaChange]]:
    changes: list[SchemaChange] = []
    fields = _merge_fields("", list(table_schema), list(data_schema), changes)
    return pa.schema([pa.field(f.name, _plain(f.type), f.nullable) for f in fields]), changes


def evolve(target: Table | Transaction, data_schema: pa.Schema) -> list[SchemaChange]:
    """Evolve a table's schema (in a transaction, or committed at once) to take *data_schema*.

    Returns the changes made (none when the data already fits).

    Raises:
        IncompatibleSchemaError: see :func:`plan_changes`; nothing is changed then.
    """
    from pyiceberg.table import Transaction

    metadata = target.table_metadata if isinstance(target, Transaction) else target.metadata
    current: Schema = metadata.schema()
    merged, changes = _merged(current.as_arrow(), data_schema)
    if changes:
        with target.update_schema() as update:
            update.union_by_name(merged)
    return changes


@dataclass(frozen=True)
class SchemaVersion:
    """One schema of a table: its id, columns, what changed, and when it was first used."""

    schema_id: int
    columns: tuple[str, ...]
    changes: tuple[str, ...]
    first_snapshot_id: int | None
    first_used_ms: int | None
    current: bool

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "schema_id": self.schema_id,
            "columns": list(self.columns),
            "changes": list(self.changes),
            "first_snapshot_id": self.first_snapshot_id,
            "first_used_ms": self.first_used_ms,
            "current": self.current,
        }


def schema_history(table: Table) -> list[SchemaVersion]:
    """Every schema version of *table*, oldest first, each with its changes from the last."""
    metadata = table.metadata
    first_use: dict[int, tuple[int, int]] = {}
    for snap in sorted(metadata.snapshots, key=lambda s: s.timestamp_ms):
        if snap.schema_id is not None and snap.schema_id not in first_use:
            first_use[snap.schema_id] = (snap.snapshot_id, snap.timestamp_ms)
    versions = []
    previous: pa.Schema | None = None
    for schema in sorted(metadata.schemas, key=lambda s: s.schema_id):
        arrow = schema.as_arrow()
        columns = tuple(f"{f.name}: {type_name(f.type)}" for f in arrow)
        if previous is None:
            changes: tuple[str, ...] = ("create",)
        else:
            try:
                changes = tuple(str(c) for c in plan_changes(previous, arrow))
            except IncompatibleSchemaError:
                changes = ("changed outside Fluvial",)
            removed = set(previous.names) - set(arrow.names)
            changes += tuple(f"drop {name}" for name in sorted(removed))
        snap_id, used = first_use.get(schema.schema_id, (None, None))
        versions.append(
            SchemaVersion(
                schema.schema_id,
                columns,
                changes,
                snap_id,
                used,
                schema.schema_id == metadata.current_schema_id,
            )
        )
        previous = arrow
    return versions
