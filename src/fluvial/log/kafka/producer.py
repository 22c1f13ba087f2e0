"""Appending rows: route, encode and produce them, then wait for every delivery report.

Rows are routed with Fluvial's own :func:`~fluvial.log.partitioner.partition_for` and
produced with an explicit ``partition=``, so a key lands in the same partition as in the
embedded log; the row's key (when given) is the message key. The producer is idempotent
(``enable.idempotence``, ``acks=all``); :meth:`RowProducer.append` holds a lock, waits for
every delivery report and raises if any failed, so the offsets of one append are contiguous
per partition (unless another process writes to the same partition at the same moment).
Each message's timestamp is the append time, so ``_timestamp`` means the same as in the
embedded log.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from fluvial.errors import LogError
from fluvial.log.base import AppendResult
from fluvial.log.kafka.admin import translate
from fluvial.log.kafka.cluster import TIMEOUT, Cluster
from fluvial.log.kafka.codec import check_json_schema, encode_rows
from fluvial.log.partitioner import partition_for
from fluvial.log.routing import conform, prepare_append, split

__all__ = ["RowProducer", "producer_settings"]


def producer_settings(base: Mapping[str, Any]) -> dict[str, Any]:
    """The producer's configuration: idempotent, acknowledged by all in-sync replicas."""
    return {
        **base,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
    }


def _key_bytes(keys: pa.Array | pa.ChunkedArray) -> list[bytes | None]:
    """Each row's message key as bytes (``None`` for a null key), as the partitioner sees it."""
    ty = keys.type
    if not (pa.types.is_string(ty) or pa.types.is_large_string(ty) or pa.types.is_binary(ty)):
        keys = keys.cast(pa.string())
    # produce() takes one message at a time, so keys are needed as Python objects anyway
    return keys.cast(pa.binary()).to_pylist()


class RowProducer:
    """Appends Arrow rows to the topics of *cluster* through its producer; thread-safe."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._lock = threading.Lock()
        self._round_robin: dict[str, itertools.count[int]] = {}

    def forget(self, topic: str) -> None:
        """Restart the round-robin of a topic that was created or deleted."""
        self._round_robin.pop(topic, None)

    def append(
        self,
        topic: str,
        data: pa.Table | pa.RecordBatch,
        key: str | pa.Array | pa.ChunkedArray | None,
        partition: int | None,
    ) -> AppendResult:
        """See :meth:`fluvial.log.base.EventLog.append`."""
        cluster = self._cluster
        with self._lock:
            n = cluster.partition_count(topic)
            table, keys = prepare_append(
                data, topic=topic, partitions=n, key=key, partition=partition
            )
            schema = cluster.schema(topic)
            if schema is None:
                check_json_schema(table.schema, topic)
                schema = table.schema
                cluster.set_schema(topic, schema)
            table = conform(table, schema, topic)
            if table.num_rows == 0:
                return AppendResult(())
            if partition is not None:
                parts = np.full(table.num_rows, partition, dtype=np.int32)
            elif keys is not None:
                parts = partition_for(keys, n)
            else:
                rr = self._round_robin.setdefault(topic, itertools.count())
                parts = np.full(table.num_rows, next(rr) % n, dtype=np.int32)
            key_bytes = _key_bytes(keys) if keys is not None else None
            return self._produce(topic, table, parts, n, key_bytes)

    def _produce(
        self,
        topic: str,
        table: pa.Table,
        parts: np.ndarray,
        n: int,
        key_bytes: list[bytes | None] | None,
    ) -> AppendResult:
        """Produce *table*'s rows to *parts* and wait until every one is acknowledged."""
        producer = self._cluster.producer
        reports: list[tuple[int, int]] = []
        failures: list[str] = []

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                failures.append(f"partition {msg.partition()}: {err.str()}")
            else:
                reports.append((msg.partition(), msg.offset()))

        now_ms = int(time.time() * 1000)
        # the row numbers travel with the rows through the split, to find each row's key
        numbered = table.append_column("_row", pa.array(np.arange(table.num_rows)))
        for p, rows in split(numbered, parts, n):
            values = encode_rows(rows.drop_columns(["_row"]))
            row_ids = rows.column("_row").to_pylist() if key_bytes is not None else None
            # one produce() call per message is inherent to the Kafka client API
            for i, value in enumerate(values):
                msg_key = key_bytes[row_ids[i]] if key_bytes is not None and row_ids else None
                while True:
                    try:
                        producer.produce(
                            topic,
                            value=value,
                            key=msg_key,
                            partition=p,
                            timestamp=now_ms,
                            on_delivery=delivered,
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)  # local queue full: let deliveries drain
                    except self._cluster.ck.KafkaException as exc:
                        producer.flush(TIMEOUT)
                        raise translate(exc, f"appending to topic '{topic}'") from exc
        remaining = producer.flush(TIMEOUT)
        if failures or remaining:
            detail = "; ".join(failures[:3]) or f"{remaining} message(s) not delivered in time"
            raise LogError(
                f"appending to topic '{topic}': {len(failures) + remaining} of "
                f"{table.num_rows} message(s) failed: {detail}"
            )
        ranges: dict[int, list[int]] = {}
        for p, off in reports:
            ranges.setdefault(p, []).append(off)
        return AppendResult(tuple((p, min(offs), len(offs)) for p, offs in sorted(ranges.items())))
