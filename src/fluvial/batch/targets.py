"""Where a model's output goes: an Iceberg table of the lake, or a table of the warehouse.

Both kinds of target offer the same writes — replace, append, overwrite the rows of some
keys, overwrite some partitions — each **one** atomic commit that also records the
positions (upstream table -> snapshot id) the output was computed from: in the Iceberg
snapshot summary (``fluvial.batch.positions``) for the lake, in ``_fluvial.positions``
within the same DuckDB transaction for the warehouse. A crash before the commit leaves
the previous positions, so the next run recomputes from there.
"""

from __future__ import annotations

import json
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from fluvial.batch.config import PartitionBy
from fluvial.errors import IncompatibleSchemaError
from fluvial.lake.query import quote

if TYPE_CHECKING:
    import duckdb
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import Table

    from fluvial.batch.engines.base import Input
    from fluvial.batch.warehouse import Warehouse
    from fluvial.lake.catalog import Lake

__all__ = [
    "POSITIONS_KEY",
    "RUN_KEY",
    "LakeTarget",
    "Partitions",
    "Target",
    "WarehouseTarget",
    "Write",
    "partitions_in",
]

POSITIONS_KEY = "fluvial.batch.positions"
RUN_KEY = "fluvial.batch.run-id"


@dataclass(frozen=True)
class Write:
    """What a commit records besides its rows."""

    run_id: str
    positions: Mapping[str, int] = field(default_factory=dict)

    def properties(self) -> dict[str, str]:
        """Iceberg snapshot summary properties."""
        return {RUN_KEY: self.run_id, POSITIONS_KEY: json.dumps(dict(self.positions))}


def _next(start: datetime, transform: str) -> datetime:
    if transform == "hour":
        return start + timedelta(hours=1)
    if transform == "day":
        return start + timedelta(days=1)
    if transform == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start.replace(year=start.year + 1)


@dataclass(frozen=True)
class Partitions:
    """A set of partitions of one column: periods of a time transform, or values."""

    column: str
    transform: str
    #: period starts (time transforms, UTC) or the values themselves (identity)
    keys: tuple[Any, ...]
    include_null: bool = False

    def ranges(self) -> list[tuple[datetime, datetime]]:
        """``[start, end)`` of each period."""
        return [(k, _next(k, self.transform)) for k in self.keys]

    def __len__(self) -> int:
        return len(self.keys) + int(self.include_null)


def _as_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def partitions_in(data: pa.Table, by: PartitionBy) -> Partitions:
    """The partitions that *data*'s rows fall in (one vectorized pass over the column)."""
    column = data.column(by.column).combine_chunks()
    nulls = column.null_count > 0
    if by.transform == "identity":
        keys = pc.unique(column.drop_null()).to_pylist()
        return Partitions(by.column, "identity", tuple(keys), nulls)
    floored = pc.unique(pc.floor_temporal(column.drop_null(), unit=by.transform))
    keys = sorted(_as_utc(v) for v in floored.to_pylist())
    return Partitions(by.column, by.transform, tuple(keys), nulls)


def _iso(value: datetime, typ: pa.DataType) -> str:
    if pa.types.is_date(typ):
        return value.date().isoformat()
    if pa.types.is_timestamp(typ) and typ.tz is None:
        return value.replace(tzinfo=None).isoformat()
    return value.isoformat()


def _iceberg_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


class Target(ABC):
    """A model's output table."""

    name: str

    @abstractmethod
    def exists(self) -> bool:
        """Whether the table exists."""

    @abstractmethod
    def positions(self) -> dict[str, int]:
        """Upstream table -> snapshot id the current content was computed from."""

    @abstractmethod
    def as_input(self) -> Input:
        """The current content, for an engine to read."""

    @abstractmethod
    def current_rows(self) -> pa.Table:
        """Rows with ``is_current`` true (snapshots)."""

    @abstractmethod
    def replace(self, data: pa.Table, write: Write) -> None:
        """Replace every row with *data*."""

    @abstractmethod
    def append(self, data: pa.Table, write: Write) -> None:
        """Add *data*'s rows."""

    @abstractmethod
    def overwrite_keys(
        self, data: pa.Table, keys: Sequence[str], write: Write, *, current_only: bool = False
    ) -> None:
        """Delete the rows whose key is in *data* (only current ones), then add *data*."""

    @abstractmethod
    def overwrite_partitions(self, data: pa.Table, parts: Partitions, write: Write) -> None:
        """Delete the rows of *parts*, then add *data*."""


