"""The operational store interface: keyed tables of typed rows (our DynamoDB).

Stream pipelines upsert their results here; the API and the dashboard read them back.
A *table* is created by its first write, with the write's columns (an Arrow schema) and
its *key* columns. Rows are upserted and deleted by key, read by key (:meth:`Store.get`,
:meth:`Store.get_many`) or in key order (:meth:`Store.scan`: equality on leading key
columns, then a range on the next one). Values come back with the types they were
written with (ints, floats, strings, bools, dates, timestamps, decimals, binary, nulls).

A row written with a time to live is invisible to reads as soon as it expires, and
removed by :meth:`Store.purge_expired`. Time comes from the store's ``clock`` (epoch
seconds), which tests replace.

Stream sinks write with :meth:`Store.apply`: a changelog (Flink's row kinds in an int8
``_op`` column) applied atomically with the checkpoint id that produced it, and skipped
if that id (or a later one) was already applied — exactly once across restarts.

Backends (sqlite, postgres, redis, dynamodb) implement the abstract ``_`` methods below and pass
the one behaviour suite in ``tests/serve/store/``. Every method raises
:class:`~fluvial.errors.FluvialError` subclasses, never a library's own exception.

>>> import tempfile, pathlib
>>> from fluvial.serve.store.sqlite import SQLiteStore
>>> store = SQLiteStore(pathlib.Path(tempfile.mkdtemp()) / "store.db")
>>> store.upsert("scores", pa.table({"user": ["ann", "bob"], "points": [3, 5]}), ["user"])
2
>>> store.get("scores", {"user": "bob"})
{'user': 'bob', 'points': 5}
>>> store.scan("scores", reverse=True, limit=1).to_pylist()
[{'user': 'bob', 'points': 5}]
>>> store.close()
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import (
    ConfigError,
    IncompatibleSchemaError,
    NotFoundError,
    SchemaError,
    UsageError,
    ValidationError,
    did_you_mean,
)
from fluvial.serve.store._codec import OP, split_changelog, supported

if TYPE_CHECKING:
    from pathlib import Path

    from fluvial.config import StoreSettings

__all__ = ["Clock", "ScanRange", "Store", "TableInfo"]

#: epoch seconds now; stores take one so tests can move time without sleeping
Clock = Callable[[], float]

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
#: column names starting with this are the store's own (the expiry time)
RESERVED_PREFIX = "__"


@dataclass(frozen=True)
class TableInfo:
    """A store table: its name, key columns and the Arrow schema of its rows."""

    name: str
    key: tuple[str, ...]
    schema: pa.Schema

    @property
    def key_schema(self) -> pa.Schema:
        return pa.schema([self.schema.field(k) for k in self.key])


@dataclass(frozen=True)
class ScanRange:
    """What :meth:`Store.scan` asked for, coerced to the key types.

    ``prefix`` holds the first ``prefix.num_columns`` key columns (one row, equality);
    ``start`` (inclusive) and ``end`` (exclusive) bound the next key column (one row
    each, or None).
    """

    prefix: pa.Table
    start: pa.Table | None
    end: pa.Table | None
    limit: int | None
    reverse: bool

    @property
    def column(self) -> int:
        """The index of the key column ``start`` and ``end`` bound."""
        return self.prefix.num_columns


def parse_ttl(text: str) -> float | None:
    """``[store] default_ttl``, a duration such as ``'1 h'`` or ``'500 ms'``, in seconds;
    empty means none.

    >>> parse_ttl("90 s"), parse_ttl("1 h"), parse_ttl("")
    (90.0, 3600.0, None)
    """
    if not text.strip():
        return None
    from fluvial.errors import SqlError
    from fluvial.stream.plan.build import parse_duration_ms  # one grammar for durations

    try:
        return parse_duration_ms(text) / 1000
    except SqlError as exc:
        raise ConfigError(f"store.default_ttl: {exc}") from exc


class Store(ABC):
    """A keyed table store; backends implement the abstract ``_`` methods.

    *default_ttl* (seconds) applies to writes that do not give ``ttl_seconds``; *clock*
    returns epoch seconds (default: :func:`time.time`).
    """

    #: the backend's name in ``[store] backend``
    name: ClassVar[str]

    def __init__(self, *, default_ttl: float | None = None, clock: Clock | None = None) -> None:
        self.default_ttl = default_ttl
        self.clock: Clock = clock or time.time
        self._tables: dict[str, TableInfo] = {}

    @classmethod
    @abstractmethod
    def from_settings(
        cls, settings: StoreSettings, data_dir: Path, *, clock: Clock | None = None
    ) -> Store:
        """Open the store ``[store]`` describes (embedded files under *data_dir*)."""

    # -- the backend's part ----------------------------------------------------------------

    @abstractmethod
    def _load_tables(self) -> dict[str, TableInfo]:
        """Every table, read from the backend (not from a cache)."""

    @abstractmethod
    def _create(self, info: TableInfo) -> TableInfo:
        """Create *info*'s table unless it exists; return the table as stored (a
        concurrent writer may have created it first)."""

    @abstractmethod
    def _write(
        self,
        info: TableInfo,
        upserts: pa.Table,
        deletes: pa.Table,
        expires_ms: int | None,
        checkpoint: tuple[str, int] | None,
    ) -> bool:
        """In one transaction: delete the keys of *deletes*, upsert *upserts* (unique
        keys, the table's schema) expiring at *expires_ms*, and with *checkpoint*
        ``(sink_id, id)`` record the id — unless an id >= it was recorded for that sink,
        then change nothing and return False."""

    @abstractmethod
    def _get_many(self, info: TableInfo, keys: pa.Table, now_ms: int) -> pa.Table:
        """The live rows whose keys are in *keys* (typed key columns), in *keys*' order."""

    @abstractmethod
    def _scan(self, info: TableInfo, scan: ScanRange, now_ms: int) -> pa.Table:
        """The live rows in *scan*'s range, in key order (reversed if asked), limited."""

    @abstractmethod
    def _count(self, info: TableInfo, now_ms: int) -> int:
        """How many live rows the table holds."""

    @abstractmethod
    def _purge(self, info: TableInfo, now_ms: int) -> int:
        """Remove the table's rows that expired at or before *now_ms*; return how many."""

    @abstractmethod
    def _drop(self, name: str) -> None:
        """Remove a table and its rows (nothing if it does not exist)."""

    @abstractmethod
    def _last_checkpoint(self, sink_id: str) -> int | None:
        """The last checkpoint id applied for *sink_id*."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tables ------------------------------------------------------------------------------

    def tables(self) -> list[TableInfo]:
        """Every table, by name."""
        self._tables = self._load_tables()
        return [self._tables[n] for n in sorted(self._tables)]

    def table(self, name: str) -> TableInfo:
        """One table; :class:`NotFoundError` (with "did you mean …?") if it does not exist."""
        info = self._tables.get(name)
        if info is None:
            self._tables = self._load_tables()
            info = self._tables.get(name)
        if info is None:
            raise NotFoundError(
                f"store table '{name}' does not exist{did_you_mean(name, self._tables)}"
            )
        return info

    def drop(self, name: str) -> None:
        """Remove a table and all its rows."""
        self.table(name)
        self._drop(name)
        self._tables.pop(name, None)

    def _ensure(self, name: str, schema: pa.Schema, key: Sequence[str]) -> TableInfo:
        """The table to write *schema* rows into, created on the first write."""
        key = tuple(key)
        info = self._tables.get(name) or self._load_tables().get(name)
        if info is None:
            info = self._create(_new_table(name, schema, key))
        if info.key != key:
            raise SchemaError(
                f"store table '{name}' is keyed by ({', '.join(info.key)}); "
                f"this write gives the key ({', '.join(key)})"
            )
        self._tables[name] = info
        return info

    # -- writes ------------------------------------------------------------------------------

    def _expiry(self, ttl_seconds: float | None) -> int | None:
        ttl = self.default_ttl if ttl_seconds is None else ttl_seconds
        if ttl is None or ttl == 0:
            return None
        if ttl < 0:
            raise UsageError(f"a time to live must not be negative; found {ttl}")
        return int((self.clock() + ttl) * 1000)

    def upsert(
        self,
        table: str,
        rows: pa.Table,
        key: Sequence[str],
        *,
        ttl_seconds: float | None = None,
    ) -> int:
        """Insert or overwrite *rows* by *key* in one transaction; return the rows written.

        Within *rows* the last row of a key wins. *ttl_seconds* (default: the store's
        ``default_ttl``; 0 = never) makes the rows expire that long from now.
        """
        info = self._ensure(table, _schema_of(rows), key)
        upserts, _ = split_changelog(_conform(info, rows), info.key)
        self._write(info, upserts, info.key_schema.empty_table(), self._expiry(ttl_seconds), None)
        return upserts.num_rows

    def delete(self, table: str, keys: pa.Table) -> None:
        """Delete the rows whose keys are among *keys*' rows (other columns are ignored)."""
        info = self.table(table)
        typed = _keys(info, keys)
        self._write(info, info.schema.empty_table(), typed, None, None)

    def apply(
        self,
        table: str,
        changes: pa.Table,
        key: Sequence[str],
        checkpoint_id: int,
        sink_id: str,
        *,
        ttl_seconds: float | None = None,
    ) -> bool:
        """Apply a changelog exactly once: atomically with recording *checkpoint_id* for
        *sink_id*, and not at all (returning False) if that id or a larger one was.

        *changes* has the table's columns plus, optionally, an int8 ``_op`` column with
        Flink's row kinds: 0 insert and 2 update-after upsert, 3 delete and 1
        update-before delete; the last change of a key wins (so ``-U`` then ``+U``
        updates, and a lone ``-U`` — a row that left the result — deletes). Without
        ``_op`` every row is upserted.
        """
        data = changes.drop_columns([OP]) if OP in changes.column_names else changes
        info = self._ensure(table, _schema_of(data), key)
        typed = _conform(info, data)
        if OP in changes.column_names:
            typed = typed.append_column(OP, changes[OP])
        upserts, deletes = split_changelog(typed, info.key)
        deletes = deletes.select(list(info.key))
        return self._write(
            info, upserts, deletes, self._expiry(ttl_seconds), (sink_id, int(checkpoint_id))
        )

    def forget(
        self, rows_of: Callable[[pa.Table], pa.Array | pa.ChunkedArray], *, dry_run: bool = False
    ) -> dict[str, int]:
        """Delete, in every table, the rows *rows_of* selects (a boolean mask over a table's
        rows, keys and values), expired ones included, then reclaim the space they used so
        the backend's files no longer hold them. Returns the rows removed per table (with
        *dry_run*: that would be removed)."""
        if not dry_run:
            self.purge_expired()  # expired rows are invisible to scans but still stored
        now = self._now_ms()
        removed: dict[str, int] = {}
        for info in self.tables():
            everything = ScanRange(_values(info, [], "prefix"), None, None, None, False)
            rows = self._scan(info, everything, now)
            hit = rows_of(rows)
            keys = rows.filter(hit).select(list(info.key))
            if keys.num_rows:
                removed[info.name] = keys.num_rows
                if not dry_run:
                    self._write(info, info.schema.empty_table(), keys, None, None)
        if not dry_run:
            self._reclaim()
        return removed

    def _reclaim(self) -> None:  # noqa: B027 - optional hook
        """Make deleted rows' bytes unrecoverable from the backend's files (e.g. VACUUM)."""

    def last_checkpoint(self, sink_id: str) -> int | None:
        """The last checkpoint id :meth:`apply` recorded for *sink_id* (None: none yet)."""
        return self._last_checkpoint(sink_id)

    def purge_expired(self) -> int:
        """Remove every expired row now; return how many were removed."""
        now = self._now_ms()
        return sum(self._purge(info, now) for info in self.tables())

    # -- reads ------------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def get(
        self, table: str, key: Mapping[str, Any] | Sequence[Any] | Any
    ) -> dict[str, Any] | None:
        """The row with this key (a mapping of key columns, a tuple in key order, or a
        single value for a one-column key), or None."""
        info = self.table(table)
        if isinstance(key, Mapping):
            missing = [k for k in info.key if k not in key]
            if missing:
                raise UsageError(f"store table '{table}': the key needs {', '.join(missing)}")
            values = [key[k] for k in info.key]
        elif isinstance(key, tuple | list):
            values = list(key)
        else:
            values = [key]
        if len(values) != len(info.key):
            raise UsageError(
                f"store table '{table}' is keyed by ({', '.join(info.key)}): expected "
                f"{len(info.key)} key value(s), found {len(values)}"
            )
        rows = self._get_many(info, _values(info, values, "key"), self._now_ms())
        if not rows.num_rows:
            return None
        try:
            return rows.to_pylist()[0]
        except ValueError as exc:  # nanoseconds do not fit a Python datetime
            raise UsageError(
                f"store table '{table}': the row does not fit Python values ({exc}); "
                "read it as Arrow with get_many"
            ) from exc

    def get_many(self, table: str, keys: pa.Table) -> pa.Table:
        """The rows whose keys are among *keys*' rows, in that order (missing ones left out)."""
        info = self.table(table)
        typed = _keys(info, keys)
        if typed.num_rows == 0:
            return info.schema.empty_table()
        return self._get_many(info, typed, self._now_ms())

    def scan(
        self,
        table: str,
        *,
        prefix: Sequence[Any] = (),
        start: Any = None,
        end: Any = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> pa.Table:
        """Rows in key order: those whose leading key columns equal *prefix*, and whose
        next key column is >= *start* and < *end* (each optional); at most *limit*
        rows, from the largest key down with *reverse*."""
        info = self.table(table)
        prefix = list(prefix)
        if len(prefix) > len(info.key) or (
            len(prefix) == len(info.key) and (start is not None or end is not None)
        ):
            raise UsageError(
                f"store table '{table}' is keyed by ({', '.join(info.key)}): a prefix of "
                f"{len(prefix)} value(s) leaves no key column for start/end"
            )
        if limit is not None and limit < 0:
            raise UsageError(f"limit must not be negative; found {limit}")
        bound = info.key[len(prefix)] if len(prefix) < len(info.key) else ""
        scan = ScanRange(
            prefix=_values(info, prefix, "prefix"),
            start=None if start is None else _values(info, [start], "start", bound),
            end=None if end is None else _values(info, [end], "end", bound),
            limit=limit,
            reverse=reverse,
        )
        if limit == 0:
            return info.schema.empty_table()
        return self._scan(info, scan, self._now_ms())

    def count(self, table: str) -> int:
        """How many live (unexpired) rows *table* holds."""
        return self._count(self.table(table), self._now_ms())


# -- checks and conversions shared by every backend ----------------------------------------------


def _schema_of(rows: pa.Table) -> pa.Schema:
    return rows.schema.remove_metadata()


def _new_table(name: str, schema: pa.Schema, key: tuple[str, ...]) -> TableInfo:
    if not _TABLE_NAME.fullmatch(name):
        raise UsageError(
            f"store table name '{name}': expected a letter, then letters, digits or '_' "
            "(at most 63 characters)"
        )
    if not key:
        raise UsageError(f"store table '{name}': a key needs at least one column")
    if len(set(schema.names)) != len(schema.names):
        raise SchemaError(f"store table '{name}': duplicate column names in {schema.names}")
    for field in schema:
        if field.name.startswith(RESERVED_PREFIX) or not field.name:
            raise SchemaError(
                f"store table '{name}': column name '{field.name}' is reserved "
                f"(names must not be empty or start with '{RESERVED_PREFIX}')"
            )
        if not supported(field.type, key=field.name in key):
            what = "key column" if field.name in key else "column"
            raise SchemaError(
                f"store table '{name}': {what} '{field.name}' has the type {field.type}, "
                "which the store does not keep; expected ints, floats, strings, bools, "
                "dates, timestamps, decimals"
                + (" (precision <= 18)" if field.name in key else " or binary")
            )
    for k in key:
        if k not in schema.names:
            raise SchemaError(
                f"store table '{name}': key column '{k}' is not a column"
                f"{did_you_mean(k, schema.names)}; the columns are {', '.join(schema.names)}"
            )
    fields = [f.with_nullable(f.name not in key) for f in schema]
    return TableInfo(name, key, pa.schema(fields))


def _cast(column: pa.ChunkedArray | pa.Array, field: pa.Field, table: str) -> pa.ChunkedArray:
    if column.type == field.type:
        return column if isinstance(column, pa.ChunkedArray) else pa.chunked_array([column])
    try:
        return pc.cast(column, field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise IncompatibleSchemaError(
            f"store table '{table}': column '{field.name}' is {field.type}; "
            f"cannot store {column.type} values in it ({exc})",
            field=field.name,
        ) from exc


def _conform(info: TableInfo, rows: pa.Table) -> pa.Table:
    """*rows* with exactly the table's columns, in order, cast to its types."""
    names = set(rows.column_names)
    expected = set(info.schema.names)
    if names != expected:
        missing = sorted(expected - names)
        extra = sorted(names - expected)
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unknown {', '.join(extra)}" if extra else "",
            )
            if part
        )
        raise IncompatibleSchemaError(
            f"store table '{info.name}' has the columns {', '.join(info.schema.names)}: {detail}"
        )
    columns = [_cast(rows[f.name], f, info.name) for f in info.schema]
    table = pa.Table.from_arrays(columns, schema=info.schema.with_metadata(None))
    for k in info.key:
        nulls = table[k].null_count
        if nulls:
            raise ValidationError(
                f"store table '{info.name}': key column '{k}' has {nulls} null value(s)"
            )
    return table


