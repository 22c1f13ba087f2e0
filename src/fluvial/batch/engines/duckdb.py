"""The embedded batch engine: DuckDB, with every lake table readable by name.

The connection is the warehouse's when the run touches marts (so ``marts.*`` read by
name), else an in-memory one from :func:`fluvial.lake.query.connect`. Inputs are bound by
rewriting the SELECT's table references (sqlglot) to per-input names: Arrow tables are
registered zero-copy, Iceberg and Parquet inputs become temporary views, so nothing of
a run is ever written into the warehouse file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from fluvial.batch.engines.base import Engine, IcebergInput, Input
from fluvial.errors import SqlError
from fluvial.lake.query import connect

if TYPE_CHECKING:
    from fluvial.batch.warehouse import Warehouse
    from fluvial.lake.catalog import Lake
    from fluvial.project import Project

__all__ = ["DuckDbEngine", "bind_inputs"]


def _alias(name: str) -> str:
    return "__fluvial_in_" + name.replace(".", "__")


def bind_inputs(sql: str, names: set[str]) -> str:
    """*sql* with each table named in *names* read from its input alias instead.

    >>> bind_inputs("SELECT e.a FROM raw.events e JOIN refined.u ON true", {"raw.events"})
    'SELECT e.a FROM "__fluvial_in_raw__events" AS e JOIN refined.u ON TRUE'
    """
    tree = sqlglot.parse_one(sql, read="duckdb")

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            name = f"{node.db}.{node.name}"
            if node.db and not node.catalog and name in names:
                alias = node.alias or node.name
                return exp.Table(
                    this=exp.to_identifier(_alias(name), quoted=True),
                    alias=exp.TableAlias(this=exp.to_identifier(alias)),
                )
        return node

    return tree.transform(swap).sql(dialect="duckdb")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DuckDbEngine(Engine):
    """Runs SELECTs in DuckDB; results come back as Arrow (no row is touched in Python)."""

    name: ClassVar[str] = "duckdb"
    reads_warehouse: ClassVar[bool] = True

    def __init__(self, project: Project, lake: Lake, warehouse: Warehouse | None = None) -> None:
        super().__init__(project, lake, warehouse)
        self._own: duckdb.DuckDBPyConnection | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The connection SELECTs run on."""
        if self.warehouse is not None:
            return self.warehouse.con
        if self._own is None:
            self._own = connect(self.lake)
        return self._own

    def run_select(self, sql: str, inputs: Mapping[str, Input]) -> pa.Table:
        """Run *sql* with *inputs* bound by name (see :mod:`fluvial.batch.engines.base`)."""
        con = self.con
        registered: list[str] = []
        views: list[str] = []
        try:
            for name, value in inputs.items():
                alias = _alias(name)
                if isinstance(value, pa.Table):
                    con.register(alias, value)
                    registered.append(alias)
                    continue
                if isinstance(value, IcebergInput):
                    args = [_literal(value.metadata_location)]
                    if value.snapshot_id is not None:
                        args.append(f"snapshot_from_id => {value.snapshot_id}")
                    source = f"iceberg_scan({', '.join(args)})"
                elif value.endswith(".metadata.json"):
                    source = f"iceberg_scan({_literal(value)})"
                else:
                    source = f"read_parquet({_literal(value)}, union_by_name => true)"
                con.execute(f'CREATE OR REPLACE TEMP VIEW "{alias}" AS SELECT * FROM {source}')
                views.append(alias)
            query = bind_inputs(sql, set(inputs)) if inputs else sql
            return con.sql(query).to_arrow_table()
        except duckdb.IOException:
            raise  # transient (a file being replaced, a lock): the runner retries
        except duckdb.Error as exc:
            raise SqlError(str(exc).strip().split("\n")[0]) from exc
        finally:
            for alias in registered:
                con.unregister(alias)
            for alias in views:
                con.execute(f'DROP VIEW IF EXISTS "{alias}"')

    def execute(self, sql: str) -> None:
        """Run a statement (DDL) on the engine's connection."""
        self.con.execute(sql)

    def close(self) -> None:
        """Close the in-memory connection (the warehouse closes its own)."""
        if self._own is not None:
            self._own.close()
            self._own = None
