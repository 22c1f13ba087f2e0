"""Lookup (processing-time temporal) joins: each micro-batch joined with a dimension table
as it is when the batch is processed — Flink's ``JOIN dim FOR SYSTEM_TIME AS OF
s.proc_time``.

The dimension's rows come from its connector: ``filesystem`` (every file, read again when
a file changes), ``store`` (point lookups of the batch's distinct keys with one
``get_many``), ``lake`` (the table's current snapshot, read again when it changes). The
join itself is one DuckDB query per batch (``l`` the batch, ``r`` the dimension rows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import PipelineError

if TYPE_CHECKING:
    from fluvial.stream.connectors.base import ConnectorContext
    from fluvial.stream.plan.nodes import LookupJoin

__all__ = ["Lookup"]


class Lookup:
    """The dimension rows of a lookup join, and the join."""

    def __init__(self, step: LookupJoin, context: ConnectorContext) -> None:
        self.step = step
        self.context = context
        self.connector = step.dim.options.get("connector", "")
        if self.connector not in ("filesystem", "store", "lake"):
            raise PipelineError(
                f"lookup join: table '{step.dim.name}' has connector '{self.connector}'; a "
                "dimension is read from 'filesystem', 'store' or 'lake'"
            )
        self.schema = step.dim.physical_schema()
        self._rows: pa.Table | None = None
        self._version: Any = None
        self._con = duckdb.connect()
        self._con.execute("SET TimeZone = 'UTC'")

    # -- the dimension ----------------------------------------------------------------------

    def _files_version(self) -> Any:
        from fluvial.stream.connectors.filesystem import _resolve, list_files
        from fluvial.stream.connectors.options import Options

        root = _resolve(Options(self.step.dim), self.context)
        files = list_files(root) if root.is_dir() else [root]
        return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)

    def _read_files(self) -> pa.Table:
        from fluvial.stream.connectors import create_source

        source = create_source(self.step.dim, self.context)
        source.open(None)
        parts = []
        try:
            while not source.finished():
                parts += [b.table for b in source.poll(1 << 20, 0.0)]
        finally:
            source.close()
        return pa.concat_tables(parts) if parts else self.schema.empty_table()

    def _lake_table(self) -> Any:
        from fluvial.lake import open_lake

        if self.context.project is None:
            raise PipelineError("a lookup join on a lake table needs a project")
        name = self.step.dim.options.get("table")
        if not name:
            raise PipelineError(f"lookup table '{self.step.dim.name}' needs a 'table' option")
        return open_lake(self.context.project).table(name)

    def rows(self, batch: pa.Table) -> pa.Table:
        """The dimension rows this batch may join with."""
        if self.connector == "store":
            return self._store_rows(batch)
        if self.connector == "filesystem":
            version = self._files_version()
            if self._rows is None or version != self._version:
                self._rows, self._version = self._read_files(), version
        else:
            table = self._lake_table()
            snapshot = table.current_snapshot()
            version = snapshot.snapshot_id if snapshot else None
            if self._rows is None or version != self._version:
                self._rows, self._version = table.scan().to_arrow(), version
        assert self._rows is not None
        return self._rows

    def _store_rows(self, batch: pa.Table) -> pa.Table:
        from fluvial.serve.store import open_store

        if self.context.project is None:
            raise PipelineError("a lookup join on a store table needs a project")
        name = self.step.dim.options.get("table") or self.step.dim.name
        keys = self.step.dim.primary_key
        pairs = dict((d, s) for s, d in self.step.keys)
        if not keys or any(k not in pairs for k in keys):
            raise PipelineError(
                f"lookup join on store table '{name}': the condition must equate every "
                f"PRIMARY KEY column ({', '.join(keys) or 'none declared'})"
            )
        wanted = pa.table({k: batch.column(pairs[k]) for k in keys})
        wanted = wanted.group_by(list(keys)).aggregate([])
        store = open_store(self.context.project)
        try:
            found = store.get_many(name, wanted)
        finally:
            store.close()
        return (
            found.select([f.name for f in self.schema])
            if found.num_rows
            else self.schema.empty_table()
        )

    # -- the join ---------------------------------------------------------------------------

    def join(self, batch: pa.Table) -> pa.Table:
        dim = self.rows(batch)
        sql = (
            f"SELECT {self.step.select_sql} FROM l {self.step.how.upper()} JOIN r "
            f"ON {self.step.on_sql}"
        )
        self._con.register("l", batch)
        self._con.register("r", dim)
        try:
            out = self._con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise PipelineError(f"lookup join failed: {exc} (in {sql!r})") from exc
        finally:
            self._con.unregister("l")
            self._con.unregister("r")
        for i, f in enumerate(out.schema):
            if pa.types.is_timestamp(f.type) and f.type.unit != "ms":
                ms = pa.timestamp("ms", tz=f.type.tz)
                out = out.set_column(i, f.name, pc.cast(out.column(i), ms, safe=False))
        return out
