"""Fluvial's bookkeeping for Kinesis topics, in one DynamoDB table (``<prefix>-log``).

Kinesis streams carry no schema, no dense offsets and no consumer groups, so the backend
keeps them in a DynamoDB table (as the Kinesis Client Library keeps its leases and
checkpoints), created on first use with on-demand capacity. Its items, by key:

==================================  =========================================================
``pk``, ``sk``                      item
==================================  =========================================================
``topic``, *name*                   the topic: stream name, shards, schema, the writer's
                                    epoch, and per partition the acknowledged end offset
                                    ``end_<p>``, last append time ``ts_<p>``, bytes ``bytes_<p>``
``block/<name>/<p>``, *offset*      an index entry: the sequence number at which reading
                                    finds every record from *offset* on (every 1,000 offsets)
``group``, ``<topic>/<group>``      a consumer group's committed offsets, ``p_<p>`` each
==================================  =========================================================

Every read is strongly consistent, so all processes see the same topics and offsets.
"""

from __future__ import annotations

import bisect
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from fluvial.errors import LogError, TopicExistsError
from fluvial.log.kafka.codec import schema_from_text, schema_to_text
from fluvial.log.kinesis.aws import AwsClients, call, error_code

__all__ = ["Block", "Catalog", "Fenced", "TopicMeta"]

_TOPIC = "topic"
_GROUP = "group"


class Fenced(LogError):
    """Another writer took over the topic (a newer epoch) or the topic was recreated."""


@dataclass(frozen=True)
class Block:
    """An index entry: reading the shard from *sequence* finds every offset >= *offset*."""

    offset: int
    sequence: str
    epoch: int
    timestamp_ms: int


@dataclass(frozen=True)
class TopicMeta:
    """A topic's item: its stream and shards, schema, writer epoch and acknowledged ends."""

    name: str
    stream: str
    generation: str
    shards: tuple[str, ...]
    hash_keys: tuple[str, ...]
    schema: pa.Schema | None
    epoch: int
    ends: tuple[int, ...]
    last_ms: tuple[int, ...]
    bytes: tuple[int, ...]

    @property
    def partitions(self) -> int:
        return len(self.shards)

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> TopicMeta:
        n = len(item["shards"]["L"])

        def ints(prefix: str) -> tuple[int, ...]:
            return tuple(int(item.get(f"{prefix}_{p}", {"N": "0"})["N"]) for p in range(n))

        schema = item.get("schema", {}).get("S")
        return cls(
            name=item["sk"]["S"],
            stream=item["stream"]["S"],
            generation=item["generation"]["S"],
            shards=tuple(s["S"] for s in item["shards"]["L"]),
            hash_keys=tuple(s["S"] for s in item["hash_keys"]["L"]),
            schema=schema_from_text(schema) if schema else None,
            epoch=int(item["epoch"]["N"]),
            ends=ints("end"),
            last_ms=ints("ts"),
            bytes=ints("bytes"),
        )


def _n(value: int) -> dict[str, str]:
    return {"N": str(int(value))}