class LakeTarget(Target):
    """An Iceberg table in the refined or curated zone."""

    def __init__(self, lake: Lake, name: str, partition_by: PartitionBy | None = None) -> None:
        self.lake = lake
        self.name = name
        self.partition_by = partition_by

    def exists(self) -> bool:
        return self.lake.exists(self.name)

    def table(self) -> Table:
        """The Iceberg table (loaded afresh)."""
        return self.lake.table(self.name)

    def positions(self) -> dict[str, int]:
        if not self.exists():
            return {}
        table = self.table()
        snap = table.current_snapshot()
        while snap is not None:  # the newest of our commits, under any maintenance commits
            summary = snap.summary
            recorded = summary.get(POSITIONS_KEY) if summary is not None else None
            if recorded is not None:
                return {str(k): int(v) for k, v in json.loads(recorded).items()}
            parent = snap.parent_snapshot_id
            snap = table.snapshot_by_id(parent) if parent is not None else None
        return {}

    def as_input(self) -> Input:
        from fluvial.batch.engines.base import IcebergInput

        table = self.table()
        if table.current_snapshot() is None:
            return table.schema().as_arrow().empty_table()
        return IcebergInput(table.metadata_location)

    def current_rows(self) -> pa.Table:
        from pyiceberg import expressions

        if not self.exists():
            return pa.table({})
        ice: Any = expressions
        return self.table().scan(row_filter=ice.EqualTo("is_current", True)).to_arrow()

    def _create(self, schema: pa.Schema) -> Table:
        from pyiceberg.transforms import (
            DayTransform,
            HourTransform,
            IdentityTransform,
            MonthTransform,
            YearTransform,
        )

        by = self.partition_by
        granularity = self.lake.zones[self.name.partition(".")[0]].granularity
        if by is not None and by.transform == granularity:
            return self.lake.create_table(self.name, schema, time_column=by.column)
        table = self.lake.create_table(self.name, schema)
        if by is not None:
            transforms = {
                "identity": IdentityTransform,
                "hour": HourTransform,
                "day": DayTransform,
                "month": MonthTransform,
                "year": YearTransform,
            }
            with table.update_spec() as spec:
                spec.add_field(by.column, transforms[by.transform](), f"{by.column}_{by.transform}")
        return self.table()

    def _ready(self, data: pa.Table) -> Table:
        if not self.exists():
            return self._create(data.schema)
        return self.table()

    def replace(self, data: pa.Table, write: Write) -> None:
        from fluvial.lake.evolution import evolve
        from fluvial.lake.write import to_iceberg_types

        data = to_iceberg_types(data)
        table = self._ready(data)
        with warnings.catch_warnings():  # "did not match any records": an empty table
            warnings.simplefilter("ignore", UserWarning)
            try:
                with table.transaction() as tx:
                    evolve(tx, data.schema)
                    tx.overwrite(data, snapshot_properties=write.properties())
            except IncompatibleSchemaError:
                # a rebuilt table may change a column's type: replace the table itself
                self.lake.drop_table(self.name)
                table = self._create(data.schema)
                with table.transaction() as tx:
                    tx.overwrite(data, snapshot_properties=write.properties())

    def write_batches(
        self,
        schema: pa.Schema,
        batches: Callable[[], Iterable[pa.Table]],
        write: Write,
        *,
        replace: bool,
    ) -> int:
        """Write the tables *batches* yields in **one** commit (a snapshot per batch, so
        only one batch is in memory at a time), replacing every row when *replace*, else
        appending; return the rows written. *batches* is called again if the table must be
        recreated for a changed column type."""
        from fluvial.lake.evolution import evolve
        from fluvial.lake.write import to_iceberg_types

        target = to_iceberg_types(schema.empty_table()).schema
        table = self._ready(target.empty_table())

        def commit(table: Table) -> int:
            rows = 0
            with table.transaction() as tx:
                evolve(tx, target)
                first = replace
                for chunk in batches():
                    chunk = to_iceberg_types(chunk)
                    if first:
                        tx.overwrite(chunk, snapshot_properties=write.properties())
                        first = False
                    else:
                        tx.append(chunk, snapshot_properties=write.properties())
                    rows += chunk.num_rows
                if first:  # nothing came: the replaced table is empty
                    tx.overwrite(target.empty_table(), snapshot_properties=write.properties())
            return rows

        with warnings.catch_warnings():  # "did not match any records": an empty table
            warnings.simplefilter("ignore", UserWarning)
            try:
                return commit(table)
            except IncompatibleSchemaError:
                if not replace:
                    raise
                self.lake.drop_table(self.name)
                return commit(self._create(target))

    def append(self, data: pa.Table, write: Write) -> None:
        from fluvial.lake.write import append, to_iceberg_types

        data = to_iceberg_types(data)
        append(self._ready(data), data, properties=write.properties())

    def _overwrite(self, data: pa.Table, where: BooleanExpression, write: Write) -> None:
        from fluvial.lake.evolution import evolve
        from fluvial.lake.write import to_iceberg_types

        data = to_iceberg_types(data)
        table = self._ready(data)
        with warnings.catch_warnings():  # "did not match any records" is expected here
            warnings.simplefilter("ignore", UserWarning)
            with table.transaction() as tx:
                evolve(tx, data.schema)
                tx.overwrite(data, overwrite_filter=where, snapshot_properties=write.properties())

    def overwrite_keys(
        self, data: pa.Table, keys: Sequence[str], write: Write, *, current_only: bool = False
    ) -> None:
        from pyiceberg import expressions

        ice: Any = expressions  # pydantic's generated signatures hide the positional forms
        AlwaysFalse, And, EqualTo, In, Or = (
            ice.AlwaysFalse,
            ice.And,
            ice.EqualTo,
            ice.In,
            ice.Or,
        )
        where: BooleanExpression
        if len(data) == 0:
            where = AlwaysFalse()
        elif len(keys) == 1:
            values = pc.unique(data.column(keys[0])).to_pylist()
            where = In(keys[0], {_iceberg_value(v) for v in values})
        else:
            rows = data.select(list(keys)).group_by(list(keys)).aggregate([]).to_pylist()
            where = AlwaysFalse()
            for row in rows:  # one And per distinct key (composite keys only)
                term: BooleanExpression = EqualTo(keys[0], _iceberg_value(row[keys[0]]))
                for k in keys[1:]:
                    term = And(term, EqualTo(k, _iceberg_value(row[k])))
                where = Or(where, term)
        if current_only:
            where = And(EqualTo("is_current", True), where)
        self._overwrite(data, where, write)

    def overwrite_partitions(self, data: pa.Table, parts: Partitions, write: Write) -> None:
        from pyiceberg import expressions

        ice: Any = expressions  # pydantic's generated signatures hide the positional forms
        AlwaysFalse, And, In, IsNull, Or = (
            ice.AlwaysFalse,
            ice.And,
            ice.In,
            ice.IsNull,
            ice.Or,
        )
        GreaterThanOrEqual, LessThan = ice.GreaterThanOrEqual, ice.LessThan

        col = parts.column
        typ = data.schema.field(col).type if col in data.schema.names else pa.timestamp("us", "UTC")
        where: BooleanExpression = AlwaysFalse()
        if parts.transform == "identity":
            if parts.keys:
                where = In(col, {_iceberg_value(v) for v in parts.keys})
        else:
            for start, end in parts.ranges():
                span = And(GreaterThanOrEqual(col, _iso(start, typ)), LessThan(col, _iso(end, typ)))
                where = Or(where, span)
        if parts.include_null:
            where = Or(where, IsNull(col))
        self._overwrite(data, where, write)


