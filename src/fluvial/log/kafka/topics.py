"""Creating, deleting and listing Fluvial topics on a Kafka cluster.

A topic's schema is not Kafka's business: it lives in ``_fluvial_schemas``, so creating a
topic also records (or clears) its schema, and listing joins the cluster's metadata and
offsets with that catalog. ``_``-prefixed topics are Fluvial's own and never listed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from fluvial.errors import LogError, TopicExistsError
from fluvial.log.base import PartitionInfo, TopicInfo
from fluvial.log.kafka.admin import translate
from fluvial.log.kafka.cluster import TIMEOUT, Cluster, user_topics
from fluvial.log.kafka.codec import check_json_schema
from fluvial.log.routing import check_name

__all__ = ["Topics"]


class Topics:
    """Topic lifecycle on *cluster*; *forget* drops what the log cached about a topic."""

    def __init__(self, cluster: Cluster, forget: Callable[[str], None]) -> None:
        self._cluster = cluster
        self._forget = forget

    def create(self, name: str, partitions: int, schema: pa.Schema | None) -> TopicInfo:
        """Create a topic and wait until it is usable.

        Raises:
            TopicExistsError: it already exists.
            LogError: the name, partition count or schema is invalid.
        """
        check_name(name)
        if not isinstance(partitions, int) or partitions < 1:
            raise LogError(f"partitions must be an integer >= 1, found {partitions!r}")
        if schema is not None:
            check_json_schema(schema, name)
        cluster = self._cluster
        try:
            cluster.topic_admin.create_topic(name, partitions, cluster.replication_factor, {})
        except TopicExistsError:
            raise TopicExistsError(f"topic '{name}' already exists") from None
        self._forget(name)
        # a topic of this name may have existed before: forget its schema either way
        if schema is not None or cluster.schema(name) is not None:
            cluster.set_schema(name, schema)
        return self._wait_visible(name, partitions, schema)

    def _wait_visible(self, name: str, partitions: int, schema: pa.Schema | None) -> TopicInfo:
        # metadata propagates asynchronously on a real cluster: wait until every partition has a leader
        deadline = time.monotonic() + TIMEOUT
        while True:
            md = self._cluster.metadata().topics.get(name)
            if (
                md is not None
                and md.error is None
                and len(md.partitions) == partitions
                and all(p.leader >= 0 for p in md.partitions.values())
            ):
                break
            if time.monotonic() > deadline:
                raise LogError(
                    f"topic '{name}' was created but has no leaders after {TIMEOUT:.0f} s"
                )
            time.sleep(0.01)
        self._cluster.producer.list_topics(name, timeout=TIMEOUT)  # refresh the producer's view
        self._cluster.remember(name, partitions)
        return TopicInfo(name, tuple(PartitionInfo(p, 0, 0) for p in range(partitions)), schema)

    def delete(self, name: str) -> None:
        """Delete a user topic and its schema. Raises TopicNotFoundError."""
        cluster = self._cluster
        if not isinstance(name, str) or name.startswith("_") or not cluster.exists(name):
            raise cluster.not_found(str(name))
        cluster.topic_admin.delete_topic(name)
        self._forget(name)
        if cluster.schema(name) is not None:
            cluster.set_schema(name, None)

    def infos(self) -> list[TopicInfo]:
        """Every user topic with its offsets and schema, sorted by name."""
        md = self._cluster.metadata()
        names = user_topics(md)
        if not names:
            return []
        numbers = {n: sorted(md.topics[n].partitions) for n in names}
        parts = [self._cluster.tp(n, p) for n in names for p in numbers[n]]
        spec = self._cluster.offset_spec
        starts = self._list_offsets(parts, spec.earliest())
        ends = self._list_offsets(parts, spec.latest())
        schemas = self._cluster.schemas(names)
        return [
            TopicInfo(
                n,
                tuple(PartitionInfo(p, starts[(n, p)], ends[(n, p)]) for p in numbers[n]),
                schemas[n],
            )
            for n in names
        ]

    def _list_offsets(self, parts: list[Any], spec: Any) -> dict[tuple[str, int], int]:
        try:
            futures = self._cluster.admin.list_offsets(
                {tp: spec for tp in parts}, request_timeout=TIMEOUT
            )
            return {
                (tp.topic, tp.partition): fut.result(timeout=TIMEOUT).offset
                for tp, fut in futures.items()
            }
        except Exception as exc:
            raise translate(exc, "listing partition offsets") from exc
