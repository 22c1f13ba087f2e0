"""Appending rows: dense offsets assigned by the topic's one writer, batched PutRecords.

A process becomes a topic's writer on its first append (:meth:`RowWriter._lease`): it
takes a new epoch in the bookkeeping table, puts a fence record (kind ``F``) into every
shard, and reads each shard from its last index entry up to that fence. The rows found
past the acknowledged end that continue its offsets without a gap were written by a
writer that died before acknowledging them; they are acknowledged now. Anything after a
gap is left behind the fence, where readers ignore it.

An append then routes its rows like the other backends, stamps them with consecutive
offsets per shard, and sends them in PutRecords calls of at most 500 records and 5 MiB.
A record that comes back with an ``ErrorCode`` (``ProvisionedThroughputExceededException``)
is sent again, alone with the other failures, after a growing pause; a call refused as a
whole is sent again as a whole (readers drop the duplicates by offset). Calls go one after
another, so a shard never holds a record of a later call before one of an earlier call.
Last, the new end offsets (and an index entry every 1,000 offsets) are written in one
DynamoDB transaction on condition that the epoch is still this writer's: that is the
acknowledgement. Readers stop at the acknowledged end, so they never see a row whose
append failed, unless a later writer acknowledges it on takeover (at least once, as with
an ambiguous Kafka produce).
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from fluvial.errors import LogError
from fluvial.log.base import AppendResult
from fluvial.log.kafka.codec import check_json_schema, encode_rows
from fluvial.log.kinesis.aws import THROTTLED, AwsClients, error_code, translate
from fluvial.log.kinesis.catalog import Block, Catalog, Fenced, TopicMeta
from fluvial.log.kinesis.records import KEY_LENGTH, fence_key, row_keys
from fluvial.log.kinesis.shards import ShardCursor
from fluvial.log.partitioner import partition_for
from fluvial.log.routing import conform, prepare_append, split

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_RECORDS", "MAX_RECORD_BYTES", "RowWriter"]

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024  # data and partition key together
BLOCK_RECORDS = 1_000  # offsets between index entries
MAX_TAKEOVERS = 5  # takeovers by other writers one append lives through


class _TakenOver(Exception):
    """Another writer took over before an append was acknowledged."""

    def __init__(self, epoch: int, plan: list[tuple[int, pa.Table, int]]) -> None:
        super().__init__(epoch)
        self.epoch = epoch
        #: ``(partition, rows, first offset)`` as they were put
        self.plan = plan


@dataclass
class _Lease:
    """What this process knows as a topic's writer."""

    generation: str
    epoch: int
    next: list[int]
    last_ms: list[int]
    bytes: list[int]
    block_at: list[int]  # offset of each partition's last index entry
    round_robin: itertools.count[int] = field(default_factory=itertools.count)


