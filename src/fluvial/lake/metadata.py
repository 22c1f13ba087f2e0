"""Table metadata for people and the HTTP API: describe, history and annotate.

:func:`describe` gathers what a catalog page shows about a table: columns with their docs
and tags, partitioning, sort order, the current snapshot, row and file counts, owner,
description, tags and freshness. :func:`annotate` writes documentation back:

- a table's description is the Iceberg ``comment`` property, its owner ``owner``;
- a column's description is its Iceberg field doc (what every engine shows);
- tags are table properties ``fluvial.tag.<key>`` and ``fluvial.column.<column>.tag.<key>``.

Every result is a frozen dataclass with ``to_dict()`` giving JSON-ready values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fluvial.errors import NotFoundError, UsageError, did_you_mean
from fluvial.lake.maintenance import commit_with_retry, table_name

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table

__all__ = [
    "COLUMN_TAG_PREFIX",
    "TAG_PREFIX",
    "ColumnInfo",
    "SnapshotInfo",
    "TableInfo",
    "annotate",
    "describe",
    "history",
]

TAG_PREFIX = "fluvial.tag."
COLUMN_TAG_PREFIX = "fluvial.column."
DESCRIPTION_KEY = "comment"
OWNER_KEY = "owner"


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


@dataclass(frozen=True)
class ColumnInfo:
    """One column (nested fields as ``parent.child``)."""

    id: int
    name: str
    type: str
    required: bool
    doc: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot: when, what operation, and its summary counters."""

    snapshot_id: int
    parent_id: int | None
    timestamp: str
    operation: str
    summary: dict[str, str]
    current: bool
    #: on the current branch's line of ancestors (False: rolled back or another branch)
    in_main: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return asdict(self)


@dataclass(frozen=True)
class TableInfo:
    """What :func:`describe` knows about a table."""

    name: str
    location: str
    format_version: int
    uuid: str
    description: str | None
    owner: str | None
    tags: dict[str, str]
    columns: list[ColumnInfo]
    partition_spec: list[dict[str, Any]]
    sort_order: list[dict[str, Any]]
    current_snapshot_id: int | None
    rows: int
    data_files: int
    delete_files: int
    bytes: int
    snapshots: int
    #: time of the last commit that changed data (None: never written)
    freshness: str | None
    #: time of the last metadata change of any kind (annotations included)
    last_updated: str
    properties: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return asdict(self)

    def column(self, name: str) -> ColumnInfo:
        """The column called *name*. Raises NotFoundError."""
        for col in self.columns:
            if col.name == name:
                return col
        raise NotFoundError(
            f"column '{name}' is not in '{self.name}'"
            f"{did_you_mean(name, [c.name for c in self.columns])}"
        )


def _columns(schema: Schema, properties: Mapping[str, str]) -> list[ColumnInfo]:
    from pyiceberg.types import NestedField, StructType

    out: list[ColumnInfo] = []

    def walk(fields: tuple[NestedField, ...], prefix: str) -> None:
        for f in fields:
            name = prefix + f.name
            tag_prefix = f"{COLUMN_TAG_PREFIX}{name}.tag."
            tags = {
                k[len(tag_prefix) :]: v for k, v in properties.items() if k.startswith(tag_prefix)
            }
            out.append(ColumnInfo(f.field_id, name, str(f.field_type), f.required, f.doc, tags))
            if isinstance(f.field_type, StructType):
                walk(f.field_type.fields, name + ".")

    walk(schema.fields, "")
    return out


