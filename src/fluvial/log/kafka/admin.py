"""Creating and deleting Kafka topics, and turning confluent-kafka errors into Fluvial's.

Topic management sits behind the small :class:`TopicAdmin` protocol because not every
Kafka-protocol server implements the admin APIs: librdkafka's mock cluster, which the test
suite runs against, answers Produce, Fetch, ListOffsets and offset commits but has no
CreateTopics or DeleteTopics. Production uses :class:`AdminTopics` (the AdminClient); the
tests pass one that drives the mock cluster directly (``tests/log/kafka_cluster.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from fluvial.errors import LogError, TopicExistsError, TopicNotFoundError

__all__ = ["AdminTopics", "TopicAdmin", "kafka_error", "translate"]


class TopicAdmin(Protocol):
    """Creates and deletes topics on the cluster."""

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, config: Mapping[str, str]
    ) -> None:
        """Create a topic. Raises TopicExistsError, LogError."""

    def delete_topic(self, name: str) -> None:
        """Delete a topic. Raises TopicNotFoundError, LogError."""


def kafka_error(exc: BaseException) -> Any:
    """The ``KafkaError`` inside a ``KafkaException`` (or ``None``)."""
    args = getattr(exc, "args", ())
    return args[0] if args and hasattr(args[0], "code") else None


def translate(exc: BaseException, context: str) -> LogError:
    """A :class:`LogError` (subclass where one fits) for a confluent-kafka failure.

    Use as ``raise translate(exc, "reading 'events'") from exc``.
    """
    err = kafka_error(exc)
    name = err.name() if err is not None else type(exc).__name__
    text = err.str() if err is not None else str(exc)
    message = f"{context}: {text} ({name})"
    if name in ("TOPIC_ALREADY_EXISTS",):
        return TopicExistsError(message)
    if name in ("UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC", "UNKNOWN_TOPIC_ID"):
        return TopicNotFoundError(message)
    return LogError(message)


class AdminTopics:
    """:class:`TopicAdmin` over confluent-kafka's ``AdminClient`` (CreateTopics/DeleteTopics)."""

    def __init__(self, admin: Any, new_topic: Any, *, timeout: float = 30.0) -> None:
        self._admin = admin
        self._new_topic = new_topic  # confluent_kafka.admin.NewTopic, passed in: lazy import
        self._timeout = timeout

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, config: Mapping[str, str]
    ) -> None:
        spec = self._new_topic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config=dict(config),
        )
        futures = self._admin.create_topics(
            [spec], operation_timeout=self._timeout, request_timeout=self._timeout
        )
        try:
            futures[name].result(timeout=self._timeout + 5)
        except TimeoutError as exc:
            raise LogError(
                f"creating topic '{name}' timed out after {self._timeout:.0f} s"
            ) from exc
        except Exception as exc:
            error = translate(exc, f"creating topic '{name}'")
            if isinstance(error, TopicExistsError):
                raise TopicExistsError(f"topic '{name}' already exists") from exc
            raise error from exc

    def delete_topic(self, name: str) -> None:
        futures = self._admin.delete_topics([name], operation_timeout=self._timeout)
        try:
            futures[name].result(timeout=self._timeout + 5)
        except TimeoutError as exc:
            raise LogError(
                f"deleting topic '{name}' timed out after {self._timeout:.0f} s"
            ) from exc
        except Exception as exc:
            error = translate(exc, f"deleting topic '{name}'")
            if isinstance(error, TopicNotFoundError):
                raise TopicNotFoundError(f"topic '{name}' does not exist") from exc
            raise error from exc