def batches(sizes: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive records, each at most 500 records and 5 MiB.

    >>> batches(np.array([3 * 1024 * 1024, 3 * 1024 * 1024, 10]))
    [(0, 1), (1, 3)]
    >>> [stop - start for start, stop in batches(np.ones(1200, dtype=np.int64))]
    [500, 500, 200]
    """
    ends = np.cumsum(sizes, dtype=np.int64)
    out = []
    start, n = 0, len(sizes)
    while start < n:
        before = int(ends[start - 1]) if start else 0
        stop = int(np.searchsorted(ends, before + MAX_BATCH_BYTES, side="right"))
        stop = max(start + 1, min(stop, start + MAX_BATCH_RECORDS))
        out.append((start, stop))
        start = stop
    return out


class RowWriter:
    """Appends Arrow rows to Kinesis topics; thread-safe within a process."""

    def __init__(self, clients: AwsClients, catalog: Catalog, *, max_attempts: int = 20) -> None:
        self._aws = clients
        self._catalog = catalog
        self._lock = threading.Lock()
        self._leases: dict[str, _Lease] = {}
        self.max_attempts = max_attempts
        #: PutRecords calls made (for tests and benchmarks)
        self.calls = 0

    def forget(self, topic: str) -> None:
        """Give up the lease of a topic that was deleted or recreated."""
        self._leases.pop(topic, None)

    # -- the lease ------------------------------------------------------------------------

    def _lease(self, meta: TopicMeta) -> _Lease:
        lease = self._leases.get(meta.name)
        if lease is not None and lease.generation == meta.generation:
            return lease
        epoch = self._catalog.take_lease(meta)
        meta = self._catalog.topic(meta.name) or meta  # the ends as of the takeover
        n = meta.partitions
        fences = [
            {"Data": b"{}", "PartitionKey": fence_key(epoch), "ExplicitHashKey": meta.hash_keys[p]}
            for p in range(n)
        ]
        sequences = self._put_all(meta, fences)
        ends: dict[int, tuple[int, int, int]] = {}
        blocks: dict[int, Block] = {}
        nexts, stamps, sizes, block_at = [], [], [], []
        for p in range(n):
            start = self._catalog.block_at(meta, p, meta.ends[p])
            cursor = ShardCursor(self._aws, meta, p, start)
            cursor.until_epoch(epoch)
            rows = [r for r in cursor.buffer if r[0] >= meta.ends[p]]
            end = cursor.scan.next_offset
            last_ms = max([meta.last_ms[p], *(r[1] for r in rows)])
            size = meta.bytes[p] + sum(len(r[2]) for r in rows)
            ends[p] = (end, last_ms, size)
            # readers that start at this entry skip everything the fence left behind
            blocks[p] = Block(end, sequences[p], epoch, last_ms)
            nexts.append(end)
            stamps.append(last_ms)
            sizes.append(size)
            block_at.append(end)
        self._catalog.acknowledge(meta, epoch, ends, blocks)
        lease = _Lease(meta.generation, epoch, nexts, stamps, sizes, block_at)
        self._leases[meta.name] = lease
        return lease

    # -- appending ------------------------------------------------------------------------

    def append(
        self,
        meta: TopicMeta,
        data: pa.Table | pa.RecordBatch,
        key: str | pa.Array | pa.ChunkedArray | None,
        partition: int | None,
    ) -> AppendResult:
        """See :meth:`fluvial.log.base.EventLog.append`."""
        n = meta.partitions
        table, keys = prepare_append(
            data, topic=meta.name, partitions=n, key=key, partition=partition
        )
        with self._lock:
            schema = meta.schema
            if schema is None:
                check_json_schema(table.schema, meta.name)
                schema = self._catalog.set_schema(meta, table.schema)
            table = conform(table, schema, meta.name)
            if table.num_rows == 0:
                return AppendResult(())
            try:
                lease = self._lease(meta)
                if partition is not None:
                    parts = np.full(table.num_rows, partition, dtype=np.int32)
                elif keys is not None:
                    parts = partition_for(keys, n)
                else:
                    parts = np.full(table.num_rows, next(lease.round_robin) % n, dtype=np.int32)
                return self._append_all(meta, lease, list(split(table, parts, n)))
            except BaseException:
                # records may be in the stream unacknowledged: a new epoch fences them off
                self.forget(meta.name)
                raise

    def _append_all(
        self, meta: TopicMeta, lease: _Lease, pieces: list[tuple[int, pa.Table]]
    ) -> AppendResult:
        """Append *pieces* ``(partition, rows)``, finishing the job if another writer takes over.

        After a takeover, the rows of each partition that the new writer took in (a prefix,
        since its fence may have landed among them) count as appended; the rest are
        appended again under a new lease of this process. So an append that returns has
        every row visible exactly once, whoever else writes to the topic.
        """
        done: list[tuple[int, int, int]] = []
        for _ in range(MAX_TAKEOVERS):
            try:
                return AppendResult((*done, *self._append(meta, lease, pieces)))
            except _TakenOver as taken:
                self.forget(meta.name)
                current = self._catalog.topic(meta.name)
                if current is None or current.generation != meta.generation:
                    raise Fenced(
                        f"topic '{meta.name}' was deleted or recreated during the append"
                    ) from None
                meta = current
                lease = self._lease(meta)
                pieces = []
                for p, rows, first in taken.plan:
                    kept = self._taken_in(meta, p, first, rows.num_rows, taken.epoch, lease.next[p])
                    if kept:
                        done.append((p, first, kept))
                    if kept < rows.num_rows:
                        pieces.append((p, rows.slice(kept)))
                if not pieces:
                    return AppendResult(tuple(done))
        raise LogError(
            f"topic '{meta.name}': other writers took it over {MAX_TAKEOVERS} times during one "
            "append; rows acknowledged so far: "
            + (", ".join(f"partition {p} offsets {f}-{f + c - 1}" for p, f, c in done) or "none")
        )

    def _taken_in(
        self, meta: TopicMeta, p: int, first: int, count: int, epoch: int, end: int
    ) -> int:
        """How many of the rows written from *first* by *epoch* are visible now (a prefix)."""
        n = min(count, end - first)
        if n <= 0:
            return 0
        cursor = ShardCursor(self._aws, meta, p, self._catalog.block_at(meta, p, first))
        found = cursor.take(first, n)
        kept = 0
        while kept < n and found[kept][3] == epoch:
            kept += 1
        return kept

    def _append(
        self, meta: TopicMeta, lease: _Lease, pieces: list[tuple[int, pa.Table]]
    ) -> tuple[tuple[int, int, int], ...]:
        """Put *pieces* and acknowledge them; their ``(partition, first, count)``.

        Raises:
            _TakenOver: another writer took the topic over before the acknowledgement.
        """
        now_ms = max(int(time.time() * 1000), *(lease.last_ms[p] for p, _ in pieces))
        records: list[dict[str, Any]] = []
        ranges: list[tuple[int, int, int]] = []
        added: dict[int, int] = {}
        starts: list[int] = []  # index of each partition's first record in *records*
        for p, rows in pieces:
            values = encode_rows(rows)
            first = lease.next[p]
            keys = row_keys(lease.epoch, first, len(values), now_ms)
            target = meta.hash_keys[p]
            starts.append(len(records))
            # boto3 takes one dict per record: building them is inherent to its API
            records += [
                {"Data": v, "PartitionKey": k, "ExplicitHashKey": target}
                for v, k in zip(values, keys, strict=True)
            ]
            ranges.append((p, first, len(values)))
            added[p] = sum(map(len, values))
        sizes = np.fromiter((len(r["Data"]) for r in records), np.int64, len(records))
        sizes += KEY_LENGTH
        if (sizes > MAX_RECORD_BYTES).any():
            i = int(np.argmax(sizes > MAX_RECORD_BYTES))
            raise LogError(
                f"topic '{meta.name}': a row encodes to {int(sizes[i]):,} bytes; a Kinesis "
                f"record holds at most {MAX_RECORD_BYTES:,} (data and partition key)"
            )
        sequences = self._put_all(meta, records, sizes)
        ends: dict[int, tuple[int, int, int]] = {}
        blocks: dict[int, Block] = {}
        for (p, first, count), start in zip(ranges, starts, strict=True):
            ends[p] = (first + count, now_ms, lease.bytes[p] + added[p])
            if first >= lease.block_at[p] + BLOCK_RECORDS:
                # the smallest sequence number of the partition's first call: every record
                # of this append and later ones comes at or after it
                blocks[p] = Block(first, sequences[start], lease.epoch, now_ms)
        try:
            self._catalog.acknowledge(meta, lease.epoch, ends, blocks)
        except Fenced:
            plan = [
                (p, rows, first) for (p, rows), (_, first, _) in zip(pieces, ranges, strict=True)
            ]
            raise _TakenOver(lease.epoch, plan) from None
        for p, (end, last_ms, size) in ends.items():
            lease.next[p], lease.last_ms[p], lease.bytes[p] = end, last_ms, size
            if p in blocks:
                lease.block_at[p] = blocks[p].offset
        return tuple(ranges)

    def _put_all(
        self, meta: TopicMeta, records: list[dict[str, Any]], sizes: np.ndarray | None = None
    ) -> list[str]:
        """Put every record; for each, the smallest sequence number of its partition's call.

        Returns one sequence number per record: the minimum over the records of the same
        shard in the same call (retries included), which is where an index entry for the
        call's first offset must point.
        """
        if sizes is None:
            sizes = np.array([len(r["Data"]) + KEY_LENGTH for r in records], dtype=np.int64)
        out: list[str] = [""] * len(records)
        for start, stop in batches(sizes):
            seqs = self._put_batch(meta, records[start:stop])
            lowest: dict[str, int] = {}
            for r, s in zip(records[start:stop], seqs, strict=True):
                h = r["ExplicitHashKey"]
                lowest[h] = min(lowest.get(h, int(s)), int(s))
            for i in range(start, stop):
                out[i] = str(lowest[records[i]["ExplicitHashKey"]])
        return out

    def _put_batch(self, meta: TopicMeta, batch: list[dict[str, Any]]) -> list[str]:
        """PutRecords *batch*, retrying the records that fail; their sequence numbers."""
        kinesis = self._aws.kinesis
        exceptions = self._aws.botocore_exceptions
        sequences: list[str] = [""] * len(batch)
        pending = list(range(len(batch)))
        delay = 0.02
        codes: set[str] = set()
        for attempt in range(1, self.max_attempts + 1):
            self.calls += 1
            try:
                out = kinesis.put_records(
                    StreamName=meta.stream, Records=[batch[i] for i in pending]
                )
            except exceptions.ClientError as exc:
                if error_code(exc) not in THROTTLED or attempt == self.max_attempts:
                    raise translate(exc, f"appending to topic '{meta.name}'") from exc
                out = None  # refused as a whole: send it all again
            except exceptions.BotoCoreError as exc:
                raise translate(exc, f"appending to topic '{meta.name}'") from exc
            if out is not None:
                failed = []
                codes = set()
                for i, result in zip(pending, out["Records"], strict=True):
                    if "ErrorCode" in result:
                        failed.append(i)
                        codes.add(str(result["ErrorCode"]))
                    else:
                        sequences[i] = result["SequenceNumber"]
                if not failed:
                    return sequences
                pending = failed
            if attempt < self.max_attempts:
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise LogError(
            f"appending to topic '{meta.name}': {len(pending)} record(s) still failed after "
            f"{self.max_attempts} attempts ({', '.join(sorted(codes)) or 'throttled'})"
        )
