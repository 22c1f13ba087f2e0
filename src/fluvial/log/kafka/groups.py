"""Consumer groups: committed offsets in Kafka's own group store, listed via ``_fluvial_groups``.

Offsets are committed with one consumer per group (never subscribed, so it does not join
the group's rebalances). Brokers without ListGroups (librdkafka's mock cluster) cannot say
which groups exist, so on a group's first commit to a topic Fluvial also writes the pair
to the compacted topic ``_fluvial_groups``; :meth:`ConsumerGroups.list_groups` reads it as
well as asking the cluster.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from fluvial.errors import LogError
from fluvial.log.base import GroupInfo, TopicInfo
from fluvial.log.kafka.admin import translate
from fluvial.log.kafka.cluster import GROUPS_TOPIC, TIMEOUT, Cluster
from fluvial.log.routing import check_name, partition_error

__all__ = ["ConsumerGroups"]


class ConsumerGroups:
    """Commits and reads consumer-group offsets on *cluster*."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._lock = threading.Lock()
        self._consumers: dict[str, Any] = {}
        self._registered: set[tuple[str, str]] = set()  # (group, topic) in GROUPS_TOPIC

    def _consumer(self, group: str) -> Any:
        check_name(group, "group")
        with self._lock:
            consumer = self._consumers.get(group)
            if consumer is None:
                consumer = self._consumers[group] = self._cluster.consumer(group)
            return consumer

    def commit(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """See :meth:`fluvial.log.base.EventLog.commit`."""
        cluster = self._cluster
        consumer = self._consumer(group)
        n = cluster.partition_count(topic)
        tps = []
        for p, off in offsets.items():
            if not isinstance(off, int) or off < 0:
                raise LogError(
                    f"committed offsets must be integers >= 0, found {off!r} for partition {p}"
                )
            if not 0 <= int(p) < n:
                raise partition_error(topic, n, p)
            tps.append(cluster.tp(topic, int(p), int(off)))
        if not tps:
            return
        try:
            result = consumer.commit(offsets=tps, asynchronous=False)
        except cluster.ck.KafkaException as exc:
            raise translate(exc, f"committing offsets of group '{group}' on '{topic}'") from exc
        bad = [tp for tp in result or [] if tp.error is not None]
        if bad:
            raise LogError(
                f"committing offsets of group '{group}' on '{topic}': "
                + "; ".join(f"partition {tp.partition}: {tp.error.str()}" for tp in bad)
            )
        if (group, topic) not in self._registered:
            catalog = cluster.catalog(GROUPS_TOPIC)
            key = f"{group}\x00{topic}"
            if catalog.get(key) is None:
                catalog.put(key, {"group": group, "topic": topic})
            self._registered.add((group, topic))

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """See :meth:`fluvial.log.base.EventLog.committed`."""
        cluster = self._cluster
        consumer = self._consumer(group)
        n = cluster.partition_count(topic)
        try:
            found = consumer.committed([cluster.tp(topic, p) for p in range(n)], timeout=TIMEOUT)
        except cluster.ck.KafkaException as exc:
            raise translate(exc, f"reading offsets of group '{group}' on '{topic}'") from exc
        return {tp.partition: tp.offset for tp in found if tp.error is None and tp.offset >= 0}

    def list_groups(self, topics: list[TopicInfo]) -> list[GroupInfo]:
        """Every group with offsets committed on one of *topics* (every user topic)."""
        pairs = {
            (doc["group"], doc["topic"])
            for doc in self._cluster.catalog(GROUPS_TOPIC).items().values()
        }
        pairs |= self._listed_groups()
        by_name = {t.name: t for t in topics}
        out = []
        for group, topic in sorted(pairs):
            info = by_name.get(topic)
            if info is None:
                continue
            committed = self.committed(group, topic)
            if not committed:
                continue
            lag = sum(
                max(0, p.end_offset - committed.get(p.partition, p.start_offset))
                for p in info.partitions
            )
            out.append(GroupInfo(group, topic, committed, lag))
        return out

    def _listed_groups(self) -> set[tuple[str, str]]:
        """(group, topic) pairs the cluster itself lists; empty where it cannot list groups."""
        admin = self._cluster.admin
        try:
            listing = admin.list_consumer_groups(request_timeout=10).result(timeout=15)
        except Exception:
            return set()
        group_ids = [g.group_id for g in listing.valid if not g.group_id.startswith("fluvial-")]
        pairs: set[tuple[str, str]] = set()
        for gid in group_ids:
            try:
                req = self._cluster.ck.ConsumerGroupTopicPartitions(gid)
                futures = admin.list_consumer_group_offsets([req], request_timeout=10)
                for tp in futures[gid].result(timeout=15).topic_partitions or []:
                    if not tp.topic.startswith("_"):
                        pairs.add((gid, tp.topic))
            except Exception:
                continue  # a group that vanished meanwhile
        return pairs

    def forget_topic(self, topic: str) -> None:
        """Drop every group's registration on a deleted topic."""
        catalog = self._cluster.catalog(GROUPS_TOPIC)
        for key, doc in catalog.items().items():
            if doc.get("topic") == topic:
                catalog.put(key, None)
        self._registered = {(g, t) for g, t in self._registered if t != topic}

    def close(self) -> None:
        for consumer in self._consumers.values():
            try:
                consumer.close()
            except Exception:
                pass  # closing is best effort: the process may be shutting down
