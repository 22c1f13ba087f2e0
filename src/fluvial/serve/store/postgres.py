"""The PostgreSQL store (``pip install 'fluvial[postgres]'``): tables in one schema.

Each store table is a real table in the ``namespace`` schema, keyed by its primary key,
with one typed column per Arrow column and ``__expires_at`` (epoch ms, NULL = never):

=========================  ===========================================================
Arrow                      PostgreSQL
=========================  ===========================================================
int8, uint8, int16         smallint
uint16, int32              integer
uint32, int64              bigint
float32, float64           real, double precision
string                     text COLLATE "C" (ordered by bytes: code points)
binary                     bytea
bool, date32               boolean, date
timestamp s/ms/us          timestamp, or timestamptz with a time zone
timestamp ns               bigint (PostgreSQL keeps microseconds)
decimal128(p, s)           numeric(p, s)
=========================  ===========================================================

A write is one transaction: the rows are written as CSV by Arrow's writer and
``COPY``-ed into a temporary table, then ``INSERT … ON CONFLICT DO UPDATE``-ed; deleted
keys are ``COPY``-ed the same way and ``DELETE … USING``. Each thread has its own
connection.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from fluvial._deps import require
from fluvial.errors import ConfigError, FluvialError
from fluvial.serve.store._codec import hex_encode
from fluvial.serve.store.base import Clock, ScanRange, Store, TableInfo, parse_ttl

if TYPE_CHECKING:
    from fluvial.config import StoreSettings

__all__ = ["PostgresStore"]

EXPIRES = "__expires_at"
_CSV = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _pg_type(typ: pa.DataType) -> str:
    """The PostgreSQL column type for an Arrow type (no collation)."""
    if pa.types.is_boolean(typ):
        return "boolean"
    if typ in (pa.int8(), pa.uint8(), pa.int16()):
        return "smallint"
    if typ in (pa.uint16(), pa.int32()):
        return "integer"
    if typ in (pa.uint32(), pa.int64()):
        return "bigint"
    if pa.types.is_float32(typ):
        return "real"
    if pa.types.is_float64(typ):
        return "double precision"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "text"
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        return "bytea"
    if pa.types.is_date32(typ):
        return "date"
    if pa.types.is_timestamp(typ):
        if typ.unit == "ns":
            return "bigint"
        return "timestamptz" if typ.tz else "timestamp"
    if pa.types.is_decimal128(typ):
        return f"numeric({typ.precision}, {typ.scale})"
    raise FluvialError(f"no PostgreSQL type for {typ}")  # checked before: unreachable


def _column(field: pa.Field) -> str:
    collate = ' COLLATE "C"' if _pg_type(field.type) == "text" else ""
    return f"{_q(field.name)} {_pg_type(field.type)}{collate}"


def _wire(column: pa.ChunkedArray | pa.Array, typ: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """A column as PostgreSQL reads it from CSV or as a bound parameter."""
    if pa.types.is_timestamp(typ) and typ.unit == "ns":
        return pc.cast(column, pa.int64())
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        return hex_encode(column, b"\\x")
    return column


def _csv(table: pa.Table) -> bytes:
    """Rows as CSV: valid values quoted, so an unquoted empty field is NULL."""
    wire = pa.table({f.name: _wire(table[f.name], f.type) for f in table.schema})
    out = io.BytesIO()
    pacsv.write_csv(wire, out, _CSV)
    return out.getvalue()


def _decode(values: Sequence[Any], typ: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(typ) and typ.unit == "ns":
        return pc.cast(pa.array(values, pa.int64()), typ)
    return pa.array(values, typ)


class PostgresStore(Store):
    """Tables in a PostgreSQL schema (see the module docstring)."""

    name: ClassVar[str] = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "fluvial_store",
        default_ttl: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(default_ttl=default_ttl, clock=clock)
        self._psycopg = require("psycopg", "postgres")
        self.dsn = dsn
        self.schema = schema
        self._s = _q(schema)
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        with self._transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"fluvial.store.{schema}",))
            db.execute(f"CREATE SCHEMA IF NOT EXISTS {self._s}")
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {self._s}._fluvial_tables "
                "(name text PRIMARY KEY, key text NOT NULL, schema bytea NOT NULL)"
            )
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {self._s}._fluvial_checkpoints "
                "(sink_id text PRIMARY KEY, checkpoint_id bigint)"
            )

    @classmethod
    def from_settings(
        cls, settings: StoreSettings, data_dir: Path, *, clock: Clock | None = None
    ) -> PostgresStore:
        if not settings.postgres_dsn:
            raise ConfigError(
                "store.backend = 'postgres' needs store.postgres_dsn, "
                "e.g. postgresql://user@127.0.0.1:5432/db"
            )
        return cls(
            settings.postgres_dsn,
            schema=settings.namespace,
            default_ttl=parse_ttl(settings.default_ttl),
            clock=clock,
        )

    # -- connections ---------------------------------------------------------------------------

    @property
    def _db(self) -> Any:
        db = getattr(self._local, "db", None)
        if db is None or db.closed:
            try:
                db = self._psycopg.connect(self.dsn, autocommit=True)
                db.execute("SET TIME ZONE 'UTC'")
            except self._psycopg.Error as exc:
                raise FluvialError(f"cannot connect to the PostgreSQL store: {exc}") from exc
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        db = self._db
        try:
            with db.transaction():
                yield db
        except self._psycopg.Error as exc:
            raise FluvialError(f"PostgreSQL store '{self.schema}': {exc}") from exc

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            rows: list[Any] = self._db.execute(sql, params).fetchall()
        except self._psycopg.Error as exc:
            raise FluvialError(f"PostgreSQL store '{self.schema}': {exc}") from exc
        return rows

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                db.close()
            self._all.clear()
        self._local = threading.local()

    def _reclaim(self) -> None:
        """VACUUM FULL rewrites each table, so dead row versions leave the server's files."""
        for info in self.tables():
            self._query_none(f"VACUUM FULL {self._t(info.name)}")

    def _query_none(self, sql: str) -> None:
        try:
            self._db.execute(sql)
        except self._psycopg.Error as exc:
            raise FluvialError(f"PostgreSQL store '{self.schema}': {exc}") from exc

    def _t(self, name: str) -> str:
        return f"{self._s}.{_q(name)}"

    # -- tables ------------------------------------------------------------------------------

    def _load_tables(self) -> dict[str, TableInfo]:
        rows = self._query(f"SELECT name, key, schema FROM {self._s}._fluvial_tables")
        return {
            name: TableInfo(name, tuple(orjson.loads(key)), pa.ipc.read_schema(pa.py_buffer(raw)))
            for name, key, raw in rows
        }

    def _create(self, info: TableInfo) -> TableInfo:
        cols = ", ".join(_column(f) for f in info.schema)
        key = ", ".join(_q(k) for k in info.key)
        with self._transaction() as db:
            # serialize creators of one table: CREATE TABLE IF NOT EXISTS can race
            db.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self.schema}.{info.name}",)
            )
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {self._t(info.name)} "
                f"({cols}, {_q(EXPIRES)} bigint, PRIMARY KEY ({key}))"
            )
            db.execute(
                f"CREATE INDEX IF NOT EXISTS {_q(info.name + '__expiry')} ON {self._t(info.name)} "
                f"({_q(EXPIRES)}) WHERE {_q(EXPIRES)} IS NOT NULL"
            )
            db.execute(
                f"INSERT INTO {self._s}._fluvial_tables VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO NOTHING",
                (
                    info.name,
                    orjson.dumps(list(info.key)).decode(),
                    info.schema.serialize().to_pybytes(),
                ),
            )
        return self._load_tables()[info.name]

    def _drop(self, name: str) -> None:
        with self._transaction() as db:
            db.execute(f"DROP TABLE IF EXISTS {self._t(name)}")
            db.execute(f"DELETE FROM {self._s}._fluvial_tables WHERE name = %s", (name,))

    # -- writes ------------------------------------------------------------------------------

    def _stage(self, db: Any, info: TableInfo, name: str, rows: pa.Table) -> None:
        """COPY *rows* into a temporary table shaped like the store table."""
        db.execute(f"CREATE TEMP TABLE {_q(name)} (LIKE {self._t(info.name)}) ON COMMIT DROP")
        columns = ", ".join(_q(n) for n in rows.column_names)
        with db.cursor().copy(f"COPY {_q(name)} ({columns}) FROM STDIN (FORMAT CSV)") as copy:
            copy.write(_csv(rows))

    def _write(
        self,
        info: TableInfo,
        upserts: pa.Table,
        deletes: pa.Table,
        expires_ms: int | None,
        checkpoint: tuple[str, int] | None,
    ) -> bool:
        table = self._t(info.name)
        checkpoints = f"{self._s}._fluvial_checkpoints"
        with self._transaction() as db:
            if checkpoint is not None:
                sink_id, checkpoint_id = checkpoint
                db.execute(
                    f"INSERT INTO {checkpoints} VALUES (%s, NULL) ON CONFLICT DO NOTHING",
                    (sink_id,),
                )
                row = db.execute(
                    f"SELECT checkpoint_id FROM {checkpoints} WHERE sink_id = %s FOR UPDATE",
                    (sink_id,),
                ).fetchone()
                if row[0] is not None and row[0] >= checkpoint_id:
                    return False
            if deletes.num_rows:
                self._stage(db, info, "_fluvial_deletes", deletes)
                on = " AND ".join(f"t.{_q(k)} = d.{_q(k)}" for k in info.key)
                db.execute(f"DELETE FROM {table} AS t USING _fluvial_deletes AS d WHERE {on}")
            if upserts.num_rows:
                self._stage(db, info, "_fluvial_upserts", upserts)
                names = [*info.schema.names, EXPIRES]
                update = ", ".join(
                    f"{_q(n)} = EXCLUDED.{_q(n)}" for n in names if n not in info.key
                )
                db.execute(
                    f"INSERT INTO {table} ({', '.join(map(_q, names))}) "
                    f"SELECT {', '.join(map(_q, info.schema.names))}, %s::bigint "
                    f"FROM _fluvial_upserts "
                    f"ON CONFLICT ({', '.join(map(_q, info.key))}) DO UPDATE SET {update}",
                    (expires_ms,),
                )
            if checkpoint is not None:
                db.execute(
                    f"UPDATE {checkpoints} SET checkpoint_id = %s WHERE sink_id = %s",
                    (checkpoint[1], checkpoint[0]),
                )
        return True

    def _last_checkpoint(self, sink_id: str) -> int | None:
        rows = self._query(
            f"SELECT checkpoint_id FROM {self._s}._fluvial_checkpoints WHERE sink_id = %s",
            (sink_id,),
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def _purge(self, info: TableInfo, now_ms: int) -> int:
        with self._transaction() as db:
            cur = db.execute(
                f"DELETE FROM {self._t(info.name)} WHERE {_q(EXPIRES)} <= %s", (now_ms,)
            )
            return int(cur.rowcount)

    # -- reads ---------------------------------------------------------------------------------

    def _rows(self, info: TableInfo, sql: str, params: Sequence[Any]) -> pa.Table:
        rows = self._query(sql, params)
        if not rows:
            return info.schema.empty_table()
        columns = list(zip(*rows, strict=True))
        arrays = [_decode(col, f.type) for col, f in zip(columns, info.schema, strict=True)]
        return pa.Table.from_arrays(arrays, schema=info.schema)

    def _select(self, info: TableInfo) -> str:
        return ", ".join(f"t.{_q(n)}" for n in info.schema.names)

    def _live(self) -> str:
        return f"(t.{_q(EXPIRES)} IS NULL OR t.{_q(EXPIRES)} > %s)"

    def _param(self, values: pa.ChunkedArray | pa.Array, typ: pa.DataType) -> list[Any]:
        return _wire(values, typ).to_pylist()

    def _get_many(self, info: TableInfo, keys: pa.Table, now_ms: int) -> pa.Table:
        fields = [info.schema.field(k) for k in info.key]
        arrays = ", ".join(f"%s::{_pg_type(f.type)}[]" for f in fields)
        names = ", ".join(f"k{i}" for i in range(len(fields)))
        on = " AND ".join(f"t.{_q(f.name)} = k.k{i}" for i, f in enumerate(fields))
        sql = (
            f"SELECT {self._select(info)} FROM unnest({arrays}) WITH ORDINALITY "
            f"AS k({names}, i) JOIN {self._t(info.name)} AS t ON {on} "
            f"WHERE {self._live()} ORDER BY k.i"
        )
        params = [self._param(keys[f.name], f.type) for f in fields]
        return self._rows(info, sql, [*params, now_ms])

    def _scan(self, info: TableInfo, scan: ScanRange, now_ms: int) -> pa.Table:
        where, params = [self._live()], [now_ms]
        for name in scan.prefix.column_names:
            typ = info.schema.field(name).type
            where.append(f"t.{_q(name)} = %s::{_pg_type(typ)}")
            params.append(self._param(scan.prefix[name], typ)[0])
        for bound, op in ((scan.start, ">="), (scan.end, "<")):
            if bound is not None:
                name = bound.column_names[0]
                typ = info.schema.field(name).type
                where.append(f"t.{_q(name)} {op} %s::{_pg_type(typ)}")
                params.append(self._param(bound[name], typ)[0])
        order = ", ".join(f"t.{_q(k)}{' DESC' if scan.reverse else ''}" for k in info.key)
        sql = (
            f"SELECT {self._select(info)} FROM {self._t(info.name)} AS t "
            f"WHERE {' AND '.join(where)} ORDER BY {order}"
        )
        if scan.limit is not None:
            sql += " LIMIT %s"
            params.append(scan.limit)
        return self._rows(info, sql, params)

    def _count(self, info: TableInfo, now_ms: int) -> int:
        rows = self._query(
            f"SELECT count(*) FROM {self._t(info.name)} AS t WHERE {self._live()}", (now_ms,)
        )
        return int(rows[0][0])
