"""The warehouse: a DuckDB file of marts (our Redshift), which reads the lake by name.

``<data_dir>/warehouse.duckdb`` holds the schema ``marts``. When Fluvial opens it, every
lake table is (re)declared in it as a view ``zone.table`` over its current Iceberg
metadata, so marts — tables and views — read the lake by the same names models use.
DuckDB lets one process at a time open the file for writing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from fluvial.lake.query import connect, quote

if TYPE_CHECKING:
    from fluvial.lake.catalog import Lake
    from fluvial.project import Project

__all__ = ["MARTS", "Warehouse", "connect_warehouse", "refresh_lake_view", "warehouse_path"]

#: the warehouse schema that mart models write to
MARTS = "marts"


def warehouse_path(project: Project) -> Path:
    """Where the project's warehouse file is."""
    return project.data_dir / project.settings.batch.warehouse


def connect_warehouse(project: Project, lake: Lake) -> duckdb.DuckDBPyConnection:
    """Open the warehouse for writing, with every lake table as a view ``zone.table``.

    Raises:
        duckdb.IOException: another process has the file open for writing.
    """
    path = warehouse_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the lake's views of the previous opening point at old metadata: declare them anew
    # (CASCADE leaves the marts' views alone: DuckDB binds views when they are queried)
    con = duckdb.connect(str(path))
    try:
        for zone in lake.zones:
            con.execute(f"DROP SCHEMA IF EXISTS {quote(zone)} CASCADE")
    finally:
        con.close()
    con = connect(lake, database=str(path))
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {MARTS}")
    return con


def refresh_lake_view(con: duckdb.DuckDBPyConnection, lake: Lake, name: str) -> None:
    """Point the view of lake table *name* at its current snapshot (after a commit)."""
    zone, _, short = name.partition(".")
    target = f"{quote(zone)}.{quote(short)}"
    kinds = con.execute(
        "SELECT 'TABLE' FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = ? AND table_name = ? UNION ALL "
        "SELECT 'VIEW' FROM duckdb_views() WHERE database_name = current_database() "
        "AND schema_name = ? AND view_name = ?",
        [zone, short, zone, short],
    ).fetchall()
    for (kind,) in kinds:
        con.execute(f"DROP {kind} {target}")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(zone)}")
    table = lake.table(name)
    if table.current_snapshot() is None:
        empty = table.schema().as_arrow().empty_table()
        con.register("_fluvial_empty", empty)
        con.execute(f"CREATE TABLE {target} AS SELECT * FROM _fluvial_empty")
        con.unregister("_fluvial_empty")
        return
    location = table.metadata_location.replace("'", "''")
    con.execute(f"CREATE VIEW {target} AS SELECT * FROM iceberg_scan('{location}')")


class Warehouse:
    """The warehouse of one run, opened on first use and closed with the run."""

    def __init__(self, project: Project, lake: Lake) -> None:
        self.project = project
        self.lake = lake
        self.path = warehouse_path(project)
        self._con: duckdb.DuckDBPyConnection | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The connection (the warehouse file, the lake's tables as views)."""
        if self._con is None:
            self._con = connect_warehouse(self.project, self.lake)
        return self._con

    @property
    def is_open(self) -> bool:
        """Whether the file has been opened by this run."""
        return self._con is not None

    def refresh(self, name: str) -> None:
        """After a commit to lake table *name*, let the warehouse read its new snapshot."""
        if self._con is not None:
            refresh_lake_view(self._con, self.lake, name)

    def close(self) -> None:
        """Close the connection (and release the file)."""
        if self._con is not None:
            self._con.close()
            self._con = None