class WarehouseTarget(Target):
    """A table of the warehouse's ``marts`` schema (DuckDB)."""

    def __init__(self, warehouse: Warehouse, name: str) -> None:
        self.warehouse = warehouse
        self.name = name
        self.schema_name, _, self.table_name = name.partition(".")
        self.sql_name = f"{quote(self.schema_name)}.{quote(self.table_name)}"

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The warehouse connection."""
        return self.warehouse.con

    def exists(self) -> bool:
        return bool(
            self.con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = ? AND table_name = ?",
                [self.schema_name, self.table_name],
            ).fetchone()[0]  # type: ignore[index]
        )

    def _positions_table(self) -> None:
        self.con.execute("CREATE SCHEMA IF NOT EXISTS _fluvial")
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS _fluvial.positions "
            "(model VARCHAR, upstream VARCHAR, snapshot_id BIGINT, run_id VARCHAR)"
        )

    def positions(self) -> dict[str, int]:
        self._positions_table()
        rows = self.con.execute(
            "SELECT upstream, snapshot_id FROM _fluvial.positions WHERE model = ?", [self.name]
        ).fetchall()
        return {str(u): int(s) for u, s in rows}

    def as_input(self) -> Input:
        return self.con.sql(f"SELECT * FROM {self.sql_name}").to_arrow_table()

    def current_rows(self) -> pa.Table:
        if not self.exists():
            return pa.table({})
        return self.con.sql(f"SELECT * FROM {self.sql_name} WHERE is_current").to_arrow_table()

    def _commit(self, data: pa.Table, write: Write, statements: list[str]) -> None:
        con = self.con
        self._positions_table()
        con.register("__fluvial_data", data)
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                for statement in statements:
                    con.execute(statement)
                con.execute("DELETE FROM _fluvial.positions WHERE model = ?", [self.name])
                for upstream, snapshot in write.positions.items():
                    con.execute(
                        "INSERT INTO _fluvial.positions VALUES (?, ?, ?, ?)",
                        [self.name, upstream, snapshot, write.run_id],
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        finally:
            con.unregister("__fluvial_data")

    def _add_columns(self, data: pa.Table) -> list[str]:
        """Statements creating the table, or adding the columns *data* brings."""
        if not self.exists():
            return [f"CREATE TABLE {self.sql_name} AS SELECT * FROM __fluvial_data LIMIT 0"]
        have = {
            row[0]
            for row in self.con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = "
                "current_database() AND schema_name = ? AND table_name = ?",
                [self.schema_name, self.table_name],
            ).fetchall()
        }
        out = []
        for name in data.schema.names:
            if name not in have:
                typ = str(self.con.sql(f"SELECT {quote(name)} FROM __fluvial_data").types[0])
                out.append(f"ALTER TABLE {self.sql_name} ADD COLUMN {quote(name)} {typ}")
        return out

    def replace(self, data: pa.Table, write: Write) -> None:
        self.con.register("__fluvial_data", data)
        self._commit(
            data,
            write,
            [f"CREATE OR REPLACE TABLE {self.sql_name} AS SELECT * FROM __fluvial_data"],
        )

    def append(self, data: pa.Table, write: Write) -> None:
        self.con.register("__fluvial_data", data)
        ddl = self._add_columns(data)
        insert = f"INSERT INTO {self.sql_name} BY NAME SELECT * FROM __fluvial_data"
        self._commit(data, write, [*ddl, insert])

    def overwrite_keys(
        self, data: pa.Table, keys: Sequence[str], write: Write, *, current_only: bool = False
    ) -> None:
        self.con.register("__fluvial_data", data)
        ddl = self._add_columns(data)
        match = " AND ".join(f"t.{quote(k)} = d.{quote(k)}" for k in keys)
        current = " AND t.is_current" if current_only else ""
        delete = (
            f"DELETE FROM {self.sql_name} AS t USING __fluvial_data AS d WHERE {match}{current}"
        )
        insert = f"INSERT INTO {self.sql_name} BY NAME SELECT * FROM __fluvial_data"
        self._commit(data, write, [*ddl, delete, insert])

    def overwrite_partitions(self, data: pa.Table, parts: Partitions, write: Write) -> None:
        self.con.register("__fluvial_data", data)
        ddl = self._add_columns(data)
        col = quote(parts.column)
        typ = data.schema.field(parts.column).type
        terms = []
        if parts.transform == "identity":
            terms.append(f"{col} IN (SELECT {col} FROM __fluvial_data)")
        else:
            for start, end in parts.ranges():
                lo, hi = _iso(start, typ).replace("'", ""), _iso(end, typ).replace("'", "")
                terms.append(f"({col} >= '{lo}' AND {col} < '{hi}')")
        if parts.include_null:
            terms.append(f"{col} IS NULL")
        where = " OR ".join(terms) or "false"
        delete = f"DELETE FROM {self.sql_name} WHERE {where}"
        insert = f"INSERT INTO {self.sql_name} BY NAME SELECT * FROM __fluvial_data"
        self._commit(data, write, [*ddl, delete, insert])
