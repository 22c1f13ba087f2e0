"""Reading partitions: one assigned consumer, watermarks, and finding an offset by time.

The reader is a consumer with no subscription: each read assigns the partition at the
offset asked for, unless the consumer's fetch already stands there (a sequential reader
then keeps the prefetched messages). Messages are decoded to Arrow in one batch
(:func:`~fluvial.log.kafka.codec.decode_rows`).

Two gaps of librdkafka's mock cluster (the test suite's broker) are met here:

* ListOffsets by timestamp always answers "no such offset": when a broker says so although
  the partition's last record is recent enough, :meth:`PartitionReader.offset_for_time`
  scans the partition instead (correct everywhere, only slower);
* a consumer learns of a topic it has not seen only on its next metadata refresh (about
  a second), so the reader asks for the topic's metadata before it first assigns it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from fluvial.errors import LogError, OffsetOutOfRangeError
from fluvial.log.base import with_system_columns
from fluvial.log.kafka.admin import kafka_error, translate
from fluvial.log.kafka.cluster import SCHEMAS_TOPIC, TIMEOUT, Cluster
from fluvial.log.kafka.codec import decode_rows
from fluvial.log.routing import partition_error

__all__ = ["PartitionReader"]

_TS = pa.timestamp("ms", tz="UTC")
_SCAN_BATCH = 10_000  # messages fetched per step of the offset-for-time scan


class PartitionReader:
    """Reads any partition of *cluster* through one consumer; thread-safe."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._consumer = cluster.consumer("fluvial-reader")
        self._lock = threading.Lock()
        self._at: tuple[str, int, int] | None = None  # where the consumer's fetch stands
        self._known: set[str] = set()  # topics the consumer has metadata for

    def forget(self, topic: str) -> None:
        """Drop what the reader knows of a topic that was created or deleted."""
        self._known.discard(topic)
        if self._at is not None and self._at[0] == topic:
            self._at = None

    def close(self) -> None:
        try:
            self._consumer.close()
        except Exception:
            pass  # closing is best effort: the process may be shutting down

    # -- EventLog's reading methods -------------------------------------------------------

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> pa.Table:
        """See :meth:`fluvial.log.base.EventLog.read`."""
        if max_records < 0:
            raise LogError(f"max_records must be at least 0, found {max_records}")
        with self._lock:
            low, high = self._watermarks(topic, partition)
            schema = self._cluster.schema(topic)
            out_schema = with_system_columns(schema if schema is not None else pa.schema([]))
            if not low <= offset <= high:
                raise OffsetOutOfRangeError(
                    f"topic '{topic}' partition {partition}: offset {offset} is outside the "
                    f"retained range [{low}, {high}]"
                )
            count = min(max_records, high - offset)
            if count <= 0:
                return out_schema.empty_table()
            if schema is None:
                raise LogError(
                    f"topic '{topic}' has records but no Fluvial schema in '{SCHEMAS_TOPIC}'"
                )
            msgs = self._fetch(topic, partition, offset, count)
        return _decode(msgs, schema, out_schema, partition)

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        """See :meth:`fluvial.log.base.EventLog.offset_for_time`."""
        with self._lock:
            low, high = self._watermarks(topic, partition)
            if high <= low:
                return high
            try:
                (found,) = self._consumer.offsets_for_times(
                    [self._cluster.tp(topic, partition, int(timestamp_ms))], timeout=TIMEOUT
                )
            except self._cluster.ck.KafkaException as exc:
                raise translate(exc, f"looking up a time in topic '{topic}'") from exc
            if found.offset >= 0:
                return max(int(found.offset), low)
            # "none at or after": check it against the last record, since some brokers
            # (librdkafka's mock cluster) answer that for every time
            last = self._fetch(topic, partition, high - 1, 1)[0]
            if last.timestamp()[1] < timestamp_ms:
                return high
            return self._scan_for_time(topic, partition, low, high, timestamp_ms)

    def wait_for_data(self, topic: str, positions: Mapping[int, int], timeout: float) -> bool:
        """See :meth:`fluvial.log.base.EventLog.wait_for_data` (polls the high watermarks)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                for p, off in positions.items():
                    if self._watermarks(topic, p)[1] > off:
                        return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))

    # -- helpers (called with the lock held) ----------------------------------------------

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """The partition's retained range ``(low, high)``, checking that it exists."""
        cluster = self._cluster
        if topic not in self._known:
            n = cluster.partition_count(topic)  # also fetches its metadata for the consumer
            self._consumer.list_topics(topic, timeout=TIMEOUT)
            self._known.add(topic)
            if not (isinstance(partition, int) and 0 <= partition < n):
                raise partition_error(topic, n, partition)
        try:
            low, high = self._consumer.get_watermark_offsets(
                cluster.tp(topic, partition), timeout=TIMEOUT, cached=False
            )
        except cluster.ck.KafkaException as exc:
            self._known.discard(topic)
            err = kafka_error(exc)
            if err is not None and err.name() in ("_UNKNOWN_PARTITION", "UNKNOWN_TOPIC_OR_PART"):
                if cluster.partitions_of(topic, refresh=True) is None:
                    raise cluster.not_found(topic) from exc
                raise partition_error(topic, cluster.partition_count(topic), partition) from exc
            raise translate(exc, f"reading topic '{topic}' partition {partition}") from exc
        return int(low), int(high)

    def _fetch(self, topic: str, partition: int, offset: int, count: int) -> list[Any]:
        """Exactly *count* messages from *offset* on (they must exist)."""
        if self._at != (topic, partition, offset):
            self._consumer.assign([self._cluster.tp(topic, partition, offset)])
        msgs: list[Any] = []
        deadline = time.monotonic() + TIMEOUT
        while len(msgs) < count:
            if time.monotonic() > deadline:
                self._at = None
                raise LogError(
                    f"reading topic '{topic}' partition {partition} from offset {offset}: "
                    f"got {len(msgs)} of {count} records in {TIMEOUT:.0f} s"
                )
            for msg in self._consumer.consume(count - len(msgs), timeout=0.05):
                if msg.error() is not None:
                    self._at = None
                    err = msg.error()
                    if err.name() == "OFFSET_OUT_OF_RANGE":
                        raise OffsetOutOfRangeError(
                            f"topic '{topic}' partition {partition}: offset {offset} is no "
                            f"longer retained ({err.str()})"
                        )
                    raise LogError(f"reading topic '{topic}' partition {partition}: {err.str()}")
                msgs.append(msg)
        self._at = (topic, partition, msgs[-1].offset() + 1)
        return msgs

    def _scan_for_time(self, topic: str, partition: int, low: int, high: int, ts: int) -> int:
        """The first offset in ``[low, high)`` stamped at or after *ts*, else *high*."""
        position = low
        while position < high:
            msgs = self._fetch(topic, partition, position, min(_SCAN_BATCH, high - position))
            stamps = np.fromiter((m.timestamp()[1] for m in msgs), dtype=np.int64, count=len(msgs))
            hits = np.flatnonzero(stamps >= ts)
            if hits.size:
                return int(msgs[int(hits[0])].offset())
            position = msgs[-1].offset() + 1
        return high


def _decode(msgs: list[Any], schema: pa.Schema, out_schema: pa.Schema, partition: int) -> pa.Table:
    """The messages' rows with the system columns, as a table of *out_schema*."""
    # one pass over the messages to pull their fields out is inherent to the client API;
    # the per-row work (JSON parsing, casts) is then done by Arrow on the whole batch
    values = [m.value() or b"{}" for m in msgs]
    offsets = [m.offset() for m in msgs]
    stamps = [m.timestamp()[1] for m in msgs]
    longest = max(map(len, values))
    rows = decode_rows(values, schema, max_value_bytes=longest)
    n = len(msgs)
    columns = [
        *rows.columns,
        pa.array(np.full(n, partition, dtype=np.int32)),
        pa.array(offsets, pa.int64()),
        pa.array(stamps, pa.int64()).cast(_TS),
    ]
    return pa.Table.from_arrays(columns, schema=out_schema)