def _keys(info: TableInfo, keys: pa.Table) -> pa.Table:
    missing = [k for k in info.key if k not in keys.column_names]
    if missing:
        raise UsageError(
            f"store table '{info.name}' is keyed by ({', '.join(info.key)}); "
            f"the keys lack {', '.join(missing)}"
        )
    columns = [_cast(keys[k], info.schema.field(k), info.name) for k in info.key]
    typed = pa.Table.from_arrays(columns, schema=info.key_schema)
    for k in info.key:
        if typed[k].null_count:
            raise ValidationError(f"store table '{info.name}': key column '{k}' has nulls")
    return typed


def _values(info: TableInfo, values: Sequence[Any], what: str, column: str = "") -> pa.Table:
    """One row of key values (of the first len(values) key columns, or of *column*)."""
    names = [column] if column else list(info.key[: len(values)])
    arrays = []
    for name, value in zip(names, values, strict=True):
        field = info.schema.field(name)
        if value is None:
            raise ValidationError(f"store table '{info.name}': {what} '{name}' must not be null")
        try:
            arrays.append(pa.array([value], field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise ValidationError(
                f"store table '{info.name}': {what} '{name}' is {field.type}; found {value!r}"
            ) from exc
    return pa.Table.from_arrays(arrays, names=names)