class Catalog:
    """Reads and writes the bookkeeping table *table* through *clients*."""

    def __init__(self, clients: AwsClients, table: str) -> None:
        self._aws = clients
        self._db = clients.dynamodb
        self.table = table
        self._blocks: dict[tuple[str, str, int], list[Block]] = {}

    # -- the table ------------------------------------------------------------------------

    def ensure_table(self, timeout: float = 60.0) -> None:
        """Create the table (on-demand capacity) unless it exists, and wait until active."""
        try:
            status = self._db.describe_table(TableName=self.table)["Table"]["TableStatus"]
        except self._aws.botocore_exceptions.ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise LogError(f"reading DynamoDB table '{self.table}': {exc}") from exc
            try:
                created = self._db.create_table(
                    TableName=self.table,
                    AttributeDefinitions=[
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "sk", "AttributeType": "S"},
                    ],
                    KeySchema=[
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                    BillingMode="PAY_PER_REQUEST",
                )
                status = created["TableDescription"]["TableStatus"]
            except self._aws.botocore_exceptions.ClientError as exc2:
                if error_code(exc2) != "ResourceInUseException":  # another process won
                    raise LogError(f"creating DynamoDB table '{self.table}': {exc2}") from exc2
                status = "CREATING"
        deadline = time.monotonic() + timeout
        while status != "ACTIVE":
            if time.monotonic() > deadline:
                raise LogError(f"DynamoDB table '{self.table}' is not active after {timeout:.0f} s")
            time.sleep(0.2)
            status = self._db.describe_table(TableName=self.table)["Table"]["TableStatus"]

    def _query(self, pk: str, **extra: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ConsistentRead": True,
            **extra,
        }
        if "sk_from" in kwargs:
            kwargs["KeyConditionExpression"] += " AND sk > :from"
            kwargs["ExpressionAttributeValues"][":from"] = {"S": kwargs.pop("sk_from")}
        while True:
            page = call(self._aws, f"querying '{self.table}'", self._db.query, **kwargs)
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _delete_all(self, keys: list[dict[str, Any]]) -> None:
        for start in range(0, len(keys), 25):
            requests = [{"DeleteRequest": {"Key": k}} for k in keys[start : start + 25]]
            pending: dict[str, Any] = {self.table: requests}
            while pending:
                out = call(
                    self._aws,
                    "deleting index entries",
                    self._db.batch_write_item,
                    RequestItems=pending,
                )
                pending = out.get("UnprocessedItems") or {}
                if pending:
                    time.sleep(0.05)

    # -- topics ---------------------------------------------------------------------------

    def claim_topic(
        self, name: str, stream: str, partitions: int, *, stale_after: float = 600.0
    ) -> str:
        """Record a new topic (no shards yet); its generation. Raises TopicExistsError.

        A claim whose creator never finished it (the process died while the stream was
        being created) is taken over once it is *stale_after* seconds old.
        """
        generation = uuid.uuid4().hex
        now_ms = int(time.time() * 1000)
        try:
            self._db.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": _TOPIC},
                    "sk": {"S": name},
                    "stream": {"S": stream},
                    "generation": {"S": generation},
                    "shards": {"L": []},
                    "hash_keys": {"L": []},
                    "epoch": _n(0),
                    "requested": _n(partitions),
                    "claimed_ms": _n(now_ms),
                },
                ConditionExpression=(
                    "attribute_not_exists(pk) OR (size(shards) = :zero AND claimed_ms < :stale)"
                ),
                ExpressionAttributeValues={
                    ":zero": _n(0),
                    ":stale": _n(now_ms - int(stale_after * 1000)),
                },
            )
        except self._aws.botocore_exceptions.ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise TopicExistsError(f"topic '{name}' already exists") from None
            raise LogError(f"recording topic '{name}': {exc}") from exc
        return generation

    def finish_topic(
        self, name: str, shards: list[str], hash_keys: list[str], schema: pa.Schema | None
    ) -> None:
        """Fill in a claimed topic's shards (and schema): from now on it is listed."""
        values: dict[str, Any] = {
            ":s": {"L": [{"S": s} for s in shards]},
            ":h": {"L": [{"S": h} for h in hash_keys]},
        }
        update = "SET shards = :s, hash_keys = :h"
        if schema is not None:
            update += ", #schema = :schema"
            values[":schema"] = {"S": schema_to_text(schema)}
        call(
            self._aws,
            f"recording topic '{name}'",
            self._db.update_item,
            TableName=self.table,
            Key={"pk": {"S": _TOPIC}, "sk": {"S": name}},
            UpdateExpression=update,
            ExpressionAttributeValues=values,
            **({"ExpressionAttributeNames": {"#schema": "schema"}} if schema is not None else {}),
        )

    def raw_topic(self, name: str) -> dict[str, Any] | None:
        """The topic's item as stored (``None`` if there is none)."""
        out = call(
            self._aws,
            f"reading topic '{name}'",
            self._db.get_item,
            TableName=self.table,
            Key={"pk": {"S": _TOPIC}, "sk": {"S": name}},
            ConsistentRead=True,
        )
        item: dict[str, Any] | None = out.get("Item")
        return item

    def topic(self, name: str) -> TopicMeta | None:
        """The topic (``None`` if it does not exist or is still being created)."""
        item = self.raw_topic(name)
        if item is None or not item["shards"]["L"]:
            return None
        return TopicMeta.from_item(item)

    def topics(self) -> list[TopicMeta]:
        """Every topic with shards, sorted by name."""
        return [TopicMeta.from_item(i) for i in self._query(_TOPIC) if i["shards"]["L"]]

    def forget_topic(self, name: str, partitions: int) -> None:
        """Delete the topic's item, index entries and consumer-group offsets."""
        for p in range(partitions):
            keys = [{"pk": i["pk"], "sk": i["sk"]} for i in self._query(f"block/{name}/{p}")]
            self._delete_all(keys)
        groups = [
            {"pk": i["pk"], "sk": i["sk"]}
            for i in self._query(_GROUP)
            if i["sk"]["S"].startswith(f"{name}/")
        ]
        self._delete_all(groups)
        call(
            self._aws,
            f"deleting topic '{name}'",
            self._db.delete_item,
            TableName=self.table,
            Key={"pk": {"S": _TOPIC}, "sk": {"S": name}},
        )
        self._blocks = {k: v for k, v in self._blocks.items() if k[0] != name}

    def set_schema(self, meta: TopicMeta, schema: pa.Schema) -> pa.Schema:
        """Set the schema of a schemaless topic; the one that won if another process raced."""
        try:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": _TOPIC}, "sk": {"S": meta.name}},
                UpdateExpression="SET #schema = :schema",
                ConditionExpression="attribute_not_exists(#schema) AND generation = :g",
                ExpressionAttributeNames={"#schema": "schema"},
                ExpressionAttributeValues={
                    ":schema": {"S": schema_to_text(schema)},
                    ":g": {"S": meta.generation},
                },
            )
            return schema
        except self._aws.botocore_exceptions.ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise LogError(f"recording the schema of topic '{meta.name}': {exc}") from exc
        now = self.topic(meta.name)
        if now is None or now.generation != meta.generation or now.schema is None:
            raise Fenced(f"topic '{meta.name}' was deleted or recreated during the append")
        return now.schema

    # -- the writer's lease and acknowledgements --------------------------------------------

    def take_lease(self, meta: TopicMeta) -> int:
        """Become the topic's writer: a new epoch, higher than any before. Returns it."""
        try:
            out = self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": _TOPIC}, "sk": {"S": meta.name}},
                UpdateExpression="SET epoch = epoch + :one",
                ConditionExpression="generation = :g",
                ExpressionAttributeValues={":one": _n(1), ":g": {"S": meta.generation}},
                ReturnValues="UPDATED_NEW",
            )
        except self._aws.botocore_exceptions.ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise Fenced(f"topic '{meta.name}' was deleted or recreated") from None
            raise LogError(f"taking the writer lease of topic '{meta.name}': {exc}") from exc
        return int(out["Attributes"]["epoch"]["N"])

    def acknowledge(
        self,
        meta: TopicMeta,
        epoch: int,
        ends: Mapping[int, tuple[int, int, int]],
        blocks: Mapping[int, Block],
    ) -> None:
        """Publish new ends ``{p: (end, last_ms, bytes)}`` and index *blocks*, if still the writer.

        One transaction: the ends move only while the topic's epoch is still *epoch*.

        Raises:
            Fenced: another writer has taken over (or the topic was recreated).
        """
        names: dict[str, str] = {}
        values: dict[str, Any] = {":e": _n(epoch), ":g": {"S": meta.generation}}
        sets = []
        for p, (end, last_ms, size) in ends.items():
            sets += [f"end_{p} = :end{p}", f"ts_{p} = :ts{p}", f"bytes_{p} = :b{p}"]
            values |= {f":end{p}": _n(end), f":ts{p}": _n(last_ms), f":b{p}": _n(size)}
        update: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"pk": {"S": _TOPIC}, "sk": {"S": meta.name}},
            "UpdateExpression": "SET " + ", ".join(sets),
            "ConditionExpression": "epoch = :e AND generation = :g",
            "ExpressionAttributeValues": values,
        }
        if names:
            update["ExpressionAttributeNames"] = names
        puts = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {
                        "pk": {"S": f"block/{meta.name}/{p}"},
                        "sk": {"S": f"{b.offset:019d}"},
                        "seq": {"S": b.sequence},
                        "epoch": _n(b.epoch),
                        "ts": _n(b.timestamp_ms),
                    },
                }
            }
            for p, b in blocks.items()
        ]
        try:
            if puts:
                self._db.transact_write_items(TransactItems=[{"Update": update}, *puts])
            else:
                self._db.update_item(**update)
        except self._aws.botocore_exceptions.ClientError as exc:
            code = error_code(exc)
            reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
            if code == "ConditionalCheckFailedException" or any(
                r.get("Code") == "ConditionalCheckFailed" for r in reasons
            ):
                raise Fenced(
                    f"topic '{meta.name}': another process took over writing to it (or it was "
                    "recreated); this append was not acknowledged"
                ) from None
            raise LogError(f"acknowledging an append to topic '{meta.name}': {exc}") from exc

    # -- the offset index -------------------------------------------------------------------

    def blocks(self, meta: TopicMeta, partition: int) -> list[Block]:
        """The partition's index entries, sorted by offset (cached; new ones fetched)."""
        key = (meta.name, meta.generation, partition)
        known = self._blocks.setdefault(key, [])
        extra = {"sk_from": f"{known[-1].offset:019d}"} if known else {}
        for item in self._query(f"block/{meta.name}/{partition}", **extra):
            known.append(
                Block(
                    int(item["sk"]["S"]),
                    item["seq"]["S"],
                    int(item["epoch"]["N"]),
                    int(item["ts"]["N"]),
                )
            )
        return known

    def block_at(self, meta: TopicMeta, partition: int, offset: int) -> Block | None:
        """The last index entry at or before *offset* (``None``: read from the start)."""
        blocks = self.blocks(meta, partition)
        i = bisect.bisect_right([b.offset for b in blocks], offset)
        return blocks[i - 1] if i else None

    def block_before_time(self, meta: TopicMeta, partition: int, ts: int) -> Block | None:
        """The last index entry stamped before *ts* (``None``: read from the start)."""
        blocks = self.blocks(meta, partition)
        i = bisect.bisect_left([b.timestamp_ms for b in blocks], ts)
        return blocks[i - 1] if i else None

    # -- consumer groups ------------------------------------------------------------------

    def commit(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Set the group's committed offsets of the given partitions."""
        if not offsets:
            return
        call(
            self._aws,
            f"committing offsets of group '{group}' on '{topic}'",
            self._db.update_item,
            TableName=self.table,
            Key={"pk": {"S": _GROUP}, "sk": {"S": f"{topic}/{group}"}},
            UpdateExpression="SET " + ", ".join(f"p_{p} = :p{p}" for p in offsets),
            ExpressionAttributeValues={f":p{p}": _n(o) for p, o in offsets.items()},
        )

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offsets on *topic*."""
        out = call(
            self._aws,
            f"reading offsets of group '{group}' on '{topic}'",
            self._db.get_item,
            TableName=self.table,
            Key={"pk": {"S": _GROUP}, "sk": {"S": f"{topic}/{group}"}},
            ConsistentRead=True,
        )
        return _offsets(out.get("Item") or {})

    def groups(self) -> list[tuple[str, str, dict[int, int]]]:
        """Every ``(group, topic, committed offsets)``."""
        out = []
        for item in self._query(_GROUP):
            topic, _, group = item["sk"]["S"].partition("/")
            out.append((group, topic, _offsets(item)))
        return out


def _offsets(item: Mapping[str, Any]) -> dict[int, int]:
    return {int(k[2:]): int(v["N"]) for k, v in item.items() if k.startswith("p_") and "N" in v}
