"""Reading partitions: dense offsets through the index, rows decoded to Arrow in one batch.

A read at offset *o* finds the last index entry at or before *o*, opens a
:class:`~fluvial.log.kinesis.shards.ShardCursor` there and skips to *o*. The cursor is
kept, so a reader going on where it stopped (a consumer) makes only GetRecords calls. A
read never goes past the acknowledged end offset in the topic's item, so rows of an
append that has not returned yet are invisible.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

import numpy as np
import pyarrow as pa

from fluvial.errors import LogError, OffsetOutOfRangeError
from fluvial.log.base import with_system_columns
from fluvial.log.kafka.codec import decode_rows
from fluvial.log.kinesis.aws import AwsClients
from fluvial.log.kinesis.catalog import Catalog, TopicMeta
from fluvial.log.kinesis.records import Row
from fluvial.log.kinesis.shards import ShardCursor
from fluvial.log.routing import partition_error

__all__ = ["PartitionReader"]

_TS = pa.timestamp("ms", tz="UTC")


class PartitionReader:
    """Reads any partition of the topics in *catalog*; thread-safe.

    *topic_meta* returns a topic's current item or raises TopicNotFoundError.
    """

    def __init__(
        self, clients: AwsClients, catalog: Catalog, topic_meta: Callable[[str], TopicMeta]
    ) -> None:
        self._aws = clients
        self._catalog = catalog
        self._meta = topic_meta
        self._lock = threading.Lock()
        self._cursors: dict[tuple[str, int], ShardCursor] = {}

    def forget(self, topic: str) -> None:
        """Drop the cursors of a topic that was deleted or recreated."""
        self._cursors = {k: c for k, c in self._cursors.items() if k[0] != topic}

    def _checked(self, topic: str, partition: int) -> TopicMeta:
        meta = self._meta(topic)
        if not (isinstance(partition, int) and 0 <= partition < meta.partitions):
            raise partition_error(topic, meta.partitions, partition)
        return meta

    def _cursor(self, meta: TopicMeta, partition: int, offset: int) -> ShardCursor:
        cursor = self._cursors.get((meta.name, partition))
        if (
            cursor is None
            or cursor.meta.generation != meta.generation
            or not cursor.position <= offset < cursor.position + 10_000
        ):
            block = self._catalog.block_at(meta, partition, offset)
            cursor = ShardCursor(self._aws, meta, partition, block)
            self._cursors[meta.name, partition] = cursor
        return cursor

    def read(self, topic: str, partition: int, offset: int, max_records: int) -> pa.Table:
        """See :meth:`fluvial.log.base.EventLog.read`."""
        if max_records < 0:
            raise LogError(f"max_records must be at least 0, found {max_records}")
        with self._lock:
            meta = self._checked(topic, partition)
            schema = meta.schema if meta.schema is not None else pa.schema([])
            out_schema = with_system_columns(schema)
            end = meta.ends[partition]
            if not (isinstance(offset, int) and 0 <= offset <= end):
                raise OffsetOutOfRangeError(
                    f"topic '{topic}' partition {partition}: offset {offset} is outside the "
                    f"retained range [0, {end}]"
                )
            count = min(max_records, end - offset)
            if count <= 0:
                return out_schema.empty_table()
            rows = self._cursor(meta, partition, offset).take(offset, count)
        return _decode(rows, schema, out_schema, partition)

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        """See :meth:`fluvial.log.base.EventLog.offset_for_time`."""
        with self._lock:
            meta = self._checked(topic, partition)
            end = meta.ends[partition]
            if end == 0 or meta.last_ms[partition] < timestamp_ms:
                return end
            block = self._catalog.block_before_time(meta, partition, timestamp_ms)
            cursor = ShardCursor(self._aws, meta, partition, block)
            position = cursor.position
            while position < end:
                rows = cursor.take(position, min(10_000, end - position))
                stamps = np.fromiter((row[1] for row in rows), np.int64, len(rows))
                hits = np.flatnonzero(stamps >= timestamp_ms)
                if hits.size:
                    return rows[int(hits[0])][0]
                position += len(rows)
            return end

    def wait_for_data(self, topic: str, positions: Mapping[int, int], timeout: float) -> bool:
        """See :meth:`fluvial.log.base.EventLog.wait_for_data` (polls the topic's item)."""
        deadline = time.monotonic() + timeout
        while True:
            ends = self._meta(topic).ends
            if any(ends[p] > off for p, off in positions.items() if 0 <= p < len(ends)):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


def _decode(rows: list[Row], schema: pa.Schema, out_schema: pa.Schema, partition: int) -> pa.Table:
    """The rows with the system columns, as a table of *out_schema*."""
    offsets, stamps, values, _ = zip(*rows, strict=True)
    table = decode_rows(values, schema, max_value_bytes=max(map(len, values)))
    n = len(rows)
    columns = [
        *table.columns,
        pa.array(np.full(n, partition, dtype=np.int32)),
        pa.array(offsets, pa.int64()),
        pa.array(stamps, pa.int64()).cast(_TS),
    ]
    return pa.Table.from_arrays(columns, schema=out_schema)
