"""Creating, deleting and listing topics: a Kinesis stream per topic, a shard per partition.

A topic ``events`` is the stream ``<resource_prefix>-events`` with as many shards as
partitions; partition *p* is the *p*-th shard by starting hash key, and the writer puts
its records there with that ``ExplicitHashKey``. The topic's item in the bookkeeping table
is claimed first (so two processes cannot both create it) and listed once its shards are
known; a claim left by a process that died meanwhile is taken over after ten minutes. A stream that already exists under that name and holds no records (one declared by
``fluvial aws template``'s CloudFormation stack) is adopted with its shard count.
Resharding a stream under Fluvial is not supported: the partition count is fixed.
"""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa

from fluvial.errors import LogError, TopicExistsError, TopicNotFoundError
from fluvial.log.kafka.codec import check_json_schema
from fluvial.log.kinesis.aws import AwsClients, call, error_code
from fluvial.log.kinesis.catalog import Catalog, TopicMeta
from fluvial.log.routing import check_name

__all__ = ["MAX_SHARDS", "Topics"]

MAX_SHARDS = 500  # the default shard quota of an AWS account and region
_STREAM_NAME_MAX = 128


class Topics:
    """Topic lifecycle: streams through *clients*, bookkeeping in *catalog*."""

    def __init__(
        self, clients: AwsClients, catalog: Catalog, prefix: str, *, timeout: float = 120.0
    ) -> None:
        self._aws = clients
        self._catalog = catalog
        self.prefix = prefix
        self.timeout = timeout

    def stream_name(self, topic: str) -> str:
        """The stream that holds *topic*."""
        name = f"{self.prefix}-{topic}" if self.prefix else topic
        if len(name) > _STREAM_NAME_MAX:
            raise LogError(
                f"topic '{topic}': the stream name '{name[:40]}…' would have {len(name)} "
                f"characters; Kinesis allows {_STREAM_NAME_MAX}"
            )
        return name

    def create(self, name: str, partitions: int, schema: pa.Schema | None) -> TopicMeta:
        """Create the stream and record the topic. Raises TopicExistsError, LogError."""
        check_name(name)
        if not isinstance(partitions, int) or not 1 <= partitions <= MAX_SHARDS:
            raise LogError(
                f"partitions must be an integer from 1 to {MAX_SHARDS}, found {partitions!r}"
            )
        if schema is not None:
            check_json_schema(schema, name)
        stream = self.stream_name(name)
        self._catalog.claim_topic(name, stream, partitions, stale_after=5 * self.timeout)
        try:
            adopted = self._create_stream(stream, partitions)
            shards = self._wait_active(stream)
            if not adopted and len(shards) != partitions:
                raise LogError(
                    f"stream '{stream}' has {len(shards)} open shards, expected {partitions}"
                )
            self._catalog.finish_topic(
                name,
                [s["ShardId"] for s in shards],
                [s["HashKeyRange"]["StartingHashKey"] for s in shards],
                schema,
            )
        except BaseException:
            self._catalog.forget_topic(name, 0)  # release the name
            raise
        meta = self._catalog.topic(name)
        assert meta is not None
        return meta

    def _create_stream(self, stream: str, shards: int) -> bool:
        """Create the stream; ``True`` if an existing, empty one was adopted instead."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._aws.kinesis.create_stream(
                    StreamName=stream,
                    ShardCount=shards,
                    StreamModeDetails={"StreamMode": "PROVISIONED"},
                )
                return False
            except self._aws.botocore_exceptions.ClientError as exc:
                code = error_code(exc)
                # a stream of that name is still being deleted: wait for it to go
                if code == "ResourceInUseException" and time.monotonic() < deadline:
                    if self._status(stream) == "ACTIVE":
                        if self._is_empty(stream):
                            return True
                        raise TopicExistsError(
                            f"stream '{stream}' already exists and holds records that "
                            "Fluvial did not write; choose another topic name or "
                            "[aws] resource_prefix"
                        ) from exc
                    time.sleep(0.2)
                    continue
                raise LogError(f"creating stream '{stream}': {exc} ({code})") from exc

    def _is_empty(self, stream: str) -> bool:
        """Whether no shard of an active stream holds a record."""
        for shard in self._wait_active(stream):
            it = call(
                self._aws,
                f"reading stream '{stream}'",
                self._aws.kinesis.get_shard_iterator,
                StreamName=stream,
                ShardId=shard["ShardId"],
                ShardIteratorType="TRIM_HORIZON",
            )["ShardIterator"]
            while it:
                page = call(
                    self._aws,
                    f"reading stream '{stream}'",
                    self._aws.kinesis.get_records,
                    ShardIterator=it,
                    Limit=1,
                )
                if page.get("Records"):
                    return False
                if int(page.get("MillisBehindLatest", 0)) == 0:
                    break
                it = page.get("NextShardIterator")
        return True

    def _status(self, stream: str) -> str | None:
        try:
            out = self._aws.kinesis.describe_stream_summary(StreamName=stream)
        except self._aws.botocore_exceptions.ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise LogError(f"describing stream '{stream}': {exc}") from exc
        return str(out["StreamDescriptionSummary"]["StreamStatus"])

    def _wait_active(self, stream: str) -> list[dict[str, Any]]:
        """The stream's open shards sorted by hash key, once it is active."""
        deadline = time.monotonic() + self.timeout
        while self._status(stream) != "ACTIVE":
            if time.monotonic() > deadline:
                raise LogError(f"stream '{stream}' is not active after {self.timeout:.0f} s")
            time.sleep(0.1)
        shards: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamName": stream}
        while True:
            out = call(
                self._aws, f"listing shards of '{stream}'", self._aws.kinesis.list_shards, **kwargs
            )
            shards += out.get("Shards", [])
            token = out.get("NextToken")
            if not token:
                break
            kwargs = {"NextToken": token}
        open_shards = [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]
        return sorted(open_shards, key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))

    def delete(self, meta: TopicMeta) -> None:
        """Delete the stream, then the topic's bookkeeping."""
        try:
            self._aws.kinesis.delete_stream(StreamName=meta.stream, EnforceConsumerDeletion=True)
        except self._aws.botocore_exceptions.ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise LogError(f"deleting stream '{meta.stream}': {exc}") from exc
        self._catalog.forget_topic(meta.name, meta.partitions)

    def not_found(self, name: str) -> TopicNotFoundError:
        """The error for a topic that does not exist, suggesting a close name."""
        from fluvial.errors import did_you_mean

        names = [t.name for t in self._catalog.topics()]
        return TopicNotFoundError(f"topic '{name}' does not exist{did_you_mean(str(name), names)}")
