"""The Kafka event log: Fluvial topics as Kafka topics, one JSON message per row.

:class:`KafkaLog` composes the parts, each in its own module:

* :mod:`~fluvial.log.kafka.cluster` - clients, topic metadata, the schema catalog;
* :mod:`~fluvial.log.kafka.topics` - creating, deleting and listing topics;
* :mod:`~fluvial.log.kafka.producer` - appends through an idempotent producer;
* :mod:`~fluvial.log.kafka.reader` - reads, watermarks and offsets by time;
* :mod:`~fluvial.log.kafka.groups` - consumer-group offsets;
* :mod:`~fluvial.log.kafka.codec` - rows as JSON message values.

Topic schemas live in the compacted topic ``_fluvial_schemas``; consumer groups that
Fluvial committed for are listed in ``_fluvial_groups``. ``_``-prefixed topics are hidden.
librdkafka's mock cluster (the test suite's broker) has no CreateTopics/DeleteTopics, so
topic management goes through :class:`~fluvial.log.kafka.admin.TopicAdmin`, which the
tests implement with the mock's C API; its other gaps are met in the modules above.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fluvial import _deps
from fluvial.errors import TopicExistsError
from fluvial.log.base import AppendResult, EventLog, GroupInfo, TopicInfo
from fluvial.log.kafka.admin import TopicAdmin, translate
from fluvial.log.kafka.cluster import GROUPS_TOPIC, SCHEMAS_TOPIC, Cluster, client_settings
from fluvial.log.kafka.groups import ConsumerGroups
from fluvial.log.kafka.producer import RowProducer, producer_settings
from fluvial.log.kafka.reader import PartitionReader
from fluvial.log.kafka.topics import Topics

if TYPE_CHECKING:
    from pathlib import Path

    from fluvial.config import Settings

__all__ = ["GROUPS_TOPIC", "SCHEMAS_TOPIC", "KafkaLog"]


class KafkaLog(EventLog):
    """An :class:`~fluvial.log.base.EventLog` on a Kafka cluster (``pip install 'fluvial[kafka]'``).

    *topic_admin* replaces the AdminClient for creating and deleting topics (the tests use
    this to drive librdkafka's mock cluster); *client_config* is merged into every client's
    configuration (security settings, timeouts).
    """

    name = "kafka"

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        partitions: int = 4,
        replication_factor: int = 1,
        client_id: str = "fluvial",
        topic_admin: TopicAdmin | None = None,
        client_config: Mapping[str, Any] | None = None,
    ) -> None:
        ck = _deps.require("confluent_kafka", "kafka")
        admin_mod = _deps.require("confluent_kafka.admin", "kafka")
        self.default_partitions = partitions
        self.replication_factor = replication_factor
        base = client_settings(bootstrap_servers, client_id, client_config)
        #: the producer's settings: idempotent, acknowledged by all in-sync replicas
        self.producer_config: dict[str, Any] = producer_settings(base)
        try:
            self._cluster = Cluster(
                ck,
                admin_mod,
                base,
                ck.Producer(self.producer_config),
                replication_factor=replication_factor,
                topic_admin=topic_admin,
            )
            self._reader = PartitionReader(self._cluster)
        except ck.KafkaException as exc:
            raise translate(exc, f"connecting to Kafka at {bootstrap_servers}") from exc
        self._producer = RowProducer(self._cluster)
        self._groups = ConsumerGroups(self._cluster)
        self._topics = Topics(self._cluster, self._forget)
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings, data_dir: Path) -> KafkaLog:
        k = settings.kafka
        return cls(
            k.bootstrap_servers,
            partitions=settings.log.partitions,
            replication_factor=k.replication_factor,
            client_id=k.client_id,
        )

    def _forget(self, topic: str) -> None:
        """Drop what this instance cached about a topic that was created or deleted."""
        self._producer.forget(topic)
        self._reader.forget(topic)
        self._cluster.forget(topic)

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
            return self._topics.create(name, n, schema)
        except TopicExistsError:
            if not exist_ok:
                raise
            return self.topic(name)

    def delete_topic(self, name: str) -> None:
        self._topics.delete(name)
        self._groups.forget_topic(name)

    def list_topics(self) -> list[TopicInfo]:
        return self._topics.infos()

    # -- writing and reading ------------------------------------------------------------

    def append(
        self,
        topic: str,
        data: pa.Table | pa.RecordBatch,
        *,
        key: str | pa.Array | pa.ChunkedArray | None = None,
        partition: int | None = None,
    ) -> AppendResult:
        return self._producer.append(topic, data, key, partition)

    def read(self, topic: str, partition: int, offset: int, max_records: int = 10_000) -> pa.Table:
        return self._reader.read(topic, partition, offset, max_records)

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        return self._reader.offset_for_time(topic, partition, timestamp_ms)

    def wait_for_data(self, topic: str, positions: Mapping[int, int], timeout: float) -> bool:
        return self._reader.wait_for_data(topic, positions, timeout)

    # -- consumer groups ----------------------------------------------------------------

    def commit(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        self._groups.commit(group, topic, offsets)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        return self._groups.committed(group, topic)

    def list_groups(self) -> list[GroupInfo]:
        return self._groups.list_groups(self.list_topics())

    # -- housekeeping -------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cluster.close()
        self._reader.close()
        self._groups.close()
