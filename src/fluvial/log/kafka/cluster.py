"""What every part of the Kafka log shares: clients, topic metadata and Fluvial's catalogs.

:class:`Cluster` holds the confluent-kafka module, the settings every client starts from,
the one producer (shared by appends and the catalog topics) and the AdminClient. It caches
each topic's partition count and opens the compacted catalog topics on first use:
``_fluvial_schemas`` (each topic's Arrow schema) and ``_fluvial_groups`` (see
:mod:`fluvial.log.kafka.groups`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from fluvial.errors import TopicExistsError, TopicNotFoundError, did_you_mean
from fluvial.log.kafka.admin import AdminTopics, TopicAdmin, translate
from fluvial.log.kafka.catalog import TopicCatalog
from fluvial.log.kafka.codec import schema_from_text, schema_to_text

__all__ = [
    "GROUPS_TOPIC",
    "SCHEMAS_TOPIC",
    "TIMEOUT",
    "Cluster",
    "client_settings",
    "user_topics",
]

SCHEMAS_TOPIC = "_fluvial_schemas"
GROUPS_TOPIC = "_fluvial_groups"
#: seconds any one request to the cluster may take
TIMEOUT = 30.0


def client_settings(
    bootstrap_servers: str, client_id: str, client_config: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The configuration every client starts from; *client_config* overrides the rest."""
    return {
        "bootstrap.servers": bootstrap_servers,
        "client.id": client_id,
        # never let a metadata lookup create a topic behind our back
        "allow.auto.create.topics": False,
        # librdkafka's log lines go to Python logging instead of stderr
        "logger": logging.getLogger("fluvial.log.kafka"),
        **dict(client_config or {}),
    }


def user_topics(metadata: Any) -> list[str]:
    """The sorted names of the healthy topics in *metadata* that are not hidden (``_``)."""
    return sorted(
        n for n, t in metadata.topics.items() if not n.startswith("_") and t.error is None
    )


def _schema_in(doc: Mapping[str, Any] | None) -> pa.Schema | None:
    return schema_from_text(doc["schema"]) if doc and doc.get("schema") else None


class Cluster:
    """One Kafka cluster as the log's parts see it.

    *ck* and *admin_mod* are the lazily imported ``confluent_kafka`` modules; *producer*
    is the producer every write goes through; *topic_admin* replaces the AdminClient for
    creating and deleting topics. Raises ``KafkaException`` if the AdminClient cannot be
    configured (the caller translates it).
    """

    def __init__(
        self,
        ck: Any,
        admin_mod: Any,
        base: Mapping[str, Any],
        producer: Any,
        *,
        replication_factor: int,
        topic_admin: TopicAdmin | None,
    ) -> None:
        self.ck = ck
        self.tp = ck.TopicPartition
        self._base = dict(base)
        self.producer = producer
        self.replication_factor = replication_factor
        self.admin = admin_mod.AdminClient(
            {k: v for k, v in base.items() if k != "allow.auto.create.topics"}
        )
        self.topic_admin: TopicAdmin = topic_admin or AdminTopics(self.admin, admin_mod.NewTopic)
        self.offset_spec = admin_mod.OffsetSpec
        self._catalogs: dict[str, TopicCatalog] = {}
        self._partition_counts: dict[str, int] = {}

    def consumer(self, group: str) -> Any:
        """A new consumer of *group* that commits only when told to."""
        return self.ck.Consumer(
            {
                **self._base,
                "group.id": group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "error",  # an out-of-range read is a bug, not a reset
                "fetch.wait.max.ms": 10,
                "fetch.error.backoff.ms": 10,
                "session.timeout.ms": 6000,
                "queued.max.messages.kbytes": 16384,
            }
        )

    # -- metadata -------------------------------------------------------------------------

    def metadata(self) -> Any:
        """Every topic's metadata (``ClusterMetadata``)."""
        try:
            return self.admin.list_topics(timeout=TIMEOUT)
        except self.ck.KafkaException as exc:
            raise translate(exc, "reading cluster metadata") from exc

    def partitions_of(self, topic: str, *, refresh: bool = False) -> int | None:
        """The topic's partition count, or ``None`` if it does not exist.

        Asks for every topic's metadata: a Metadata request naming a topic may create it on
        brokers with ``auto.create.topics.enable`` (the mock cluster does so regardless).
        """
        if not refresh and topic in self._partition_counts:
            return self._partition_counts[topic]
        md = self.metadata().topics.get(topic)
        if md is None or md.error is not None or not md.partitions:
            self._partition_counts.pop(topic, None)
            return None
        self._partition_counts[topic] = len(md.partitions)
        return len(md.partitions)

    def exists(self, topic: str) -> bool:
        return self.partitions_of(topic, refresh=True) is not None

    def partition_count(self, topic: str) -> int:
        """The topic's partition count. Raises TopicNotFoundError."""
        n = self.partitions_of(topic)
        if n is None:
            raise self.not_found(topic)
        return n

    def remember(self, topic: str, partitions: int) -> None:
        """Record the partition count of a topic just created."""
        self._partition_counts[topic] = partitions

    def forget(self, topic: str) -> None:
        """Drop the cached partition count of a topic that was created or deleted."""
        self._partition_counts.pop(topic, None)

    def not_found(self, topic: str) -> TopicNotFoundError:
        names = user_topics(self.metadata())
        return TopicNotFoundError(f"topic '{topic}' does not exist{did_you_mean(topic, names)}")

    # -- catalogs -------------------------------------------------------------------------

    def catalog(self, topic: str) -> TopicCatalog:
        """The catalog kept in the compacted topic *topic*, created on first use."""
        catalog = self._catalogs.get(topic)
        if catalog is None:
            if not self.exists(topic):
                try:
                    self.topic_admin.create_topic(
                        topic, 1, self.replication_factor, {"cleanup.policy": "compact"}
                    )
                except TopicExistsError:
                    pass  # another process made it first
            catalog = TopicCatalog(topic, self.consumer("fluvial-catalog"), self.producer, self.tp)
            self._catalogs[topic] = catalog
        return catalog

    def schema(self, topic: str) -> pa.Schema | None:
        """The topic's Arrow schema, or ``None`` while it has none."""
        return _schema_in(self.catalog(SCHEMAS_TOPIC).get(topic))

    def schemas(self, topics: Iterable[str]) -> dict[str, pa.Schema | None]:
        """The schema of each of *topics* (one read of the catalog)."""
        docs = self.catalog(SCHEMAS_TOPIC).items()
        return {t: _schema_in(docs.get(t)) for t in topics}

    def set_schema(self, topic: str, schema: pa.Schema | None) -> None:
        """Store the topic's schema; ``None`` deletes it."""
        doc = None
        if schema is not None:
            doc = {"topic": topic, "schema": schema_to_text(schema), "format": "arrow-ipc-base64"}
        self.catalog(SCHEMAS_TOPIC).put(topic, doc)

    def close(self) -> None:
        """Deliver what the producer still holds and close the catalogs' consumers."""
        self.producer.flush(TIMEOUT)
        for catalog in self._catalogs.values():
            catalog.close()
