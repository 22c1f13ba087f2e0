"""Reading one shard with GetShardIterator/GetRecords (shared throughput), from an index entry.

A :class:`ShardCursor` starts at an index entry's sequence number (or the shard's trim
horizon) and feeds each GetRecords page through a
:class:`~fluvial.log.kinesis.records.ShardScan`, so what it returns are rows at dense
offsets. Throttled calls (5 GetRecords per second per shard on AWS) back off and retry.
"""

from __future__ import annotations

import time
from typing import Any

from fluvial.errors import LogError, OffsetOutOfRangeError
from fluvial.log.kinesis.aws import THROTTLED, AwsClients, error_code, translate
from fluvial.log.kinesis.catalog import Block, TopicMeta
from fluvial.log.kinesis.records import Row, ShardScan

__all__ = ["ShardCursor"]

#: records per GetRecords call (the API's maximum)
PAGE_RECORDS = 10_000


class ShardCursor:
    """Reads partition *partition* of *meta* from *block* (``None``: the trim horizon)."""

    def __init__(
        self, clients: AwsClients, meta: TopicMeta, partition: int, block: Block | None
    ) -> None:
        self._aws = clients
        self.meta = meta
        self.partition = partition
        self.scan = ShardScan(block.offset, block.epoch) if block else ShardScan(0, 0)
        where: dict[str, Any] = (
            {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": block.sequence}
            if block
            else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        out = self._call(
            "get_shard_iterator",
            StreamName=meta.stream,
            ShardId=meta.shards[partition],
            **where,
        )
        self._iterator: str | None = out["ShardIterator"]
        #: rows fetched but not yet taken
        self.buffer: list[Row] = []

    @property
    def position(self) -> int:
        """The offset of the next row :meth:`take` returns."""
        return self.buffer[0][0] if self.buffer else self.scan.next_offset

    def _call(self, method: str, **kwargs: Any) -> Any:
        delay = 0.02
        deadline = time.monotonic() + 60
        while True:
            try:
                return getattr(self._aws.kinesis, method)(**kwargs)
            except self._aws.botocore_exceptions.ClientError as exc:
                code = error_code(exc)
                if code in THROTTLED and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                context = f"reading topic '{self.meta.name}' partition {self.partition}"
                if code == "ExpiredIteratorException":
                    raise LogError(f"{context}: the shard iterator expired") from exc
                raise translate(exc, context) from exc
            except self._aws.botocore_exceptions.BotoCoreError as exc:
                raise translate(exc, f"reading topic '{self.meta.name}'") from exc

    def fetch(self) -> bool:
        """One GetRecords call; whether the shard may have more right now."""
        if self._iterator is None:  # a closed shard (resharded): nothing more, ever
            return False
        out = self._call("get_records", ShardIterator=self._iterator, Limit=PAGE_RECORDS)
        self._iterator = out.get("NextShardIterator")
        records = out.get("Records", [])
        if records:
            # pulling each record's fields out of the response is inherent to the client
            # API; the rows themselves are decoded to Arrow in one batch by the reader
            self.buffer += self.scan.feed(
                [r["PartitionKey"] for r in records],
                [r["Data"] for r in records],
            )
        return bool(records) or int(out.get("MillisBehindLatest", 0)) > 0

    def take(self, offset: int, count: int, *, timeout: float = 30.0) -> list[Row]:
        """Exactly *count* rows from *offset* on, which must be acknowledged (below the end)."""
        if offset < self.position:
            raise LogError(f"cursor at {self.position} cannot go back to {offset}")
        deadline = time.monotonic() + timeout
        while True:
            while self.buffer and self.buffer[0][0] < offset:
                skip = min(len(self.buffer), offset - self.buffer[0][0])
                del self.buffer[:skip]
            if len(self.buffer) >= count:
                taken, self.buffer = self.buffer[:count], self.buffer[count:]
                return taken
            if self.fetch():
                continue
            if time.monotonic() <= deadline:
                time.sleep(0.01)
            else:
                context = f"topic '{self.meta.name}' partition {self.partition}"
                if self.scan.held_back:
                    raise OffsetOutOfRangeError(
                        f"{context}: offset {self.scan.next_offset} is no longer in the "
                        "stream (past its retention period?)"
                    )
                raise LogError(
                    f"{context}: found {len(self.buffer)} of {count} rows from offset "
                    f"{offset} in {timeout:.0f} s"
                )

    def until_epoch(self, epoch: int, *, timeout: float = 60.0) -> None:
        """Read on until the fence of writer *epoch* (everything before it is in the buffer)."""
        deadline = time.monotonic() + timeout
        while self.scan.epoch < epoch:
            more = self.fetch()
            if not more and self.scan.epoch < epoch:
                if time.monotonic() > deadline:
                    raise LogError(
                        f"topic '{self.meta.name}' partition {self.partition}: the fence of "
                        f"writer epoch {epoch} did not appear in {timeout:.0f} s"
                    )
                time.sleep(0.02)
