"""A key → JSON document table kept in a compacted Kafka topic (like a schema registry's).

Kafka topics carry no schema, so Fluvial keeps its own bookkeeping in hidden, compacted,
single-partition topics: ``_fluvial_schemas`` (topic name → its Arrow schema) and
``_fluvial_groups`` (group and topic → that the group has committed offsets on it). The
last record per key wins; a record with a null value (a tombstone) deletes the key. Every
process reads the topic to its end before answering, so they all see the same table.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from fluvial.errors import LogError
from fluvial.log.kafka.admin import translate

__all__ = ["TopicCatalog"]


class TopicCatalog:
    """The latest document per key of one compacted topic.

    *consumer* is a confluent-kafka Consumer used only by this catalog; *producer* is
    shared (writes are flushed before :meth:`put` returns).
    """

    def __init__(self, topic: str, consumer: Any, producer: Any, tp_class: Any) -> None:
        self.topic = topic
        self._consumer = consumer
        self._producer = producer
        self._tp = tp_class
        self._docs: dict[str, dict[str, Any]] = {}
        self._position = 0
        self._assigned = False
        self._lock = threading.Lock()

    def _catch_up(self, timeout: float = 10.0) -> None:
        tp = self._tp(self.topic, 0)
        try:
            low, high = self._consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
        except Exception as exc:
            raise translate(exc, f"reading Fluvial's catalog topic '{self.topic}'") from exc
        if self._position < low:  # compacted or truncated below what we had: start over
            self._docs.clear()
            self._position = low
        if self._position >= high:
            return
        if not self._assigned:
            self._consumer.assign([self._tp(self.topic, 0, self._position)])
            self._assigned = True
        deadline = time.monotonic() + timeout
        while self._position < high:
            if time.monotonic() > deadline:
                raise LogError(
                    f"reading Fluvial's catalog topic '{self.topic}' timed out at offset "
                    f"{self._position} of {high}"
                )
            for msg in self._consumer.consume(high - self._position, timeout=0.05):
                if msg.error() is not None:
                    raise LogError(f"reading catalog topic '{self.topic}': {msg.error().str()}")
                key = (msg.key() or b"").decode("utf-8")
                value = msg.value()
                if value is None:
                    self._docs.pop(key, None)
                else:
                    try:
                        self._docs[key] = json.loads(value)
                    except ValueError as exc:
                        raise LogError(
                            f"catalog topic '{self.topic}' offset {msg.offset()}: expected a "
                            f"JSON document, found {value[:80]!r}"
                        ) from exc
                self._position = msg.offset() + 1

    def get(self, key: str) -> dict[str, Any] | None:
        """The latest document for *key*, or ``None``."""
        with self._lock:
            self._catch_up()
            return self._docs.get(key)

    def items(self) -> dict[str, dict[str, Any]]:
        """Every key's latest document."""
        with self._lock:
            self._catch_up()
            return dict(self._docs)

    def put(self, key: str, doc: dict[str, Any] | None) -> None:
        """Write *doc* for *key* (``None`` deletes it); durable when this returns."""
        failures: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(err.str())

        value = None if doc is None else json.dumps(doc, sort_keys=True).encode("utf-8")
        try:
            self._producer.produce(
                self.topic, key=key.encode("utf-8"), value=value, partition=0, on_delivery=delivered
            )
            remaining = self._producer.flush(30)
        except Exception as exc:
            raise translate(exc, f"writing to catalog topic '{self.topic}'") from exc
        if remaining or failures:
            raise LogError(
                f"writing '{key}' to catalog topic '{self.topic}' failed: "
                f"{'; '.join(failures) or 'not delivered in 30 s'}"
            )
        with self._lock:
            self._catch_up()

    def close(self) -> None:
        """Close this catalog's consumer."""
        try:
            self._consumer.close()
        except Exception:
            pass  # best effort at shutdown
