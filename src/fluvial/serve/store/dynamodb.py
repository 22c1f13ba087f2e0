"""The DynamoDB store (``pip install 'fluvial[aws]'``): every table in one DynamoDB table.

One on-demand DynamoDB table, ``<resource_prefix>-store`` (``[aws]``), holds the stores
of every namespace (``[store] namespace``, like Redis's key prefix). Its key is a string
partition key ``p`` and a binary sort key ``s``; for a namespace ``N``:

==================  =====================  =============================================
``p``               ``s``                  item
==================  =====================  =============================================
``N#t#T``           key bytes              a row of store table ``T``
``N#meta``          ``T``                  ``T``'s key columns and Arrow schema
``N#head``          ``T``                  ``T``'s commit count and pending write
``N#w#T#W``         chunk number           write ``W`` of ``T``, staged (see below)
``N#checkpoint``    sink id                the last checkpoint id applied for the sink
==================  =====================  =============================================

*Key bytes* are the order-preserving encoding of the key columns
(:func:`~fluvial.serve.store._codec.order_key`). DynamoDB orders a binary sort key by
its bytes, so a prefix of the leading key columns is ``begins_with`` and a range on the
next one is ``BETWEEN``: every scan is one ``Query`` of one partition, in key order or
reversed. A row is one JSON object (attribute ``r``, see
:mod:`~fluvial.serve.store._json`), encoded and decoded a whole batch at a time.

A row written with a time to live carries ``e``, its expiry in epoch ms, and
``expires_at``, the same rounded up to seconds: the table's DynamoDB TTL attribute, so
DynamoDB deletes expired rows by itself — lazily, within a day or two. Reads filter on
``e`` (a ``FilterExpression``) and an expired row is invisible as soon as it expires, as
in every backend; :meth:`~fluvial.serve.store.Store.purge_expired` deletes what DynamoDB
has not yet.

**Atomic writes.** A DynamoDB transaction holds at most 100 items, and a stream sink's
checkpoint may change thousands of rows. A write of up to 98 changes is one
``TransactWriteItems`` (the rows, the checkpoint id under a condition, the head's commit
count). A larger write is *staged*: its rows, packed as Arrow IPC into chunks of up to
300 KB, go to a partition of their own (the write's id says how many chunks), then one
transaction commits it — it marks the head ``pending`` and records the checkpoint id —
and the rows are copied into the table with ``BatchWriteItem`` (25 items a request,
unprocessed items retried) and the staging deleted (*rolled forward*; whoever finds a
pending write rolls it forward first, so a crash loses nothing). Readers take the head
before and after they read: a pending write is laid over the rows read (its staging is
read first: it is deleted only once the table holds all of it), and a commit in between
makes them read again. So no reader sees half of a write, however large, and a
checkpoint id is recorded exactly when its rows are. A lookup of one key needs none of
this (one row is never half-written): it reads the head and the row in one
``BatchGetItem``.

Reads are strongly consistent (``ConsistentRead``). Errors from DynamoDB come out as
:class:`~fluvial.errors.FluvialError` naming the table.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import orjson
import pyarrow as pa

from fluvial._deps import require
from fluvial.errors import FluvialError
from fluvial.serve.store._codec import order_key, successor
from fluvial.serve.store._dynamodb_items import (
    _b,
    _code,
    _Head,
    _live,
    _n,
    _overlay,
    _pack,
    _s,
    _unpack,
)
from fluvial.serve.store._json import decode_rows, encode_rows
from fluvial.serve.store.base import Clock, ScanRange, Store, TableInfo, parse_ttl

if TYPE_CHECKING:
    from fluvial.config import AwsSettings, StoreSettings

__all__ = ["DynamoDBStore"]

#: items a BatchWriteItem request may carry, and keys a BatchGetItem request
_BATCH_WRITE, _BATCH_GET = 25, 100
#: changes written in one transaction (100 items less the head and the checkpoint)
_TRANSACT = 98
_RETRIES = 8  # throttled or unprocessed requests, with exponential backoff
_READ_RETRIES = 50  # reads that met a concurrent commit
_T = TypeVar("_T")


class DynamoDBStore(Store):
    """Store tables in one DynamoDB table (see the module docstring)."""

    name: ClassVar[str] = "dynamodb"

    def __init__(
        self,
        table_name: str = "fluvial_store",
        *,
        namespace: str = "fluvial_store",
        region: str = "us-east-1",
        endpoint_url: str = "",
        profile: str = "",
        default_ttl: float | None = None,
        clock: Clock | None = None,
        create: bool = True,
    ) -> None:
        super().__init__(default_ttl=default_ttl, clock=clock)
        boto3 = require("boto3", "aws")
        botocore = require("botocore.exceptions", "aws")
        config = require("botocore.config", "aws")
        self._errors: tuple[type[Exception], ...] = (
            botocore.ClientError,
            botocore.BotoCoreError,
        )
        self._client_error: type[Exception] = botocore.ClientError
        self.table_name = table_name
        self.namespace = namespace
        self.endpoint_url = endpoint_url
        self._staged_cache: tuple[tuple[str, str] | None, dict[bytes, dict[str, Any]]] = (None, {})
        try:
            session = boto3.Session(profile_name=profile or None, region_name=region or None)
            self._db = session.client(
                "dynamodb",
                endpoint_url=endpoint_url or None,
                config=config.Config(
                    retries={"max_attempts": _RETRIES, "mode": "standard"},
                    max_pool_connections=32,
                ),
            )
        except self._errors as exc:
            raise FluvialError(f"cannot open the DynamoDB store '{table_name}': {exc}") from exc
        if create:
            self._ensure_table()

    @classmethod
    def from_settings(
        cls,
        settings: StoreSettings,
        data_dir: Path,
        *,
        clock: Clock | None = None,
        aws: AwsSettings | None = None,
    ) -> DynamoDBStore:
        from fluvial.config import AwsSettings

        aws = aws or AwsSettings()
        return cls(
            f"{aws.resource_prefix}-store",
            namespace=settings.namespace,
            region=aws.region,
            endpoint_url=aws.endpoint_url,
            profile=aws.profile,
            default_ttl=parse_ttl(settings.default_ttl),
            clock=clock,
        )

    def _fail(self, exc: Exception) -> FluvialError:
        return FluvialError(f"DynamoDB store '{self.table_name}' ({self.namespace}): {exc}")

    def close(self) -> None:
        self._db.close()

    # -- the DynamoDB table --------------------------------------------------------------------

    def _ensure_table(self) -> None:
        """Create the DynamoDB table (on demand, TTL on ``expires_at``) unless it exists."""
        try:
            self._db.describe_table(TableName=self.table_name)
            return
        except self._client_error as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise self._fail(exc) from exc
        except self._errors as exc:
            raise self._fail(exc) from exc
        try:
            try:
                self._db.create_table(
                    TableName=self.table_name,
                    AttributeDefinitions=[
                        {"AttributeName": "p", "AttributeType": "S"},
                        {"AttributeName": "s", "AttributeType": "B"},
                    ],
                    KeySchema=[
                        {"AttributeName": "p", "KeyType": "HASH"},
                        {"AttributeName": "s", "KeyType": "RANGE"},
                    ],
                    BillingMode="PAY_PER_REQUEST",
                )
            except self._client_error as exc:
                if _code(exc) != "ResourceInUseException":  # created by someone else
                    raise
            self._db.get_waiter("table_exists").wait(
                TableName=self.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
            )
            self._db.update_time_to_live(
                TableName=self.table_name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
            )
        except self._client_error as exc:
            if "TimeToLive is already enabled" in str(exc):
                return
            raise self._fail(exc) from exc
        except self._errors as exc:
            raise self._fail(exc) from exc

    # -- requests --------------------------------------------------------------------------

    def _pk(self, kind: str, *parts: str) -> str:
        return "#".join([self.namespace, kind, *parts])

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._db, method)(**kwargs)
        except self._errors as exc:
            raise self._fail(exc) from exc

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item a Query returns, page after page."""
        kwargs = {"TableName": self.table_name, "ConsistentRead": True, **kwargs}
        while True:
            page = self._call("query", **kwargs)
            yield from page.get("Items", [])
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def _batch_write(self, requests: Sequence[dict[str, Any]]) -> None:
        """Puts and deletes in BatchWriteItem requests of 25, retrying unprocessed items."""
        for i in range(0, len(requests), _BATCH_WRITE):
            pending: list[dict[str, Any]] = list(requests[i : i + _BATCH_WRITE])
            for attempt in range(_RETRIES + 1):
                reply = self._call("batch_write_item", RequestItems={self.table_name: pending})
                pending = reply.get("UnprocessedItems", {}).get(self.table_name, [])
                if not pending:
                    break
                if attempt == _RETRIES:
                    raise FluvialError(
                        f"DynamoDB store '{self.table_name}': {len(pending)} item(s) "
                        f"still unprocessed after {_RETRIES} retries (throttled)"
                    )
                time.sleep(min(2.0, 0.05 * 2**attempt))

    def _batch_get(self, keys: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The items with these keys (in no particular order), retrying unprocessed keys."""
        found: list[dict[str, Any]] = []
        for i in range(0, len(keys), _BATCH_GET):
            pending: list[dict[str, Any]] = list(keys[i : i + _BATCH_GET])
            for attempt in range(_RETRIES + 1):
                reply = self._call(
                    "batch_get_item",
                    RequestItems={self.table_name: {"Keys": pending, "ConsistentRead": True}},
                )
                found += reply.get("Responses", {}).get(self.table_name, [])
                unprocessed = reply.get("UnprocessedKeys", {}).get(self.table_name)
                pending = unprocessed["Keys"] if unprocessed else []
                if not pending:
                    break
                if attempt == _RETRIES:
                    raise FluvialError(
                        f"DynamoDB store '{self.table_name}': {len(pending)} key(s) "
                        f"still unprocessed after {_RETRIES} retries (throttled)"
                    )
                time.sleep(min(2.0, 0.05 * 2**attempt))
        return found

    def _get_item(self, pk: str, sk: bytes) -> dict[str, Any] | None:
        reply = self._call(
            "get_item",
            TableName=self.table_name,
            Key={"p": _s(pk), "s": _b(sk)},
            ConsistentRead=True,
        )
        item: dict[str, Any] | None = reply.get("Item")
        return item

    # -- tables ------------------------------------------------------------------------------

    def _load_tables(self) -> dict[str, TableInfo]:
        tables = {}
        for item in self._query(
            KeyConditionExpression="p = :p", ExpressionAttributeValues={":p": _s(self._pk("meta"))}
        ):
            name = bytes(item["s"]["B"]).decode()
            schema = pa.ipc.read_schema(pa.py_buffer(bytes(item["schema"]["B"])))
            tables[name] = TableInfo(name, tuple(orjson.loads(item["key"]["S"])), schema)
        return tables

    def _create(self, info: TableInfo) -> TableInfo:
        try:
            self._db.put_item(
                TableName=self.table_name,
                Item={
                    "p": _s(self._pk("meta")),
                    "s": _b(info.name.encode()),
                    "key": _s(orjson.dumps(list(info.key)).decode()),
                    "schema": _b(info.schema.serialize().to_pybytes()),
                },
                ConditionExpression="attribute_not_exists(p)",
            )
        except self._client_error as exc:
            if _code(exc) != "ConditionalCheckFailedException":  # created meanwhile
                raise self._fail(exc) from exc
        except self._errors as exc:
            raise self._fail(exc) from exc
        return self._load_tables()[info.name]

    def _drop(self, name: str) -> None:
        head = _Head(self._get_item(self._pk("head"), name.encode()))
        if head.pending:
            self._discard(name, head.pending)
        doomed = [
            {"DeleteRequest": {"Key": {"p": item["p"], "s": item["s"]}}}
            for item in self._query(
                KeyConditionExpression="p = :p",
                ExpressionAttributeValues={":p": _s(self._pk("t", name))},
                ProjectionExpression="p, s",
            )
        ]
        doomed += [
            {"DeleteRequest": {"Key": {"p": _s(self._pk(kind)), "s": _b(name.encode())}}}
            for kind in ("head", "meta")
        ]
        self._batch_write(doomed)

    # -- writes ------------------------------------------------------------------------------

    def _items(
        self, pk: str, upserts: pa.Table, deletes: pa.Table, info: TableInfo, expires: int | None
    ) -> tuple[list[dict[str, Any]], list[bytes]]:
        """The row items of *upserts* under *pk*, and the key bytes of *deletes*."""
        items: list[dict[str, Any]] = []
        if upserts.num_rows:
            keys = order_key(upserts, info.key).to_pylist()
            rows = encode_rows(upserts)
            extra: dict[str, Any] = {}
            if expires is not None:
                extra = {"e": _n(expires), "expires_at": _n(math.ceil(expires / 1000))}
            items = [
                {"p": _s(pk), "s": _b(k), "r": _s(r.decode()), **extra}
                for k, r in zip(keys, rows, strict=True)
            ]
        gone = order_key(deletes, info.key).to_pylist() if deletes.num_rows else []
        return items, gone

    def _checkpoint_update(self, checkpoint: tuple[str, int]) -> dict[str, Any]:
        sink_id, checkpoint_id = checkpoint
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": {"p": _s(self._pk("checkpoint")), "s": _b(sink_id.encode())},
                "UpdateExpression": "SET c = :c",
                "ConditionExpression": "attribute_not_exists(c) OR c < :c",
                "ExpressionAttributeValues": {":c": _n(checkpoint_id)},
            }
        }

    def _head_update(self, table: str, pending: str | None) -> dict[str, Any]:
        """Count a commit on *table*'s head (with *pending*: mark that write pending),
        provided no write is pending."""
        values: dict[str, Any] = {":one": _n(1)}
        update = "ADD c :one"
        if pending is not None:
            update = "SET w = :w ADD c :one"
            values[":w"] = _s(pending)
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": {"p": _s(self._pk("head")), "s": _b(table.encode())},
                "UpdateExpression": update,
                "ConditionExpression": "attribute_not_exists(w)",
                "ExpressionAttributeValues": values,
            }
        }

    def _transact(self, actions: list[dict[str, Any]], checkpoint: tuple[str, int] | None) -> bool:
        """Run one transaction: False if its checkpoint condition cancelled it (the id was
        applied already); :class:`_Retry` if another write was pending or committed first."""
        try:
            self._db.transact_write_items(TransactItems=actions)
            return True
        except self._client_error as exc:
            if _code(exc) != "TransactionCanceledException":
                raise self._fail(exc) from exc
            reasons = getattr(exc, "response", {}).get("CancellationReasons", [])
            codes = {r.get("Code", "None") for r in reasons} - {"None"}
            if codes - {"ConditionalCheckFailed", "TransactionConflict"}:
                raise self._fail(exc) from exc  # not a race: e.g. an item too large
            if checkpoint is not None:
                last = self._last_checkpoint(checkpoint[0])
                if last is not None and last >= checkpoint[1]:
                    return False
            raise _Retry from exc
        except self._errors as exc:
            raise self._fail(exc) from exc

    def _write(
        self,
        info: TableInfo,
        upserts: pa.Table,
        deletes: pa.Table,
        expires_ms: int | None,
        checkpoint: tuple[str, int] | None,
    ) -> bool:
        if checkpoint is not None:
            last = self._last_checkpoint(checkpoint[0])
            if last is not None and last >= checkpoint[1]:
                return False
        items, gone = self._items(self._pk("t", info.name), upserts, deletes, info, expires_ms)
        if not items and not gone and checkpoint is None:
            return True
        for _ in range(_RETRIES * 4):
            head = _Head(self._get_item(self._pk("head"), info.name.encode()))
            if head.pending:
                self._roll_forward(info.name, head.pending)
                continue
            try:
                if len(items) + len(gone) <= _TRANSACT:
                    return self._write_at_once(info.name, items, gone, checkpoint)
                return self._write_staged(info, items, gone, checkpoint)
            except _Retry:  # another writer committed first: roll it forward, try again
                time.sleep(0.01)
        raise FluvialError(
            f"DynamoDB store '{self.table_name}': table '{info.name}' kept changing; "
            "gave up writing"
        )

    def _write_at_once(
        self,
        table: str,
        items: list[dict[str, Any]],
        gone: list[bytes],
        checkpoint: tuple[str, int] | None,
    ) -> bool:
        pk = self._pk("t", table)
        actions: list[dict[str, Any]] = [self._head_update(table, None)]
        if checkpoint is not None:
            actions.append(self._checkpoint_update(checkpoint))
        actions += [{"Put": {"TableName": self.table_name, "Item": item}} for item in items]
        actions += [
            {"Delete": {"TableName": self.table_name, "Key": {"p": _s(pk), "s": _b(k)}}}
            for k in gone
        ]
        return self._transact(actions, checkpoint)

    def _write_staged(
        self,
        info: TableInfo,
        items: list[dict[str, Any]],
        gone: list[bytes],
        checkpoint: tuple[str, int] | None,
    ) -> bool:
        chunks = _pack(items, gone)
        # the id says how many chunks there are: they are read and deleted by key
        write_id = f"{uuid.uuid4().hex}.{len(chunks)}"
        self._batch_write(
            [
                {"PutRequest": {"Item": {**key, "a": _b(chunk)}}}
                for key, chunk in zip(self._chunk_keys(info.name, write_id), chunks, strict=True)
            ]
        )
        actions = [self._head_update(info.name, write_id)]
        if checkpoint is not None:
            actions.append(self._checkpoint_update(checkpoint))
        try:
            committed = self._transact(actions, checkpoint)
        except _Retry:
            self._discard(info.name, write_id)
            raise
        if not committed:
            self._discard(info.name, write_id)
            return False
        # the writer knows its own rows: rolled forward without reading them back
        staged: dict[bytes, dict[str, Any]] = {bytes(i["s"]["B"]): i for i in items}
        staged.update((k, {"s": _b(k), "d": {"BOOL": True}}) for k in gone)
        self._staged_cache = ((info.name, write_id), staged)
        self._roll_forward(info.name, write_id)
        return True

    def _chunk_keys(self, table: str, write_id: str) -> list[dict[str, Any]]:
        staging = _s(self._pk("w", table, write_id))
        count = int(write_id.rpartition(".")[2])
        return [{"p": staging, "s": _b(i.to_bytes(4, "big"))} for i in range(count)]

    def _discard(self, table: str, write_id: str) -> None:
        self._batch_write(
            [{"DeleteRequest": {"Key": key}} for key in self._chunk_keys(table, write_id)]
        )

    def _staged(self, table: str, write_id: str) -> dict[bytes, dict[str, Any]]:
        """A committed write's rows by key bytes, as items (``d``: a delete). A committed
        write never changes, so the last one read is kept."""
        if self._staged_cache[0] == (table, write_id):
            return self._staged_cache[1]
        keys = self._chunk_keys(table, write_id)
        items = self._batch_get(keys)
        chunks = [bytes(i["a"]["B"]) for i in sorted(items, key=lambda i: bytes(i["s"]["B"]))]
        staged = _unpack(chunks)
        if len(chunks) == len(keys):  # not some: being deleted, the write is in the table
            self._staged_cache = ((table, write_id), staged)
        return staged

    def _roll_forward(self, table: str, write_id: str) -> None:
        """Copy a committed write's staged rows into the table, clear the head's pending
        mark, and delete the staging (idempotent: any reader or writer may finish it)."""
        pk = _s(self._pk("t", table))
        staged = self._staged(table, write_id)
        self._batch_write(
            [
                {"DeleteRequest": {"Key": {"p": pk, "s": item["s"]}}}
                if "d" in item
                else {"PutRequest": {"Item": {**item, "p": pk}}}
                for item in staged.values()
            ]
        )
        try:
            self._db.update_item(
                TableName=self.table_name,
                Key={"p": _s(self._pk("head")), "s": _b(table.encode())},
                UpdateExpression="REMOVE w",
                ConditionExpression="w = :w",
                ExpressionAttributeValues={":w": _s(write_id)},
            )
        except self._client_error as exc:
            if _code(exc) != "ConditionalCheckFailedException":  # someone else finished it
                raise self._fail(exc) from exc
        except self._errors as exc:
            raise self._fail(exc) from exc
        self._discard(table, write_id)

    def _last_checkpoint(self, sink_id: str) -> int | None:
        item = self._get_item(self._pk("checkpoint"), sink_id.encode())
        return None if item is None or "c" not in item else int(item["c"]["N"])

    def _purge(self, info: TableInfo, now_ms: int) -> int:
        expired = [
            bytes(item["s"]["B"])
            for item in self._query(
                KeyConditionExpression="p = :p",
                FilterExpression="e <= :now",
                ExpressionAttributeValues={
                    ":p": _s(self._pk("t", info.name)),
                    ":now": _n(now_ms),
                },
                ProjectionExpression="s",
            )
        ]
        removed = 0
        for k in expired:  # one conditional delete each: a row written again meanwhile stays
            try:
                self._db.delete_item(
                    TableName=self.table_name,
                    Key={"p": _s(self._pk("t", info.name)), "s": _b(k)},
                    ConditionExpression="e <= :now",
                    ExpressionAttributeValues={":now": _n(now_ms)},
                )
                removed += 1
            except self._client_error as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise self._fail(exc) from exc
            except self._errors as exc:
                raise self._fail(exc) from exc
        return removed

    # -- reads ---------------------------------------------------------------------------------

    def _isolated(self, table: str, read: Callable[[str | None], _T]) -> _T:
        """``read(pending)`` between two looks at the head, again until no write committed
        in between; *pending* is the write to lay over the rows (or None)."""
        for attempt in range(_READ_RETRIES):
            before = _Head(self._get_item(self._pk("head"), table.encode()))
            items = read(before.pending)
            after = _Head(self._get_item(self._pk("head"), table.encode()))
            if after.commits == before.commits:
                return items
            time.sleep(min(0.2, 0.002 * 2**attempt))
        raise FluvialError(
            f"DynamoDB store '{self.table_name}': table '{table}' kept changing while read"
        )

    def _decode(self, info: TableInfo, items: Sequence[dict[str, Any]]) -> pa.Table:
        return decode_rows([item["r"]["S"].encode() for item in items], info.schema)

    def _get_many(self, info: TableInfo, keys: pa.Table, now_ms: int) -> pa.Table:
        wanted = order_key(keys, info.key).to_pylist()
        pk = self._pk("t", info.name)
        if len(set(wanted)) == 1:
            # one row cannot be seen half-written: the head and the row in one request
            # do, unless a write is pending (then the general path below)
            head_key = {"p": _s(self._pk("head")), "s": _b(info.name.encode())}
            got = self._batch_get([head_key, {"p": _s(pk), "s": _b(wanted[0])}])
            head = _Head(next((i for i in got if i["p"] == head_key["p"]), None))
            if head.pending is None:
                rows = [i for i in got if i["p"]["S"] == pk and _live(i, now_ms)]
                return self._decode(info, rows * len(wanted))

        def read(pending: str | None) -> list[dict[str, Any]]:
            # the staged write first: it is deleted only once the table holds it all
            staged = self._staged(info.name, pending) if pending is not None else {}
            unique = list(dict.fromkeys(wanted))
            found = {
                bytes(i["s"]["B"]): i
                for i in self._batch_get([{"p": _s(pk), "s": _b(k)} for k in unique])
            }
            found.update((k, staged[k]) for k in unique if k in staged)
            return [
                found[k]
                for k in wanted
                if k in found and "d" not in found[k] and _live(found[k], now_ms)
            ]

        return self._decode(info, self._isolated(info.name, read))

    def _bounds(self, scan: ScanRange) -> tuple[bytes | None, bytes | None]:
        """*scan* as key bytes: ``lo`` inclusive, ``hi`` exclusive (None: unbounded)."""
        prefix = (
            order_key(scan.prefix, scan.prefix.column_names)[0].as_py()
            if scan.prefix.num_columns
            else b""
        )
        lo: bytes | None = prefix or None
        hi = successor(prefix) if prefix else None
        if scan.start is not None:
            lo = prefix + order_key(scan.start, scan.start.column_names)[0].as_py()
        if scan.end is not None:
            hi = prefix + order_key(scan.end, scan.end.column_names)[0].as_py()
        return lo, hi

    def _scan(self, info: TableInfo, scan: ScanRange, now_ms: int) -> pa.Table:
        lo, hi = self._bounds(scan)
        if scan.limit == 0 or (lo is not None and hi is not None and hi <= lo):
            return info.schema.empty_table()
        values: dict[str, Any] = {":p": _s(self._pk("t", info.name)), ":now": _n(now_ms)}
        condition = "p = :p"
        if lo is not None and hi is not None:
            # BETWEEN includes hi: a row keyed exactly hi is dropped below
            condition += " AND s BETWEEN :lo AND :hi"
            values[":lo"], values[":hi"] = _b(lo), _b(hi)
        elif lo is not None:
            condition += " AND s >= :lo"
            values[":lo"] = _b(lo)
        elif hi is not None:
            condition += " AND s < :hi"
            values[":hi"] = _b(hi)
        query = {
            "KeyConditionExpression": condition,
            "FilterExpression": "attribute_not_exists(e) OR e > :now",
            "ExpressionAttributeValues": values,
            "ProjectionExpression": "s, r, e",
            "ScanIndexForward": not scan.reverse,
        }

        def read(pending: str | None) -> list[dict[str, Any]]:
            # the staged write first: it is deleted only once the table holds it all
            staged = self._staged(info.name, pending) if pending is not None else None
            limit = scan.limit if pending is None else None
            # DynamoDB limits the items it looks at, before the filter: page on
            page = {"Limit": max(limit + 1, 100)} if limit is not None else {}
            items: list[dict[str, Any]] = []
            for item in self._query(**query, **page):
                if hi is not None and bytes(item["s"]["B"]) == hi:
                    continue
                items.append(item)
                if limit is not None and len(items) >= limit:
                    break
            if staged is not None:
                items = _overlay(staged, items, (lo, hi), now_ms)
                if scan.reverse:
                    items.reverse()
                if scan.limit is not None:
                    items = items[: scan.limit]
            return items

        return self._decode(info, self._isolated(info.name, read))

    def _count(self, info: TableInfo, now_ms: int) -> int:
        def read(pending: str | None) -> int | None:
            if pending is not None:
                return None  # a write being rolled forward: counted below, laid over
            query: dict[str, Any] = {
                "TableName": self.table_name,
                "ConsistentRead": True,
                "KeyConditionExpression": "p = :p",
                "FilterExpression": "attribute_not_exists(e) OR e > :now",
                "ExpressionAttributeValues": {
                    ":p": _s(self._pk("t", info.name)),
                    ":now": _n(now_ms),
                },
                "Select": "COUNT",  # DynamoDB counts: no row leaves the server
            }
            total = 0
            while True:
                page = self._call("query", **query)
                total += int(page["Count"])
                if not page.get("LastEvaluatedKey"):
                    return total
                query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

        counted = self._isolated(info.name, read)
        if counted is not None:
            return counted
        every = ScanRange(pa.table({}), None, None, None, False)
        return self._scan(info, every, now_ms).num_rows


class _Retry(Exception):
    """A transaction lost to a concurrent writer: roll it forward and write again."""
