"""The embedded batch engine: DuckDB, with every lake table readable by name.

The connection is the warehouse's when the run touches marts (so ``marts.*`` read by
name), else an in-memory one from :func:`fluvial.lake.query.connect`. Inputs are bound by
rewriting the SELECT's table references (sqlglot) to per-input names: Arrow tables are
registered zero-copy, Iceberg and Parquet inputs become temporary views, so nothing of
a run is ever written into the warehouse file.

:meth:`DuckDbEngine.stage_select` streams a result into a Parquet file under
``<data_dir>/tmp/duckdb`` (DuckDB spilling its joins, sorts and windows there too once
``[batch] memory_limit`` is reached); the build reads it back in Arrow batches, so memory
stays bounded whatever the result's size.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from fluvial.batch.engines.base import Engine, IcebergInput, Input, StagedResult
from fluvial.errors import SqlError
from fluvial.lake.query import connect

if TYPE_CHECKING:
    from fluvial.batch.warehouse import Warehouse
    from fluvial.lake.catalog import Lake
    from fluvial.project import Project

__all__ = ["DuckDbEngine", "DuckDbResult", "bind_inputs"]

_staged = itertools.count()


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
        self._tuned: duckdb.DuckDBPyConnection | None = None
        self._spill = project.data_dir / "tmp" / "duckdb"

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The connection SELECTs run on (with ``[batch] memory_limit`` and a spill folder)."""
        if self.warehouse is not None:
            con = self.warehouse.con
        else:
            if self._own is None:
                self._own = connect(self.lake)
            con = self._own
        if con is not self._tuned:
            self._tune(con)
            self._tuned = con
        return con

    def _tune(self, con: duckdb.DuckDBPyConnection) -> None:
        self._spill.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = {_literal(str(self._spill))}")
        # a model's rows have no order: let sorts, windows and joins spill freely
        con.execute("SET preserve_insertion_order = false")
        limit = self.project.settings.batch.memory_limit
        if limit:
            try:
                con.execute(f"SET memory_limit = {_literal(limit)}")
            except duckdb.Error as exc:
                raise SqlError(f"[batch] memory_limit {limit!r}: {exc}") from None

    @contextmanager
    def _bound(
        self, sql: str, inputs: Mapping[str, Input], con: duckdb.DuckDBPyConnection | None = None
    ) -> Iterator[str]:
        """*sql* with *inputs* bound to temporary names, dropped on exit."""
        con = self.con if con is None else con
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
            yield bind_inputs(sql, set(inputs)) if inputs else sql
        except duckdb.IOException:
            raise  # transient (a file being replaced, a lock): the runner retries
        except duckdb.Error as exc:
            raise SqlError(str(exc).strip().split("\n")[0]) from exc
        finally:
            for alias in registered:
                con.unregister(alias)
            for alias in views:
                con.execute(f'DROP VIEW IF EXISTS "{alias}"')

    def run_select(self, sql: str, inputs: Mapping[str, Input]) -> pa.Table:
        """Run *sql* with *inputs* bound by name (see :mod:`fluvial.batch.engines.base`)."""
        with self._bound(sql, inputs) as query:
            return self.con.sql(query).to_arrow_table()

    def stage_select(self, sql: str, inputs: Mapping[str, Input]) -> StagedResult:
        """Run *sql* into a Parquet file of the spill folder, streaming, on a connection of
        its own (the whole memory limit for this query; the warehouse's when it reads
        marts)."""
        path = self._spill / f"out-{os.getpid()}-{next(_staged)}.parquet"
        main = self.con
        reads_marts = self.warehouse is not None and "marts." in sql.lower()
        con = main if reads_marts else connect(self.lake)
        try:
            if con is not main:
                self._tune(con)
            with self._bound(sql, inputs, con) as query:
                con.execute(
                    f"COPY ({query}) TO {_literal(str(path))} "
                    "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)"
                )
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            if con is not main:
                con.close()
        reader = duckdb.connect()  # reads the file back with the whole limit to itself
        self._tune(reader)
        return DuckDbResult(reader, path)

    def execute(self, sql: str) -> None:
        """Run a statement (DDL) on the engine's connection."""
        self.con.execute(sql)

    def close(self) -> None:
        """Close the in-memory connection (the warehouse closes its own)."""
        if self._own is not None:
            self._own.close()
            self._own = None


class DuckDbResult(StagedResult):
    """A result in a Parquet file of the spill folder, read back in batches with the
    query's Arrow types; :meth:`close` deletes the file."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.con = con
        self.path = path
        self.source = f"read_parquet({_literal(str(path))})"
        self.schema = con.sql(f"SELECT * FROM {self.source} LIMIT 0").to_arrow_reader().schema
        row = con.sql(f"SELECT count(*) FROM {self.source}").fetchone()
        self.num_rows = int(row[0]) if row else 0

    def batches(self, rows: int) -> Iterator[pa.Table]:
        """The rows, *rows* at a time, read with Arrow's Parquet reader (row group by row
        group, so memory holds one batch) and cast to the query's Arrow types."""
        import pyarrow.parquet as pq

        with pq.ParquetFile(self.path) as parquet:
            for batch in parquet.iter_batches(batch_size=rows):
                table = pa.Table.from_batches([batch])
                yield table.cast(self.schema) if table.schema != self.schema else table

    def key_problems(self, keys: Sequence[str]) -> tuple[int, int]:
        """Counted by DuckDB over the staged rows."""
        cols = ", ".join(f'"{k}"' for k in keys)
        nulls = " + ".join(f'count(*) FILTER (WHERE "{k}" IS NULL)' for k in keys)
        distinct = f"(SELECT count(*) FROM (SELECT DISTINCT {cols} FROM {self.source}))"
        row = self.con.sql(f"SELECT {nulls}, count(*) - {distinct} FROM {self.source}").fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def close(self) -> None:
        """Delete the file and close the connection reading it."""
        self.path.unlink(missing_ok=True)
        self.con.close()
