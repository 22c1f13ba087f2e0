"""What only the Kafka backend has: interoperable JSON messages, its producer, its catalog topics.

The shared behaviour suite (``test_log_behaviour.py``) runs against Kafka too; these tests
look at the cluster with plain confluent-kafka clients, independently of :class:`KafkaLog`.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from fluvial.config import load_settings
from fluvial.errors import LogError, MissingDependencyError, TopicExistsError, TopicNotFoundError
from fluvial.log import open_log, partition_for
from fluvial.log.kafka import GROUPS_TOPIC, SCHEMAS_TOPIC, AdminTopics, KafkaLog

from .kafka_cluster import MockKafkaCluster, shared_cluster

TS = pa.timestamp("ms", tz="UTC")


@pytest.fixture(scope="session")
def cluster() -> MockKafkaCluster:
    return shared_cluster()


@pytest.fixture
def kafka(cluster: MockKafkaCluster) -> Iterator[KafkaLog]:
    log = KafkaLog(cluster.bootstrap_servers, partitions=3, topic_admin=cluster.topic_admin)
    try:
        yield log
    finally:
        log.close()


@pytest.fixture
def name() -> str:
    return f"k-{uuid.uuid4().hex[:10]}"


def raw_messages(cluster: MockKafkaCluster, topic: str, partition: int, count: int) -> list:  # type: ignore[type-arg]
    """*count* messages of a partition, read by a plain confluent-kafka consumer."""
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": "raw-reader",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    try:
        consumer.list_topics(topic, timeout=10)
        consumer.assign([TopicPartition(topic, partition, 0)])
        messages: list = []  # type: ignore[type-arg]
        for _ in range(200):
            messages += consumer.consume(count - len(messages), timeout=0.05)
            if len(messages) >= count:
                break
        assert all(m.error() is None for m in messages)
        return messages
    finally:
        consumer.close()


def test_values_are_plain_json_readable_by_any_kafka_client(
    kafka: KafkaLog, cluster: MockKafkaCluster, name: str
) -> None:
    kafka.create_topic(name, 2)
    at = [1_700_000_000_123, 1_700_000_001_000, 0]
    table = pa.table(
        {
            "user": ["ann", "bob", None],
            "at": pa.array(at, pa.int64()).view(TS),
            "page": pa.array(
                [{"url": "/a", "n": 1}, None, {"url": None, "n": 3}],
                pa.struct([("url", pa.string()), ("n", pa.int32())]),
            ),
            "tags": [["x", "y"], [], None],
        }
    )
    kafka.append(name, table, key="user")
    # the expectation is built from the input with the standard library, not the codec
    expected = {}
    for i, row in enumerate(table.to_pylist()):
        iso = datetime.fromtimestamp(at[i] / 1000, UTC).isoformat(timespec="milliseconds")
        expected[row["user"]] = {**row, "at": iso.replace("+00:00", "Z")}
    parts = partition_for(table.column("user"), 2)
    seen = {}
    for p in range(2):
        count = int((parts == p).sum())
        for msg in raw_messages(cluster, name, p, count):
            doc = json.loads(msg.value())
            assert msg.key() == (doc["user"] or "").encode() or (
                doc["user"] is None and msg.key() is None
            )
            seen[doc["user"]] = doc
    assert seen == expected


def test_producer_is_idempotent_and_waits_for_all_replicas(kafka: KafkaLog) -> None:
    assert kafka.producer_config["enable.idempotence"] is True
    assert kafka.producer_config["acks"] == "all"


def test_schemas_live_in_a_hidden_compacted_topic(
    kafka: KafkaLog, cluster: MockKafkaCluster, name: str
) -> None:
    schema = pa.schema([("user", pa.string()), ("at", TS)])
    kafka.create_topic(name, 1, schema=schema)
    assert all(not t.name.startswith("_") for t in kafka.list_topics())
    # read the catalog topic with a plain client: the last record for the key wins
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "x"})
    try:
        _, end = consumer.get_watermark_offsets(TopicPartition(SCHEMAS_TOPIC, 0), timeout=10)
    finally:
        consumer.close()
    docs = {m.key().decode(): m.value() for m in raw_messages(cluster, SCHEMAS_TOPIC, 0, end)}
    doc = json.loads(docs[name])
    stored = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(doc["schema"])))
    assert stored.equals(schema)
    kafka.delete_topic(name)
    after = {m.key().decode(): m.value() for m in raw_messages(cluster, SCHEMAS_TOPIC, 0, end + 1)}
    assert after[name] is None  # a tombstone: compaction drops the schema


def test_another_instance_sees_schemas_and_groups(
    kafka: KafkaLog, cluster: MockKafkaCluster, name: str
) -> None:
    kafka.create_topic(name, 2)
    kafka.append(name, pa.table({"seq": [1, 2, 3]}), partition=0)
    kafka.commit("readers", name, {0: 1})
    with KafkaLog(cluster.bootstrap_servers, topic_admin=cluster.topic_admin) as other:
        assert other.topic(name).schema.equals(pa.schema([("seq", pa.int64())]))
        groups = [g for g in other.list_groups() if g.topic == name]
        assert [(g.group, dict(g.committed), g.lag) for g in groups] == [("readers", {0: 1}, 2)]
        assert other.read(name, 0, 1).column("seq").to_pylist() == [2, 3]
    assert GROUPS_TOPIC.startswith("_")


def test_types_without_a_json_form_are_refused(kafka: KafkaLog, name: str) -> None:
    with pytest.raises(LogError, match=r"'blob'.*binary"):
        kafka.create_topic(name, 1, schema=pa.schema([("blob", pa.binary())]))
    kafka.create_topic(name, 1)
    with pytest.raises(LogError, match=r"'m\.blob'"):
        kafka.append(name, pa.table({"m": [{"blob": b"x"}]}))


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import fluvial._deps

    def missing(module: str, extra: str) -> None:
        raise MissingDependencyError(module, extra)

    monkeypatch.setattr(fluvial._deps, "require", missing)
    with pytest.raises(MissingDependencyError, match=r"pip install 'fluvial\[kafka\]'"):
        KafkaLog("127.0.0.1:1")


def test_opened_from_settings(cluster: MockKafkaCluster, tmp_path: Path, name: str) -> None:
    settings = load_settings(
        None,
        env={
            "FLUVIAL_LOG__BACKEND": "kafka",
            "FLUVIAL_LOG__PARTITIONS": "5",
            "FLUVIAL_KAFKA__BOOTSTRAP_SERVERS": cluster.bootstrap_servers,
        },
    )
    log = open_log(settings, tmp_path)
    try:
        assert isinstance(log, KafkaLog)
        assert log.default_partitions == 5
        assert log.producer_config["bootstrap.servers"] == cluster.bootstrap_servers
    finally:
        log.close()


class _Future:
    def __init__(self, error: KafkaError | None) -> None:
        self.error = error

    def result(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise KafkaException(self.error)


class _FakeAdmin:
    """An AdminClient whose futures fail with a given broker error."""

    def __init__(self, error: KafkaError | None) -> None:
        self.error = error
        self.created: list[object] = []

    def create_topics(self, specs: list, **_: object) -> dict:  # type: ignore[type-arg]
        self.created += specs
        return {s.topic: _Future(self.error) for s in specs}

    def delete_topics(self, names: list, **_: object) -> dict:  # type: ignore[type-arg]
        return {n: _Future(self.error) for n in names}


def test_admin_client_errors_are_translated() -> None:
    from confluent_kafka.admin import NewTopic

    exists = AdminTopics(_FakeAdmin(KafkaError(KafkaError.TOPIC_ALREADY_EXISTS)), NewTopic)
    with pytest.raises(TopicExistsError, match="'t' already exists"):
        exists.create_topic("t", 3, 1, {})
    unknown = AdminTopics(_FakeAdmin(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)), NewTopic)
    with pytest.raises(TopicNotFoundError, match="'t' does not exist"):
        unknown.delete_topic("t")
    broken = AdminTopics(_FakeAdmin(KafkaError(KafkaError.POLICY_VIOLATION)), NewTopic)
    with pytest.raises(LogError, match=r"creating topic 't'.*POLICY_VIOLATION"):
        broken.create_topic("t", 3, 1, {})
    ok = _FakeAdmin(None)
    AdminTopics(ok, NewTopic).create_topic("t", 3, 2, {"cleanup.policy": "compact"})
    (spec,) = ok.created
    assert (spec.num_partitions, spec.replication_factor) == (3, 2)  # type: ignore[attr-defined]
