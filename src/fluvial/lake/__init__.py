"""The lakehouse: Iceberg tables in zones, the exactly-once archiver, DuckDB queries.

Our S3 + Glue Data Catalog + Athena + Firehose: :func:`open_lake` opens a project's lake
(a SQL catalog and a warehouse), :class:`Archiver` moves the log's topics into the raw
zone exactly once, :func:`append` writes Arrow tables with schema evolution, and
:func:`connect` gives a DuckDB connection where every table is a view ``zone.table``.
See ``docs/lake.md``.
"""

from __future__ import annotations

from fluvial.lake.archive import (
    Archiver,
    ArchiveStats,
    Route,
    committed_offsets,
    default_routes,
)
from fluvial.lake.catalog import Lake, open_lake
from fluvial.lake.evolution import SchemaChange, SchemaVersion, plan_changes, schema_history
from fluvial.lake.query import connect, load_extensions, run_sql
from fluvial.lake.write import AppendResult, append
from fluvial.lake.zones import ZONES, Zone

__all__ = [
    "ZONES",
    "AppendResult",
    "ArchiveStats",
    "Archiver",
    "Lake",
    "Route",
    "SchemaChange",
    "SchemaVersion",
    "Zone",
    "append",
    "committed_offsets",
    "connect",
    "default_routes",
    "load_extensions",
    "open_lake",
    "plan_changes",
    "run_sql",
    "schema_history",
]
