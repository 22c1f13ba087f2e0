"""The Redis store (``pip install 'fluvial[redis]'``): each table in three keys.

Under the ``namespace`` prefix ``P``, a table ``T`` is

- ``P:t:T:rows``, a hash: *key bytes* -> the row, one JSON object;
- ``P:t:T:index``, a sorted set of the key bytes (all scores 0), so ``ZRANGEBYLEX``
  walks the keys in order;
- ``P:t:T:expiry``, a sorted set: key bytes scored by their expiry time (epoch ms).

*Key bytes* are an order-preserving encoding of the key columns
(:func:`~fluvial.serve.store._codec.order_key`): their byte order is the key order, so a
prefix of the leading columns is a byte prefix and a range on the next column is a lex
range. Rows are JSON written by Polars from columns that JSON carries exactly (floats as
their IEEE bits, timestamps and dates as integers, decimals as text, binary as hex) and
read back with Arrow's JSON reader against the stored schema — both vectorized.

Writes are one ``MULTI``/``EXEC``; :meth:`~RedisStore.apply` ``WATCH``-es the sink's
checkpoint key, so an applied id is recorded atomically with its rows. Scans and purges
are Lua scripts (atomic on the server); counts and lookups are ``MULTI`` reads, so a
reader never sees half a write.
"""

from __future__ import annotations

from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from fluvial._deps import require
from fluvial.errors import FluvialError
from fluvial.serve.store._codec import order_key, successor
from fluvial.serve.store._json import decode_rows, encode_rows
from fluvial.serve.store.base import Clock, ScanRange, Store, TableInfo, parse_ttl

if TYPE_CHECKING:
    from fluvial.config import StoreSettings

__all__ = ["RedisStore"]

_CHUNK = 10_000  # members per command

# KEYS: index, rows, expiry; ARGV: min, max, reverse (0|1), limit (0 = none), now (ms)
_SCAN = """
local lo, hi, rev, limit, now = ARGV[1], ARGV[2], ARGV[3] == '1', tonumber(ARGV[4]), tonumber(ARGV[5])
local out, page = {}, 1000
while true do
  local members
  if rev then
    members = redis.call('ZREVRANGEBYLEX', KEYS[1], hi, lo, 'LIMIT', 0, page)
  else
    members = redis.call('ZRANGEBYLEX', KEYS[1], lo, hi, 'LIMIT', 0, page)
  end
  if #members == 0 then return out end
  local values = redis.call('HMGET', KEYS[2], unpack(members))
  for i, m in ipairs(members) do
    local exp = redis.call('ZSCORE', KEYS[3], m)
    if values[i] and (not exp or tonumber(exp) > now) then
      out[#out + 1] = values[i]
      if limit > 0 and #out >= limit then return out end
    end
  end
  if #members < page then return out end
  if rev then hi = '(' .. members[#members] else lo = '(' .. members[#members] end
end
"""

# KEYS: index, rows, expiry; ARGV: now (ms). Returns how many rows it removed.
_PURGE = """
local removed = 0
while true do
  local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, 1000)
  if #gone == 0 then return removed end
  redis.call('HDEL', KEYS[2], unpack(gone))
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('ZREM', KEYS[3], unpack(gone))
  removed = removed + #gone
end
"""


