"""Query the lake with DuckDB (our Athena): every table is a view named ``zone.table``.

:func:`connect` opens a DuckDB connection, loads the ``avro`` and ``iceberg`` extensions
(and ``httpfs`` for an ``s3://`` warehouse) from the ``duckdb-extension-*`` packages
installed with Fluvial — nothing is ever downloaded — creates one schema per zone, and
one view per table over ``iceberg_scan(<its metadata file>)``. Time travel pins the views
to a snapshot: ``snapshot_id`` pins the table that has that snapshot, ``as_of`` pins every
table to the snapshot that was current then (a table with none then reads as empty).
"""

from __future__ import annotations

import importlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from fluvial.errors import MissingDependencyError, NotFoundError, SqlError

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from fluvial.lake.catalog import Lake

__all__ = ["connect", "extension_path", "load_extensions", "quote", "run_sql"]


def quote(name: str) -> str:
    """A SQL identifier, double-quoted (inner quotes doubled).

    >>> print(quote("raw"))
    "raw"
    """
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def extension_path(name: str) -> Path:
    """The extension file shipped by the ``duckdb-extension-<name>`` package.

    Raises:
        MissingDependencyError: the package is not installed (or not for this DuckDB).
    """
    package = f"duckdb_extension_{name}"
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise MissingDependencyError(f"duckdb-extension-{name}", "all") from exc
    assert module.__file__ is not None
    path = Path(module.__file__).parent / "extensions" / f"v{duckdb.__version__}"
    path = path / f"{name}.duckdb_extension"
    if not path.exists():
        raise MissingDependencyError(f"duckdb-extension-{name}=={duckdb.__version__}", "all")
    return path


def load_extensions(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """LOAD extensions from their packages' files (never INSTALL from the network)."""
    for name in names:
        con.execute(f"LOAD {_literal(str(extension_path(name)))}")


def _s3_secret(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    props = lake.io_properties
    parts = ["TYPE s3"]
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        parts += [f"KEY_ID {_literal(key)}", f"SECRET {_literal(secret)}"]
        token = os.environ.get("AWS_SESSION_TOKEN")
        if token:  # temporary credentials (an assumed role, SSO)
            parts.append(f"SESSION_TOKEN {_literal(token)}")
    region = props.get("s3.region") or os.environ.get("AWS_REGION")
    if region:
        parts.append(f"REGION {_literal(region)}")
    endpoint = props.get("s3.endpoint")
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        parts += [f"ENDPOINT {_literal(host or scheme)}", "URL_STYLE 'path'"]
        parts.append(f"USE_SSL {'false' if scheme == 'http' else 'true'}")
    con.execute(f"CREATE OR REPLACE SECRET fluvial_lake ({', '.join(parts)})")


def _pick_snapshot(
    table: Table, snapshot_id: int | None, as_of_ms: int | None
) -> tuple[bool, int | None]:
    """(readable, snapshot id to pin or None for current) for one table."""
    if as_of_ms is not None:
        snap = table.snapshot_as_of_timestamp(as_of_ms)
        return (snap is not None, snap.snapshot_id if snap is not None else None)
    if snapshot_id is not None and table.snapshot_by_id(snapshot_id) is not None:
        return True, snapshot_id
    return table.current_snapshot() is not None, None


def connect(
    lake: Lake,
    *,
    snapshot_id: int | None = None,
    as_of: datetime | None = None,
    database: str = ":memory:",
    schema: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with every lake table as a view ``zone.table``.

    With *schema*, every view is instead ``<schema>."zone.table"`` and no zone schema
    exists (the governed sandbox hides the tables behind a name users cannot know).

    Raises:
        NotFoundError: *snapshot_id* is no snapshot of any table.
        MissingDependencyError: a DuckDB extension package is missing.
    """
    con = duckdb.connect(
        database,
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
    )
    load_extensions(con, "avro", "iceberg")
    if lake.warehouse.startswith(("s3://", "s3a://")):
        load_extensions(con, "httpfs")
        _s3_secret(con, lake)
    as_of_ms = None
    if as_of is not None:
        moment = as_of if as_of.tzinfo is not None else as_of.replace(tzinfo=UTC)
        as_of_ms = int(moment.timestamp() * 1000)
    pinned = False
    for zone in lake.zones if schema is None else (schema,):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(zone)}")
    for name in lake.tables():
        table = lake.table(name)
        zone, _, short = name.partition(".")
        view = (
            f"{quote(zone)}.{quote(short)}" if schema is None else f"{quote(schema)}.{quote(name)}"
        )
        readable, snap = _pick_snapshot(table, snapshot_id, as_of_ms)
        pinned = pinned or (snap is not None and snap == snapshot_id)
        if not readable:  # no snapshot (yet, or at that time): an empty view of its schema
            empty = table.schema().as_arrow().empty_table()
            con.register("_fluvial_empty", empty)
            con.execute(f"CREATE TABLE {view} AS SELECT * FROM _fluvial_empty")
            con.unregister("_fluvial_empty")
            continue
        args = [_literal(table.metadata_location)]
        if snap is not None:
            args.append(f"snapshot_from_id => {snap}")
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM iceberg_scan({', '.join(args)})")
    if snapshot_id is not None and not pinned:
        raise NotFoundError(f"no lake table has a snapshot with id {snapshot_id}")
    return con


def run_sql(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """Run *sql* on a lake connection and fetch its result as Arrow (empty for statements).

    Raises:
        SqlError: DuckDB refused or failed the query (its message kept).
    """
    try:
        relation = con.sql(sql)
        return relation.to_arrow_table() if relation is not None else pa.table({})
    except duckdb.Error as exc:
        raise SqlError(str(exc).strip(), source="sql") from exc
