"""The Kinesis event log: Fluvial topics as Kinesis Data Streams, one JSON record per row.

:class:`KinesisLog` composes the parts, each in its own module:

* :mod:`~fluvial.log.kinesis.aws` - boto3 clients and error translation;
* :mod:`~fluvial.log.kinesis.catalog` - the DynamoDB bookkeeping table: topics, schemas,
  end offsets, the offset index, the writer's lease, consumer-group offsets;
* :mod:`~fluvial.log.kinesis.topics` - a stream per topic, a shard per partition;
* :mod:`~fluvial.log.kinesis.records` - what a record carries; dense offsets from a shard;
* :mod:`~fluvial.log.kinesis.writer` - batched PutRecords with per-record retries;
* :mod:`~fluvial.log.kinesis.shards` and :mod:`~fluvial.log.kinesis.reader` - reads.

Offsets are Fluvial's own, dense per partition: each record carries its offset (assigned
by the topic's single writer, recovered on takeover) and the writer epoch in its
partition key; an index of sequence numbers every 1,000 offsets makes seeks cheap. The
design, and why it is crash-safe, is in ``docs/adr/0009-kinesis-event-log.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pyarrow as pa

from fluvial.errors import LogError, TopicExistsError
from fluvial.log.base import AppendResult, EventLog, GroupInfo, PartitionInfo, TopicInfo
from fluvial.log.kinesis.aws import AwsClients
from fluvial.log.kinesis.catalog import Catalog, TopicMeta
from fluvial.log.kinesis.reader import PartitionReader
from fluvial.log.kinesis.topics import Topics
from fluvial.log.kinesis.writer import RowWriter
from fluvial.log.routing import check_name, partition_error

if TYPE_CHECKING:
    from pathlib import Path

    from fluvial.config import Settings

__all__ = ["KinesisLog"]


def _info(meta: TopicMeta) -> TopicInfo:
    parts = tuple(PartitionInfo(p, 0, meta.ends[p], meta.bytes[p]) for p in range(meta.partitions))
    return TopicInfo(meta.name, parts, meta.schema)


class KinesisLog(EventLog):
    """An :class:`~fluvial.log.base.EventLog` on Kinesis Data Streams (``pip install 'fluvial[aws]'``).

    Streams are named ``<resource_prefix>-<topic>``; Fluvial's bookkeeping lives in the
    DynamoDB table ``<resource_prefix>-log``, created on first use. *endpoint_url* points
    both APIs at an emulator (moto's server in the tests).
    """

    name = "kinesis"

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        endpoint_url: str = "",
        profile: str = "",
        resource_prefix: str = "fluvial",
        partitions: int = 4,
    ) -> None:
        self.default_partitions = partitions
        self._aws = AwsClients.connect(region, endpoint_url, profile)
        self._catalog = Catalog(
            self._aws, f"{resource_prefix}-log" if resource_prefix else "fluvial-log"
        )
        self._catalog.ensure_table()
        self._topics = Topics(self._aws, self._catalog, resource_prefix)
        self.writer = RowWriter(self._aws, self._catalog)
        self._reader = PartitionReader(self._aws, self._catalog, self._meta)

    @classmethod
    def from_settings(cls, settings: Settings, data_dir: Path) -> KinesisLog:
        aws = settings.aws
        return cls(
            region=aws.region,
            endpoint_url=aws.endpoint_url,
            profile=aws.profile,
            resource_prefix=aws.resource_prefix,
            partitions=settings.log.partitions,
        )

    def _meta(self, name: str) -> TopicMeta:
        meta = self._catalog.topic(name) if isinstance(name, str) else None
        if meta is None:
            raise self._topics.not_found(str(name))
        return meta

    def _forget(self, name: str) -> None:
        self.writer.forget(name)
        self._reader.forget(name)

    # -- topics -------------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        partitions: int | None = None,
        *,
        schema: pa.Schema | None = None,
        exist_ok: bool = False,
    ) -> TopicInfo:
        n = self.default_partitions if partitions is None else partitions
        try:
            meta = self._topics.create(name, n, schema)
        except TopicExistsError:
            if not exist_ok:
                raise
            return self.topic(name)
        self._forget(name)
        return _info(meta)

    def delete_topic(self, name: str) -> None:
        meta = self._meta(name)
        self._topics.delete(meta)
        self._forget(name)

    def list_topics(self) -> list[TopicInfo]:
        return [_info(m) for m in self._catalog.topics()]

    def topic(self, name: str) -> TopicInfo:
        return _info(self._meta(name))

    # -- writing and reading ------------------------------------------------------------

    def append(
        self,
        topic: str,
        data: pa.Table | pa.RecordBatch,
        *,
        key: str | pa.Array | pa.ChunkedArray | None = None,
        partition: int | None = None,
    ) -> AppendResult:
        return self.writer.append(self._meta(topic), data, key, partition)

    def read(self, topic: str, partition: int, offset: int, max_records: int = 10_000) -> pa.Table:
        return self._reader.read(topic, partition, offset, max_records)

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        return self._reader.offset_for_time(topic, partition, timestamp_ms)

    def wait_for_data(self, topic: str, positions: Mapping[int, int], timeout: float) -> bool:
        return self._reader.wait_for_data(topic, positions, timeout)

    # -- consumer groups ----------------------------------------------------------------

    def commit(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        check_name(group, "group")
        meta = self._meta(topic)
        for p, off in offsets.items():
            if not isinstance(off, int) or off < 0:
                raise LogError(
                    f"committed offsets must be integers >= 0, found {off!r} for partition {p}"
                )
            if not (isinstance(p, int) and 0 <= p < meta.partitions):
                raise partition_error(topic, meta.partitions, p)
        self._catalog.commit(group, topic, offsets)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        check_name(group, "group")
        self._meta(topic)
        return self._catalog.committed(group, topic)

    def list_groups(self) -> list[GroupInfo]:
        topics = {t.name: t for t in self.list_topics()}
        out = []
        for group, topic, committed in sorted(self._catalog.groups()):
            info = topics.get(topic)
            if info is None or not committed:
                continue
            lag = sum(
                max(0, p.end_offset - committed.get(p.partition, p.start_offset))
                for p in info.partitions
            )
            out.append(GroupInfo(group, topic, committed, lag))
        return out