def describe(table: Table) -> TableInfo:
    """Everything a catalog page shows about *table* (read from its current metadata)."""
    metadata = table.metadata
    schema = table.schema()
    props = dict(table.properties)
    snap = table.current_snapshot()
    summary = snap.summary.additional_properties if snap and snap.summary else {}
    spec = table.spec()
    order = table.sort_order()
    data_times = [
        s.timestamp_ms
        for s in metadata.snapshots
        if s.summary is not None and s.summary.operation.value != "replace"
    ]
    return TableInfo(
        name=table_name(table),
        location=table.location(),
        format_version=metadata.format_version,
        uuid=str(metadata.table_uuid),
        description=props.get(DESCRIPTION_KEY),
        owner=props.get(OWNER_KEY),
        tags={k[len(TAG_PREFIX) :]: v for k, v in props.items() if k.startswith(TAG_PREFIX)},
        columns=_columns(schema, props),
        partition_spec=[
            {
                "name": f.name,
                "source": schema.find_column_name(f.source_id),
                "transform": str(f.transform),
            }
            for f in spec.fields
        ],
        sort_order=[
            {
                "source": schema.find_column_name(f.source_id),
                "transform": str(f.transform),
                "direction": f.direction.value,
                "null_order": f.null_order.value,
            }
            for f in order.fields
        ],
        current_snapshot_id=snap.snapshot_id if snap else None,
        rows=int(summary.get("total-records", 0)),
        data_files=int(summary.get("total-data-files", 0)),
        delete_files=int(summary.get("total-delete-files", 0)),
        bytes=int(summary.get("total-files-size", 0)),
        snapshots=len(metadata.snapshots),
        freshness=_iso(max(data_times)) if data_times else None,
        last_updated=_iso(metadata.last_updated_ms) or "",
        properties=props,
    )


def history(table: Table) -> list[SnapshotInfo]:
    """The table's snapshots, oldest first, with their operation and summary."""
    from pyiceberg.table.snapshots import ancestors_of

    metadata = table.metadata
    current = table.current_snapshot()
    main = {s.snapshot_id for s in ancestors_of(current, metadata)} if current else set()
    return [
        SnapshotInfo(
            snapshot_id=s.snapshot_id,
            parent_id=s.parent_snapshot_id,
            timestamp=_iso(s.timestamp_ms) or "",
            operation=s.summary.operation.value if s.summary else "",
            summary=dict(s.summary.additional_properties) if s.summary else {},
            current=current is not None and s.snapshot_id == current.snapshot_id,
            in_main=s.snapshot_id in main,
        )
        for s in sorted(metadata.snapshots, key=lambda s: (s.timestamp_ms, s.sequence_number))
    ]


def _check_key(kind: str, key: str) -> None:
    if not key or any(c in key for c in " \t\n="):
        raise UsageError(f"expected a {kind} without spaces or '=', found {key!r}")


def annotate(
    table: Table,
    *,
    column: str | None = None,
    description: str | None = None,
    owner: str | None = None,
    tags: Mapping[str, str | None] | None = None,
) -> TableInfo:
    """Document a table or one of its columns; returns the table's new description.

    Without *column*: *description* becomes the table's ``comment``, *owner* its
    ``owner``, *tags* its ``fluvial.tag.*`` properties. With *column* (``a`` or
    ``parent.child``): *description* becomes the column's Iceberg doc and *tags* its
    ``fluvial.column.<column>.tag.*`` properties. A tag whose value is ``None`` (or an
    empty description) is removed. All changes commit together, retried on conflicts.

    Raises:
        NotFoundError: the column does not exist.
        UsageError: an owner for a column, or a malformed tag key.
    """
    tags = dict(tags or {})
    for key in tags:
        _check_key("tag key", key)
    if column is not None:
        if owner is not None:
            raise UsageError("an owner belongs to a table, not to a column")
        names = [c.name for c in _columns(table.schema(), {})]
        if column not in names:
            raise NotFoundError(
                f"column '{column}' is not in '{table_name(table)}'{did_you_mean(column, names)}"
            )
    prefix = f"{COLUMN_TAG_PREFIX}{column}.tag." if column is not None else TAG_PREFIX
    updates = {prefix + k: v for k, v in tags.items() if v is not None}
    removals = [prefix + k for k, v in tags.items() if v is None]
    if column is None:
        for key, value in ((DESCRIPTION_KEY, description), (OWNER_KEY, owner)):
            if value:
                updates[key] = value
            elif value is not None:
                removals.append(key)

    def commit(t: Table) -> None:
        tx = t.transaction()
        if column is not None and description is not None:
            with tx.update_schema() as update:
                update.update_column(column, doc=description or None)
        if updates:
            tx.set_properties(updates)
        present = [k for k in removals if k in t.properties]
        if present:
            tx.remove_properties(*present)
        tx.commit_transaction()

    commit_with_retry(table, commit, what="annotate")
    return describe(table.refresh())