class RedisStore(Store):
    """Tables in Redis under a key prefix (see the module docstring)."""

    name: ClassVar[str] = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "fluvial_store",
        default_ttl: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(default_ttl=default_ttl, clock=clock)
        redis = require("redis", "redis")
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self._watch_error: type[Exception] = redis.WatchError
        self.url = url
        self.prefix = prefix
        try:
            self._r = redis.Redis.from_url(url)
            self._scan_script = self._r.register_script(_SCAN)
            self._purge_script = self._r.register_script(_PURGE)
        except self._errors as exc:
            raise FluvialError(f"cannot connect to the Redis store at {url}: {exc}") from exc

    @classmethod
    def from_settings(
        cls, settings: StoreSettings, data_dir: Path, *, clock: Clock | None = None
    ) -> RedisStore:
        return cls(
            settings.redis_url,
            prefix=settings.namespace,
            default_ttl=parse_ttl(settings.default_ttl),
            clock=clock,
        )

    def close(self) -> None:
        self._r.close()

    def _fail(self, exc: Exception) -> FluvialError:
        return FluvialError(f"Redis store '{self.prefix}' at {self.url}: {exc}")

    def _keys(self, table: str) -> tuple[str, str, str]:
        base = f"{self.prefix}:t:{table}"
        return f"{base}:index", f"{base}:rows", f"{base}:expiry"

    @property
    def _meta(self) -> str:
        return f"{self.prefix}:tables"

    def _checkpoint_key(self, sink_id: str) -> str:
        return f"{self.prefix}:checkpoint:{sink_id}"

    # -- tables ------------------------------------------------------------------------------

    def _load_tables(self) -> dict[str, TableInfo]:
        try:
            raw = self._r.hgetall(self._meta)
        except self._errors as exc:
            raise self._fail(exc) from exc
        tables = {}
        for name, value in raw.items():
            meta = orjson.loads(value)
            schema = pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(meta["schema"])))
            tables[name.decode()] = TableInfo(name.decode(), tuple(meta["key"]), schema)
        return tables

    def _create(self, info: TableInfo) -> TableInfo:
        meta = {"key": list(info.key), "schema": info.schema.serialize().to_pybytes().hex()}
        try:
            self._r.hsetnx(self._meta, info.name, orjson.dumps(meta))
        except self._errors as exc:
            raise self._fail(exc) from exc
        return self._load_tables()[info.name]

    def _drop(self, name: str) -> None:
        try:
            with self._r.pipeline(transaction=True) as pipe:
                pipe.delete(*self._keys(name))
                pipe.hdel(self._meta, name)
                pipe.execute()
        except self._errors as exc:
            raise self._fail(exc) from exc

    # -- writes ------------------------------------------------------------------------------

    def _queue(
        self, pipe: Any, info: TableInfo, upserts: pa.Table, deletes: pa.Table, expires: int | None
    ) -> None:
        index, rows, expiry = self._keys(info.name)
        if deletes.num_rows:
            gone = order_key(deletes, info.key).to_pylist()
            for i in range(0, len(gone), _CHUNK):
                chunk = gone[i : i + _CHUNK]
                pipe.hdel(rows, *chunk)
                pipe.zrem(index, *chunk)
                pipe.zrem(expiry, *chunk)
        if upserts.num_rows:
            keys = order_key(upserts, info.key).to_pylist()
            values = encode_rows(upserts)
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i : i + _CHUNK]
                pipe.hset(rows, mapping=dict(zip(chunk, values[i : i + _CHUNK], strict=True)))
                pipe.zadd(index, dict.fromkeys(chunk, 0))
                if expires is None:
                    pipe.zrem(expiry, *chunk)
                else:
                    pipe.zadd(expiry, dict.fromkeys(chunk, expires))

    def _write(
        self,
        info: TableInfo,
        upserts: pa.Table,
        deletes: pa.Table,
        expires_ms: int | None,
        checkpoint: tuple[str, int] | None,
    ) -> bool:
        try:
            if checkpoint is None:
                with self._r.pipeline(transaction=True) as pipe:
                    self._queue(pipe, info, upserts, deletes, expires_ms)
                    pipe.execute()
                return True
            sink_id, checkpoint_id = checkpoint
            key = self._checkpoint_key(sink_id)
            while True:
                with self._r.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(key)
                        last = pipe.get(key)
                        if last is not None and int(last) >= checkpoint_id:
                            return False
                        pipe.multi()
                        self._queue(pipe, info, upserts, deletes, expires_ms)
                        pipe.set(key, checkpoint_id)
                        pipe.execute()
                        return True
                    except self._watch_error:
                        continue  # another writer of this sink id committed: check again
        except self._errors as exc:
            raise self._fail(exc) from exc

    def _last_checkpoint(self, sink_id: str) -> int | None:
        try:
            value = self._r.get(self._checkpoint_key(sink_id))
        except self._errors as exc:
            raise self._fail(exc) from exc
        return None if value is None else int(value)

    def _purge(self, info: TableInfo, now_ms: int) -> int:
        try:
            return int(self._purge_script(keys=list(self._keys(info.name)), args=[now_ms]))
        except self._errors as exc:
            raise self._fail(exc) from exc

    # -- reads ---------------------------------------------------------------------------------

    def _get_many(self, info: TableInfo, keys: pa.Table, now_ms: int) -> pa.Table:
        _, rows, expiry = self._keys(info.name)
        wanted = order_key(keys, info.key).to_pylist()
        try:
            with self._r.pipeline(transaction=True) as pipe:
                for i in range(0, len(wanted), _CHUNK):
                    pipe.hmget(rows, wanted[i : i + _CHUNK])
                    pipe.zmscore(expiry, wanted[i : i + _CHUNK])
                replies = pipe.execute()
        except self._errors as exc:
            raise self._fail(exc) from exc
        values = pa.array(list(chain.from_iterable(replies[0::2])), pa.binary())
        expires = pa.array(list(chain.from_iterable(replies[1::2])), pa.float64())
        live = pc.and_(pc.is_valid(values), pc.fill_null(pc.greater(expires, now_ms), True))
        return decode_rows(values.filter(live), info.schema)

    def _scan(self, info: TableInfo, scan: ScanRange, now_ms: int) -> pa.Table:
        prefix = (
            order_key(scan.prefix, scan.prefix.column_names)[0].as_py()
            if scan.prefix.num_columns
            else b""
        )
        lo: bytes = b"[" + prefix if prefix else b"-"
        upper = successor(prefix)
        hi: bytes = b"(" + upper if upper is not None else b"+"
        if scan.start is not None:
            lo = b"[" + prefix + order_key(scan.start, scan.start.column_names)[0].as_py()
        if scan.end is not None:
            hi = b"(" + prefix + order_key(scan.end, scan.end.column_names)[0].as_py()
        try:
            values = self._scan_script(
                keys=list(self._keys(info.name)),
                args=[lo, hi, int(scan.reverse), scan.limit or 0, now_ms],
            )
        except self._errors as exc:
            raise self._fail(exc) from exc
        return decode_rows(values, info.schema)

    def _count(self, info: TableInfo, now_ms: int) -> int:
        _, rows, expiry = self._keys(info.name)
        try:
            with self._r.pipeline(transaction=True) as pipe:
                pipe.hlen(rows)
                pipe.zcount(expiry, "-inf", now_ms)
                total, expired = pipe.execute()
        except self._errors as exc:
            raise self._fail(exc) from exc
        return int(total) - int(expired)
