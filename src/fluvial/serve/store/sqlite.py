"""The embedded store: one SQLite file in WAL mode (the default backend).

Each store table is a real SQLite table ``WITHOUT ROWID`` whose primary key is the key,
with one typed column per Arrow column and an ``__expires_at`` column (epoch ms, NULL =
never). Values are stored as SQLite's own types and turned back into the exact Arrow
type on reads (the schema is kept in ``_fluvial_tables``):

=========================  ===========================================================
Arrow                      SQLite
=========================  ===========================================================
ints, bool                 INTEGER
float32, float64           REAL (a NaN becomes NULL: SQLite has no NaN)
string                     TEXT (ordered by bytes: code points)
binary                     BLOB
date32, timestamp          INTEGER (days, or the unit since the epoch)
decimal128, precision<=18  INTEGER (the unscaled value: exact and ordered)
decimal128, precision>18   TEXT (exact, but ordered as text)
=========================  ===========================================================

Writes are ``executemany`` in one ``BEGIN IMMEDIATE`` transaction with
``synchronous=FULL``; readers see the last commit (WAL snapshots), so any number of
threads and processes read while one writes. Each thread gets its own connection.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import FluvialError
from fluvial.serve.store._codec import decimal_from_int64, decimal_to_int64
from fluvial.serve.store.base import Clock, ScanRange, Store, TableInfo, parse_ttl

if TYPE_CHECKING:
    from fluvial.config import StoreSettings

__all__ = ["SQLiteStore"]

EXPIRES = "__expires_at"
_META = "_fluvial_tables"
_CHECKPOINTS = "_fluvial_checkpoints"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _wire_type(typ: pa.DataType) -> pa.DataType:
    """The Arrow type of what SQLite hands back for a column of *typ*."""
    if pa.types.is_boolean(typ) or pa.types.is_timestamp(typ):
        return pa.int64()
    if pa.types.is_date32(typ):
        return pa.int32()
    if pa.types.is_decimal128(typ):
        return pa.int64() if typ.precision <= 18 else pa.string()
    if pa.types.is_floating(typ):
        return pa.float64()
    return typ


def _column_type(typ: pa.DataType) -> str:
    wire = _wire_type(typ)
    if pa.types.is_integer(wire):
        return "INTEGER"
    if pa.types.is_floating(wire):
        return "REAL"
    if pa.types.is_binary(wire) or pa.types.is_large_binary(wire):
        return "BLOB"
    return "TEXT"


def _encode(column: pa.ChunkedArray | pa.Array, typ: pa.DataType) -> list[Any]:
    """A column as the Python values sqlite3 binds (converted by Arrow kernels first)."""
    if pa.types.is_decimal128(typ):
        wire = decimal_to_int64(column) if typ.precision <= 18 else pc.cast(column, pa.string())
        return wire.to_pylist()
    if pa.types.is_timestamp(typ) or pa.types.is_date32(typ) or pa.types.is_boolean(typ):
        return pc.cast(column, _wire_type(typ)).to_pylist()
    return column.to_pylist()


def _decode(values: Sequence[Any], typ: pa.DataType) -> pa.Array:
    wire = pa.array(values, _wire_type(typ))
    if pa.types.is_decimal128(typ) and typ.precision <= 18:
        return decimal_from_int64(wire, typ)
    return pc.cast(wire, typ)


class SQLiteStore(Store):
    """Tables in one SQLite database file (see the module docstring)."""

    name: ClassVar[str] = "sqlite"

    def __init__(
        self,
        path: Path | str,
        *,
        default_ttl: float | None = None,
        clock: Clock | None = None,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(default_ttl=default_ttl, clock=clock)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        with self._transaction() as db:
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {_META} "
                "(name TEXT PRIMARY KEY, key TEXT NOT NULL, schema BLOB NOT NULL)"
            )
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {_CHECKPOINTS} "
                "(sink_id TEXT PRIMARY KEY, checkpoint_id INTEGER NOT NULL)"
            )

    @classmethod
    def from_settings(
        cls, settings: StoreSettings, data_dir: Path, *, clock: Clock | None = None
    ) -> SQLiteStore:
        path = Path(settings.path)
        return cls(
            path if path.is_absolute() else data_dir / path,
            default_ttl=parse_ttl(settings.default_ttl),
            clock=clock,
        )

    # -- connections ---------------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(
                    self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
                )
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as exc:
                raise FluvialError(f"cannot open the store {self.path}: {exc}") from exc
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise FluvialError(f"store {self.path}: {exc}") from exc

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise FluvialError(f"store {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                db.close()
            self._all.clear()
        self._local = threading.local()

    def _reclaim(self) -> None:
        """VACUUM rebuilds the file without free pages; the WAL is then emptied."""
        self._query("VACUUM")
        self._query("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- tables ------------------------------------------------------------------------------

    def _load_tables(self) -> dict[str, TableInfo]:
        rows = self._query(f"SELECT name, key, schema FROM {_META}")
        return {
            name: TableInfo(name, tuple(orjson.loads(key)), pa.ipc.read_schema(pa.py_buffer(raw)))
            for name, key, raw in rows
        }

    def _create(self, info: TableInfo) -> TableInfo:
        cols = ", ".join(f"{_q(f.name)} {_column_type(f.type)}" for f in info.schema)
        key = ", ".join(_q(k) for k in info.key)
        table = _q(info.name)
        with self._transaction() as db:
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {table} ({cols}, {_q(EXPIRES)} INTEGER, "
                f"PRIMARY KEY ({key})) WITHOUT ROWID"
            )
            db.execute(
                f"CREATE INDEX IF NOT EXISTS {_q(info.name + '__expiry')} ON {table} "
                f"({_q(EXPIRES)}) WHERE {_q(EXPIRES)} IS NOT NULL"
            )
            db.execute(
                f"INSERT OR IGNORE INTO {_META} VALUES (?, ?, ?)",
                (
                    info.name,
                    orjson.dumps(list(info.key)).decode(),
                    info.schema.serialize().to_pybytes(),
                ),
            )
        return self._load_tables()[info.name]

    def _drop(self, name: str) -> None:
        with self._transaction() as db:
            db.execute(f"DROP TABLE IF EXISTS {_q(name)}")
            db.execute(f"DELETE FROM {_META} WHERE name = ?", (name,))

    # -- writes ------------------------------------------------------------------------------

    def _write(
        self,
        info: TableInfo,
        upserts: pa.Table,
        deletes: pa.Table,
        expires_ms: int | None,
        checkpoint: tuple[str, int] | None,
    ) -> bool:
        table = _q(info.name)
        with self._transaction() as db:
            if checkpoint is not None:
                row = db.execute(
                    f"SELECT checkpoint_id FROM {_CHECKPOINTS} WHERE sink_id = ?", (checkpoint[0],)
                ).fetchone()
                if row is not None and row[0] >= checkpoint[1]:
                    return False
            if deletes.num_rows:
                where = " AND ".join(f"{_q(k)} = ?" for k in info.key)
                keys = [_encode(deletes[k], info.schema.field(k).type) for k in info.key]
                db.executemany(f"DELETE FROM {table} WHERE {where}", zip(*keys, strict=True))
            if upserts.num_rows:
                names = [*info.schema.names, EXPIRES]
                columns = [_encode(upserts[f.name], f.type) for f in info.schema]
                columns.append([expires_ms] * upserts.num_rows)
                marks = ", ".join("?" * len(names))
                update = ", ".join(
                    f"{_q(n)} = excluded.{_q(n)}" for n in names if n not in info.key
                )
                conflict = f"DO UPDATE SET {update}" if update else "DO NOTHING"
                db.executemany(
                    f"INSERT INTO {table} ({', '.join(map(_q, names))}) VALUES ({marks}) "
                    f"ON CONFLICT ({', '.join(map(_q, info.key))}) {conflict}",
                    zip(*columns, strict=True),
                )
            if checkpoint is not None:
                db.execute(
                    f"INSERT INTO {_CHECKPOINTS} VALUES (?, ?) ON CONFLICT (sink_id) "
                    "DO UPDATE SET checkpoint_id = excluded.checkpoint_id",
                    checkpoint,
                )
        return True

    def _last_checkpoint(self, sink_id: str) -> int | None:
        rows = self._query(
            f"SELECT checkpoint_id FROM {_CHECKPOINTS} WHERE sink_id = ?", (sink_id,)
        )
        return int(rows[0][0]) if rows else None

    def _purge(self, info: TableInfo, now_ms: int) -> int:
        with self._transaction() as db:
            cur = db.execute(f"DELETE FROM {_q(info.name)} WHERE {_q(EXPIRES)} <= ?", (now_ms,))
            return cur.rowcount

    # -- reads ---------------------------------------------------------------------------------

    def _rows(self, info: TableInfo, sql: str, params: Sequence[Any]) -> pa.Table:
        rows = self._query(sql, params)
        if not rows:
            return info.schema.empty_table()
        columns = list(zip(*rows, strict=True))
        arrays = [_decode(col, f.type) for col, f in zip(columns, info.schema, strict=True)]
        return pa.Table.from_arrays(arrays, schema=info.schema)

    def _select(self, info: TableInfo, alias: str = "t") -> str:
        return ", ".join(f"{alias}.{_q(n)}" for n in info.schema.names)

    def _live(self, alias: str = "t") -> str:
        return f"({alias}.{_q(EXPIRES)} IS NULL OR {alias}.{_q(EXPIRES)} > ?)"

    def _get_many(self, info: TableInfo, keys: pa.Table, now_ms: int) -> pa.Table:
        encoded = [_encode(keys[k], info.schema.field(k).type) for k in info.key]
        payload = orjson.dumps(list(zip(*encoded, strict=True)))
        on = " AND ".join(f"t.{_q(k)} = j.value ->> {i}" for i, k in enumerate(info.key))
        sql = (
            f"SELECT {self._select(info)} FROM json_each(?) AS j "
            f"JOIN {_q(info.name)} AS t ON {on} WHERE {self._live()} ORDER BY j.key"
        )
        return self._rows(info, sql, (payload, now_ms))

    def _scan(self, info: TableInfo, scan: ScanRange, now_ms: int) -> pa.Table:
        where, params = [self._live()], [now_ms]
        for name in scan.prefix.column_names:
            where.append(f"t.{_q(name)} = ?")
            params.append(_encode(scan.prefix[name], info.schema.field(name).type)[0])
        for bound, op in ((scan.start, ">="), (scan.end, "<")):
            if bound is not None:
                name = bound.column_names[0]
                where.append(f"t.{_q(name)} {op} ?")
                params.append(_encode(bound[name], info.schema.field(name).type)[0])
        order = ", ".join(f"t.{_q(k)}{' DESC' if scan.reverse else ''}" for k in info.key)
        sql = (
            f"SELECT {self._select(info)} FROM {_q(info.name)} AS t "
            f"WHERE {' AND '.join(where)} ORDER BY {order}"
        )
        if scan.limit is not None:
            sql += " LIMIT ?"
            params.append(scan.limit)
        return self._rows(info, sql, params)

    def _count(self, info: TableInfo, now_ms: int) -> int:
        rows = self._query(
            f"SELECT count(*) FROM {_q(info.name)} AS t WHERE {self._live()}", (now_ms,)
        )
        return int(rows[0][0])
