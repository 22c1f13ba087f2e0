"""librdkafka's mock cluster: a real Kafka-protocol broker on loopback, for the tests.

The mock answers Produce, Fetch, ListOffsets, Metadata, FindCoordinator, InitProducerId,
OffsetCommit/OffsetFetch and the group protocol, but not CreateTopics, DeleteTopics or
ListGroups, and it answers "no offset" to every ListOffsets-by-timestamp. Topics are
therefore created and deleted through librdkafka's C mock API
(``rd_kafka_mock_topic_create``/``_delete``), called with ctypes on the very librdkafka
that confluent-kafka loaded. :class:`MockKafkaCluster` keeps the handle that owns the
cluster alive and exposes ``bootstrap_servers`` for ordinary clients, and ``topic_admin``
(a :class:`fluvial.log.kafka.TopicAdmin`) for :class:`~fluvial.log.kafka.KafkaLog`.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import glob
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluvial.errors import LogError, TopicExistsError, TopicNotFoundError

if TYPE_CHECKING:
    from fluvial.log.kafka import KafkaLog

__all__ = ["MockKafkaCluster", "MockTopicAdmin", "make_kafka_log", "shared_cluster"]

_ERR_TOPIC_ALREADY_EXISTS = 36
_ERR_UNKNOWN_TOPIC_OR_PART = 3
_PRODUCER = 0


def _librdkafka() -> ctypes.CDLL:
    """The librdkafka that confluent_kafka uses (the wheel's bundled copy, else the system's)."""
    import confluent_kafka

    maps = Path("/proc/self/maps")
    if maps.exists():  # the copy already mapped into this process: same library, same state
        for line in maps.read_text().splitlines():
            path = line.split()[-1]
            if "librdkafka" in os.path.basename(path):
                return ctypes.CDLL(path)
    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    found = sorted(glob.glob(str(libs / "librdkafka*.so*"))) or [
        ctypes.util.find_library("rdkafka")
    ]
    if not found or found[0] is None:
        raise RuntimeError("librdkafka not found next to confluent_kafka nor on the system")
    return ctypes.CDLL(found[0])


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    sigs: dict[str, tuple[Any, list[Any]]] = {
        "rd_kafka_conf_new": (vp, []),
        "rd_kafka_conf_set": (ci, [vp, cp, cp, cp, ctypes.c_size_t]),
        "rd_kafka_new": (vp, [ci, vp, cp, ctypes.c_size_t]),
        "rd_kafka_destroy": (None, [vp]),
        "rd_kafka_mock_cluster_new": (vp, [vp, ci]),
        "rd_kafka_mock_cluster_destroy": (None, [vp]),
        "rd_kafka_mock_cluster_bootstraps": (cp, [vp]),
        "rd_kafka_mock_topic_create": (ci, [vp, cp, ci, ci]),
        "rd_kafka_mock_topic_delete": (ci, [vp, cp]),
        "rd_kafka_err2str": (cp, [ci]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


class MockTopicAdmin:
    """Creates and deletes topics in a mock cluster (a ``TopicAdmin``)."""

    def __init__(self, cluster: MockKafkaCluster) -> None:
        self._cluster = cluster

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, config: Mapping[str, str]
    ) -> None:
        # the mock has no topic configs (cleanup.policy=compact is a no-op there)
        err = self._cluster.create_topic(name, partitions, replication_factor)
        if err == _ERR_TOPIC_ALREADY_EXISTS:
            raise TopicExistsError(f"topic '{name}' already exists")
        if err:
            raise LogError(
                f"creating topic '{name}' in the mock cluster: {self._cluster.error(err)}"
            )

    def delete_topic(self, name: str) -> None:
        err = self._cluster.delete_topic(name)
        if err == _ERR_UNKNOWN_TOPIC_OR_PART:
            raise TopicNotFoundError(f"topic '{name}' does not exist")
        if err:
            raise LogError(
                f"deleting topic '{name}' in the mock cluster: {self._cluster.error(err)}"
            )


class MockKafkaCluster:
    """A mock Kafka cluster of *brokers* brokers, alive inside the ``with`` block.

    >>> with MockKafkaCluster() as cluster:
    ...     cluster.bootstrap_servers.count(",")
    2
    """

    def __init__(self, brokers: int = 3) -> None:
        self.brokers = brokers
        self._lib: ctypes.CDLL | None = None
        self._rk: int | None = None
        self._mcluster: int | None = None
        self._lock = threading.Lock()
        self.bootstrap_servers = ""
        self.topic_admin = MockTopicAdmin(self)

    def __enter__(self) -> MockKafkaCluster:
        lib = self._lib = _bind(_librdkafka())
        errstr = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        lib.rd_kafka_conf_set(conf, b"log_level", b"3", errstr, len(errstr))
        rk = lib.rd_kafka_new(_PRODUCER, conf, errstr, len(errstr))
        if not rk:
            raise RuntimeError(f"rd_kafka_new failed: {errstr.value.decode()}")
        self._rk = rk
        mcluster = lib.rd_kafka_mock_cluster_new(rk, self.brokers)
        if not mcluster:
            lib.rd_kafka_destroy(rk)
            raise RuntimeError("rd_kafka_mock_cluster_new failed")
        self._mcluster = mcluster
        self.bootstrap_servers = lib.rd_kafka_mock_cluster_bootstraps(mcluster).decode()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lib is not None and self._mcluster is not None:
            self._lib.rd_kafka_mock_cluster_destroy(self._mcluster)
            self._mcluster = None
        if self._lib is not None and self._rk is not None:
            self._lib.rd_kafka_destroy(self._rk)
            self._rk = None

    def _require(self) -> tuple[ctypes.CDLL, int]:
        if self._lib is None or self._mcluster is None:
            raise RuntimeError("the mock cluster is not running (use it in a with block)")
        return self._lib, self._mcluster

    def create_topic(self, name: str, partitions: int, replication_factor: int = 1) -> int:
        """Create a topic; returns librdkafka's error code (0 on success)."""
        lib, mcluster = self._require()
        with self._lock:
            return int(
                lib.rd_kafka_mock_topic_create(
                    mcluster, name.encode(), partitions, min(replication_factor, self.brokers)
                )
            )

    def delete_topic(self, name: str) -> int:
        """Delete a topic; returns librdkafka's error code (0 on success)."""
        lib, mcluster = self._require()
        with self._lock:
            return int(lib.rd_kafka_mock_topic_delete(mcluster, name.encode()))

    def error(self, code: int) -> str:
        lib, _ = self._require()
        return lib.rd_kafka_err2str(code).decode()


_shared: MockKafkaCluster | None = None
_shared_lock = threading.Lock()


def shared_cluster() -> MockKafkaCluster:
    """One mock cluster for the whole test process, started on first use, stopped at exit.

    Tests share it the way they would share a real cluster: each uses its own topic names.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            cluster = MockKafkaCluster().__enter__()
            atexit.register(cluster.__exit__, None, None, None)
            _shared = cluster
        return _shared


def make_kafka_log(tmp_path: Path) -> KafkaLog:
    """A :class:`KafkaLog` on the shared mock cluster (a factory for ``tests/log/conftest.py``)."""
    from fluvial.log.kafka import KafkaLog

    cluster = shared_cluster()
    return KafkaLog(cluster.bootstrap_servers, partitions=4, topic_admin=cluster.topic_admin)
