"""``'connector' = 'store'``: upsert a pipeline's results into the operational store.

Options::

    'table'                          the store table (required; created on the first commit)
    'ttl'                            rows expire this long after their write, e.g. '1 h'
                                     (default: the store's [store] default_ttl)
    'sink.transactional-id-prefix'   names the commit record (two jobs writing one table
                                     need different prefixes)

The key is the table's ``PRIMARY KEY (…) NOT ENFORCED``, which is required. The sink
accepts updates: a changelog (an int8 ``_op`` column with Flink's row kinds) upserts
inserts and update-afters, deletes deletes and ignores update-befores, the last change of
a key winning; rows without ``_op`` are upserted. ``commit(id)`` applies what was staged
since the last commit atomically with recording *id* in the store
(:meth:`~fluvial.serve.store.Store.apply`), so a replayed commit is skipped: exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pyarrow as pa

from fluvial.errors import SqlError
from fluvial.stream.connectors.base import ConnectorContext, Sink
from fluvial.stream.connectors.options import Options

if TYPE_CHECKING:
    from fluvial.serve.store import Store
    from fluvial.stream.sql.ast import CreateTable

__all__ = ["StoreSink"]

OP = "_op"


class StoreSink(Sink):
    """Applies changelogs to a store table, once per checkpoint id."""

    accepts_updates: ClassVar[bool] = True
    transactional: ClassVar[bool] = True
    required_options: ClassVar[tuple[str, ...]] = ("table",)
    optional_options: ClassVar[tuple[str, ...]] = ("ttl", "sink.transactional-id-prefix")

    def __init__(
        self, table: CreateTable, options: Mapping[str, str], context: ConnectorContext
    ) -> None:
        super().__init__(table, options, context)
        self.opts = Options(table, options)
        self.store_table = self.opts.require("table")
        if not table.primary_key:
            raise self.opts.error(
                "the 'store' connector upserts by key: declare PRIMARY KEY (…) NOT ENFORCED"
            )
        for name in table.primary_key:
            if name not in self.schema.names:
                raise self.opts.error(
                    f"PRIMARY KEY column '{name}' is not a physical column; "
                    f"expected one of {', '.join(self.schema.names)}"
                )
        self.key: tuple[str, ...] = tuple(table.primary_key)
        self.ttl_seconds: float | None = None
        ttl = self.opts.get("ttl")
        if ttl is not None:
            from fluvial.stream.plan.build import parse_duration_ms

            try:
                self.ttl_seconds = parse_duration_ms(ttl) / 1000
            except SqlError as exc:
                raise self.opts.error(f"option 'ttl': {exc.detail}") from exc
        prefix = self.opts.get("sink.transactional-id-prefix")
        self.sink_id = f"{self.store_table}.{prefix}" if prefix else self.store_table
        self.store: Store | None = None
        self.last_committed: int | None = None
        self._staged: list[pa.Table] = []

    def open(self, last_committed: int | None = None) -> None:
        from fluvial.serve.store import open_store

        if self.context.project is None:
            raise self.opts.error("the 'store' connector needs a project (its [store])")
        self.store = open_store(self.context.project)
        self.last_committed = self.store.last_checkpoint(self.sink_id)

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._staged.append(table)

    def _changes(self, staged: list[pa.Table]) -> pa.Table:
        """The staged tables as one changelog (appends become inserts)."""
        if not staged:
            return self.schema.empty_table()
        if not any(OP in t.column_names for t in staged):
            return pa.concat_tables([t.select(self.schema.names) for t in staged])
        tagged = [
            t.select([*self.schema.names, OP])
            if OP in t.column_names
            else t.select(self.schema.names).append_column(
                OP, pa.array(np.zeros(t.num_rows, dtype=np.int8))
            )
            for t in staged
        ]
        return pa.concat_tables(tagged, promote_options="permissive")

    def commit(self, checkpoint_id: int) -> None:
        assert self.store is not None, "open() the sink first"
        staged, self._staged = self._staged, []
        if self.last_committed is not None and checkpoint_id <= self.last_committed:
            return  # a replayed commit: the store has its rows
        self.store.apply(
            self.store_table,
            self._changes(staged),
            self.key,
            checkpoint_id,
            self.sink_id,
            ttl_seconds=self.ttl_seconds,
        )
        self.last_committed = checkpoint_id

    def close(self) -> None:
        self._staged = []
        if self.store is not None:
            self.store.close()
            self.store = None
