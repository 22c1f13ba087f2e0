"""The crawler: turn a landing folder of files into an Iceberg table (our Glue crawler).

:func:`crawl` infers a schema from the Parquet, CSV, NDJSON and Avro files in a folder,
creates the table or evolves it (union by name: new columns are added, types widen where
Iceberg allows), and registers the files it has not registered before:

- a Parquet file whose types the table holds exactly is added in place (``add_files``:
  not copied; the table points at the landing file);
- every other file is read (DuckDB; Avro through DuckDB's avro extension, loaded from the
  ``duckdb-extension-avro`` package) and appended as Parquet.

The table remembers each registered file with its size and modification time in the
table property ``fluvial.crawler.files``, written in the same commit as the data, so
crawling an unchanged folder again changes nothing. A registered file that changed since
is reported, never registered twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fluvial.errors import IncompatibleSchemaError, MissingDependencyError, UsageError
from fluvial.lake.maintenance import commit_with_retry

if TYPE_CHECKING:
    import duckdb
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table
    from pyiceberg.types import IcebergType

__all__ = ["FORMATS", "REGISTRY_KEY", "CrawlReport", "crawl"]

#: file suffix -> format
FORMATS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".json": "ndjson",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".avro": "avro",
}
#: table property holding ``{file URI: "size:mtime_ns"}`` of every registered file
REGISTRY_KEY = "fluvial.crawler.files"


@dataclass(frozen=True)
class CrawlReport:
    """What :func:`crawl` found and changed."""

    table: str
    created: bool = False
    added_columns: list[str] = field(default_factory=list)
    widened_columns: list[str] = field(default_factory=list)
    registered_in_place: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: registered before, modified since: left alone (a landing file should not change)
    modified: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    rows: int = 0
    snapshot_id: int | None = None

    @property
    def changed(self) -> bool:
        """Whether the crawl changed the table."""
        return bool(
            self.created
            or self.added_columns
            or self.widened_columns
            or self.registered_in_place
            or self.converted
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return {**asdict(self), "changed": self.changed}


@dataclass
class _Found:
    path: Path
    uri: str
    format: str
    signature: str
    schema: pa.Schema | None = None
    data: pa.Table | None = None
    in_place: bool = False


def _files(root: Path) -> Iterator[Path]:
    """Data files under *root*, skipping hidden and ``_``-prefixed ones (``_SUCCESS``)."""
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if path.is_file() and not any(p.startswith((".", "_")) for p in rel):
            yield path


def _duckdb() -> duckdb.DuckDBPyConnection:
    """DuckDB with the avro extension loaded from its PyPI package (never downloaded)."""
    import duckdb

    con = duckdb.connect(
        config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}
    )
    try:
        import duckdb_extension_avro
    except ImportError:
        return con  # Avro files then fail with a clear message in _read
    folder = Path(duckdb_extension_avro.__file__).parent / "extensions" / f"v{duckdb.__version__}"
    ext = folder / "avro.duckdb_extension"
    if ext.exists():
        con.execute(f"LOAD '{ext}'")
    return con


def _read(con: duckdb.DuckDBPyConnection, found: _Found) -> pa.Table:
    import duckdb

    readers = {
        "csv": "read_csv(?, auto_detect = true)",
        "ndjson": "read_json(?, format = 'newline_delimited')",
        "avro": "read_avro(?)",
    }
    try:
        return con.execute(
            f"SELECT * FROM {readers[found.format]}", [str(found.path)]
        ).to_arrow_table()
    except duckdb.CatalogException as exc:
        if found.format == "avro":
            raise MissingDependencyError(
                f"duckdb-extension-avro=={duckdb.__version__}", "all"
            ) from exc
        raise
    except duckdb.Error as exc:
        raise UsageError(f"cannot read {found.path} as {found.format}: {exc}") from exc


def _plain_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type an Iceberg table stores for *t* (Iceberg has no unsigned, ns, null...)."""
    if pa.types.is_dictionary(t):
        return _plain_type(t.value_type)
    if pa.types.is_null(t):
        return pa.string()
    if pa.types.is_unsigned_integer(t):
        return pa.int64() if t.bit_width >= 32 else pa.int32()
    if pa.types.is_integer(t) and t.bit_width < 32:
        return pa.int32()
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_timestamp(t) and t.unit != "us":
        return pa.timestamp("us", t.tz)
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_time(t):
        return pa.time64("us")
    if pa.types.is_date64(t):
        return pa.date32()
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _plain_type(f.type)) for f in t])
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_plain_type(t.value_type))
    if pa.types.is_map(t):
        return pa.map_(_plain_type(t.key_type), _plain_type(t.item_type))
    return t


