"""``'connector' = 'lake'``: append a pipeline's rows to an Iceberg table of the lake.

Options::

    'table'                          the lake table, ``zone.name`` (required; created from
                                     the sink table's columns, in its zone's layout, when
                                     it does not exist)
    'time-column'                    when creating: the column the zone's time transform
                                     partitions by (``hour`` in raw, ``day`` elsewhere)
    'sink.transactional-id-prefix'   names the sink's commits (two jobs writing one table
                                     need different prefixes)

Exactly once per checkpoint id. ``commit(id)`` appends what was staged since the last
commit in **one** Iceberg commit whose snapshot summary carries::

    fluvial.sink.id          = curated.page_counts
    fluvial.sink.checkpoint  = 42

and which sets the table property ``fluvial.sink-checkpoint.<sink id>`` to the same id.
Data files, schema changes (:func:`fluvial.lake.append` evolves the table) and the id
commit atomically, so after a crash the table either has the checkpoint or not. ``open``
reads the newest id of this sink from the table's snapshot ancestry (the property when
snapshot expiry removed those snapshots) and ``commit`` skips any id up to it: a restore
that replays the last checkpoint adds nothing twice. The commit is exclusive: if another
writer commits first, the sink re-reads the table and commits again on top, unless the
winner already committed this very id (a second process of the same sink).

A commit with no rows makes no snapshot. The sink accepts appends only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa

from fluvial.errors import (
    CommitConflictError,
    IncompatibleSchemaError,
    NotFoundError,
    UsageError,
)
from fluvial.stream.connectors.base import ConnectorContext, Sink
from fluvial.stream.connectors.options import Options

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from fluvial.lake.catalog import Lake
    from fluvial.stream.sql.ast import CreateTable

__all__ = ["CHECKPOINT_KEY", "PROPERTY_PREFIX", "SINK_ID_KEY", "LakeSink", "committed_checkpoint"]

#: snapshot summary keys of a sink's commit
SINK_ID_KEY = "fluvial.sink.id"
CHECKPOINT_KEY = "fluvial.sink.checkpoint"
#: table property ``<prefix><sink id>``: the sink's newest checkpoint (survives expiry)
PROPERTY_PREFIX = "fluvial.sink-checkpoint."
#: commit attempts when other writers keep committing first
ATTEMPTS = 10


def committed_checkpoint(table: Table, sink_id: str) -> int | None:
    """The newest checkpoint id *sink_id* committed into *table*, or None.

    Walks back from the current snapshot to the newest one whose summary names the sink;
    when none is left (expired), reads the table property the same commits set.

    >>> committed_checkpoint.__name__
    'committed_checkpoint'
    """
    from pyiceberg.table.snapshots import ancestors_of

    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        summary = snapshot.summary
        if summary is None or summary[SINK_ID_KEY] != sink_id:
            continue
        value = summary[CHECKPOINT_KEY]
        if value is not None:
            return int(value)
    prop = table.properties.get(PROPERTY_PREFIX + sink_id)
    return int(prop) if prop is not None else None


def _is_time(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) or pa.types.is_date(t)


class LakeSink(Sink):
    """Appends to a lake table, once per checkpoint id (see the module docstring)."""

    transactional: ClassVar[bool] = True
    required_options: ClassVar[tuple[str, ...]] = ("table",)
    optional_options: ClassVar[tuple[str, ...]] = ("time-column", "sink.transactional-id-prefix")

    def __init__(
        self, table: CreateTable, options: Mapping[str, str], context: ConnectorContext
    ) -> None:
        from fluvial.lake.zones import zone_of

        super().__init__(table, options, context)
        self.opts = Options(table, options)
        self.table_name = self.opts.require("table")
        try:
            zone_of(self.table_name)
        except (UsageError, NotFoundError) as exc:
            raise self.opts.error(f"option 'table': {exc}") from exc
        self.time_column = self.opts.get("time-column")
        if self.time_column is not None:
            if self.time_column not in self.schema.names:
                raise self.opts.error(
                    f"'time-column' names '{self.time_column}', which is not a column; "
                    f"expected one of {', '.join(self.schema.names)}"
                )
            if not _is_time(self.schema.field(self.time_column).type):
                raise self.opts.error(
                    f"'time-column' must be a TIMESTAMP, TIMESTAMP_LTZ or DATE column, "
                    f"found '{self.time_column}' of type {self.schema.field(self.time_column).type}"
                )
        prefix = self.opts.get("sink.transactional-id-prefix")
        self.sink_id = f"{self.table_name}.{prefix}" if prefix else self.table_name
        self.lake: Lake | None = None
        self.iceberg: Table | None = None
        self.last_committed: int | None = None
        self._staged: list[pa.Table] = []

    def open(self, last_committed: int | None = None) -> None:
        from fluvial.lake.catalog import open_lake
        from fluvial.lake.evolution import plan_changes
        from fluvial.lake.write import iceberg_arrow_schema

        if self.context.project is None:
            raise self.opts.error("the 'lake' connector needs a project (its lake)")
        try:
            self.lake = lake = open_lake(self.context.project)
            if not lake.exists(self.table_name):
                try:
                    lake.create_table(self.table_name, self.schema, time_column=self.time_column)
                except UsageError:  # created meanwhile by another writer
                    if not lake.exists(self.table_name):
                        raise
            self.iceberg = lake.table(self.table_name)
            plan_changes(self.iceberg.schema().as_arrow(), iceberg_arrow_schema(self.schema))
        except (IncompatibleSchemaError, NotFoundError) as exc:
            raise self.opts.error(f"lake table '{self.table_name}': {exc}") from exc
        self.last_committed = committed_checkpoint(self.iceberg, self.sink_id)

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._staged.append(table)

    def commit(self, checkpoint_id: int) -> None:
        from pyiceberg.exceptions import CommitFailedException

        from fluvial.lake.write import append

        assert self.lake is not None and self.iceberg is not None, "open() the sink first"
        staged, self._staged = self._staged, []
        if self.last_committed is not None and checkpoint_id <= self.last_committed:
            return  # a replayed commit: the table has its rows
        if not staged:
            return  # nothing to make visible: no empty snapshot per checkpoint
        data = pa.concat_tables(staged).select(self.schema.names)
        marker = str(checkpoint_id)
        for attempt in range(ATTEMPTS):
            try:
                append(
                    self.iceberg,
                    data,
                    properties={SINK_ID_KEY: self.sink_id, CHECKPOINT_KEY: marker},
                    table_properties={PROPERTY_PREFIX + self.sink_id: marker},
                    exclusive=True,
                )
                break
            except CommitFailedException:
                time.sleep(0.01 * (1 + attempt))
                # another writer won: if it was this sink with this id, the rows are there
                self.iceberg = self.lake.table(self.table_name)
                done = committed_checkpoint(self.iceberg, self.sink_id)
                if done is not None and done >= checkpoint_id:
                    self.last_committed = done
                    return
        else:
            raise CommitConflictError(
                f"lake sink '{self.sink_id}': checkpoint {checkpoint_id} lost to concurrent "
                f"commits on '{self.table_name}' {ATTEMPTS} times"
            )
        self.last_committed = checkpoint_id

    def close(self) -> None:
        self._staged = []
        self.iceberg = None
        if self.lake is not None:
            self.lake.close()
            self.lake = None