def _plain(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, _plain_type(f.type)) for f in schema])


def _has_field_ids(schema: pa.Schema) -> bool:
    return any(f.metadata and b"PARQUET:field_id" in f.metadata for f in schema)


def _unify(found: list[_Found]) -> pa.Schema:
    try:
        return pa.unify_schemas(
            [_plain(f.schema) for f in found if f.schema is not None],
            promote_options="permissive",
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        names = ", ".join(f.path.name for f in found)
        raise IncompatibleSchemaError(
            f"the files {names} disagree on a column's type: {exc}"
        ) from exc


def _same(a: IcebergType, b: IcebergType) -> bool:
    """Equal Iceberg types, ignoring field ids and docs."""
    from pyiceberg.types import ListType, MapType, StructType

    if isinstance(a, StructType) and isinstance(b, StructType):
        return [f.name for f in a.fields] == [f.name for f in b.fields] and all(
            _same(x.field_type, y.field_type) for x, y in zip(a.fields, b.fields, strict=True)
        )
    if isinstance(a, ListType) and isinstance(b, ListType):
        return _same(a.element_type, b.element_type)
    if isinstance(a, MapType) and isinstance(b, MapType):
        return _same(a.key_type, b.key_type) and _same(a.value_type, b.value_type)
    return a == b


def _fits(table: Table, schema: pa.Schema) -> bool:
    """Whether a Parquet file with *schema* can be read in place with the table's types."""
    from pyiceberg.io.pyarrow import pyarrow_to_schema

    if _has_field_ids(schema) or not _plain(schema).equals(schema, check_metadata=False):
        return False  # ids from elsewhere, or types Iceberg stores differently
    current = table.schema()
    try:
        mine = pyarrow_to_schema(schema, name_mapping=current.name_mapping)
    except ValueError:
        return False
    for f in mine.fields:
        try:
            theirs = current.find_field(f.name)
        except ValueError:
            return False
        if not _same(f.field_type, theirs.field_type):
            return False
    return True


def _conform(data: pa.Table, target: pa.Schema) -> pa.Table:
    """*data* with exactly the *target* columns and types (missing columns as nulls)."""
    arrays = [
        data.column(f.name).cast(f.type)
        if f.name in data.column_names
        else pa.nulls(len(data), f.type)
        for f in target
    ]
    return pa.Table.from_arrays(arrays, schema=target)


def _evolve(table: Table, schema: pa.Schema) -> tuple[list[str], list[str]]:
    """Union *schema* into the table; returns (added, widened) top-level column names."""
    from pyiceberg.exceptions import ValidationError as IcebergValidationError

    before = {f.name: str(f.field_type) for f in table.schema().fields}
    try:
        with table.update_schema() as update:
            update.union_by_name(schema)
    except (IcebergValidationError, ValueError, TypeError) as exc:
        raise IncompatibleSchemaError(
            f"the files do not fit table '{'.'.join(table.name()[-2:])}': {exc}"
        ) from exc
    after = {f.name: str(f.field_type) for f in table.schema().fields}
    added = [n for n in after if n not in before]
    widened = [n for n in before if n in after and after[n] != before[n]]
    return added, widened


def crawl(catalog: Catalog, path: str | Path, identifier: str) -> CrawlReport:
    """Create or evolve table *identifier* from the files in folder *path*, incrementally.

    Args:
        catalog: the pyiceberg catalog holding (or to hold) the table.
        path: a landing folder (searched recursively) or one file.
        identifier: ``namespace.table``; the namespace is created if missing.

    Raises:
        UsageError: *path* does not exist or a file cannot be read.
        IncompatibleSchemaError: the files' columns cannot be merged into the table.
    """
    from pyiceberg.exceptions import NoSuchTableError

    root = Path(path).resolve()
    if not root.exists():
        raise UsageError(f"the folder {root} does not exist")
    found: list[_Found] = []
    unsupported: list[str] = []
    for file in _files(root):
        fmt = FORMATS.get(file.suffix.lower())
        if fmt is None:
            unsupported.append(str(file))
            continue
        stat = file.stat()
        found.append(_Found(file, file.as_uri(), fmt, f"{stat.st_size}:{stat.st_mtime_ns}"))

    try:
        table: Table | None = catalog.load_table(identifier)
    except NoSuchTableError:
        table = None
    registry: dict[str, str] = (
        json.loads(table.properties.get(REGISTRY_KEY, "{}")) if table is not None else {}
    )
    fresh = [f for f in found if f.uri not in registry]
    unchanged = [str(f.path) for f in found if registry.get(f.uri) == f.signature]
    modified = [str(f.path) for f in found if f.uri in registry and registry[f.uri] != f.signature]
    if not fresh:
        return CrawlReport(
            identifier,
            unchanged=unchanged,
            modified=modified,
            unsupported=unsupported,
            snapshot_id=_current(table),
        )

    import pyarrow.parquet as pq

    con = _duckdb()
    for f in fresh:
        if f.format == "parquet":
            f.schema = pq.read_schema(f.path)
        else:
            f.data = _read(con, f)
            f.schema = f.data.schema
    schema = _unify(fresh)

    created = False
    added: list[str] = []
    widened: list[str] = []
    if table is None:
        namespace = identifier.rpartition(".")[0]
        if namespace:
            catalog.create_namespace_if_not_exists(namespace)
        table = catalog.create_table(identifier, schema=schema)
        created = True
        added = list(schema.names)
    else:
        added, widened = _evolve(table, schema)

    result: dict[str, Any] = {}

    def register(t: Table) -> None:
        reg: dict[str, str] = json.loads(t.properties.get(REGISTRY_KEY, "{}"))
        todo = [f for f in fresh if f.uri not in reg]  # another crawler may have won the race
        for f in todo:
            f.in_place = f.format == "parquet" and f.schema is not None and _fits(t, f.schema)
        target = t.schema().as_arrow()
        converted = [
            _conform(f.data if f.data is not None else pq.read_table(f.path), target)
            for f in todo
            if not f.in_place
        ]
        reg.update({f.uri: f.signature for f in todo})
        tx = t.transaction()
        tx.set_properties({REGISTRY_KEY: json.dumps(reg, sort_keys=True, separators=(",", ":"))})
        in_place = [f.uri for f in todo if f.in_place]
        props = {"fluvial.crawler.registered": str(len(todo))}
        if in_place:
            tx.add_files(in_place, snapshot_properties=props)
        rows = sum(len(c) for c in converted)
        if converted:
            tx.append(pa.concat_tables(converted), snapshot_properties=props)
        tx.commit_transaction()
        result["todo"] = todo
        result["rows"] = rows + sum(pq.read_metadata(f.path).num_rows for f in todo if f.in_place)

    commit_with_retry(table, register, what="crawl")
    todo: list[_Found] = result["todo"]
    return CrawlReport(
        identifier,
        created=created,
        added_columns=added,
        widened_columns=widened,
        registered_in_place=[str(f.path) for f in todo if f.in_place],
        converted=[str(f.path) for f in todo if not f.in_place],
        unchanged=unchanged,
        modified=modified,
        unsupported=unsupported,
        rows=result["rows"],
        snapshot_id=_current(table.refresh()),
    )


def _current(table: Table | None) -> int | None:
    snap = table.current_snapshot() if table is not None else None
    return snap.snapshot_id if snap else None
