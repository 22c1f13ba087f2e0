"""What a Kinesis record carries, and turning a shard's records back into dense offsets.

A record's data is the row as one JSON object, written by the Kafka backend's codec
(:mod:`fluvial.log.kafka.codec`), so any Kinesis consumer can read it. Fluvial's own
fields travel in the record's partition key (free, since the writer routes each record to
its shard with ``ExplicitHashKey``), 44 fixed-width characters::

    R 000000003 0000000000000001234 001764930000123
    | epoch     offset              append time (ms)
    kind: R = a row, F = a fence (the first record of a new writer epoch)

:class:`ShardScan` reads a shard's records in sequence-number order and yields the rows at
the offsets ``next, next + 1, …`` exactly once: a record whose offset was already yielded
is a duplicate (a PutRecords call retried after an ambiguous failure) and is skipped; one
ahead of ``next`` is held back until the gap is filled (a throttled record retried after
later ones of its batch succeeded); once a record of a newer epoch is seen, records of
older epochs are ignored (a writer that crashed, or was fenced, left them unacknowledged).

>>> scan = ShardScan(next_offset=0, epoch=1)
>>> keys = [row_key(1, o, 5) for o in (0, 2, 1, 1)] + [fence_key(2), row_key(1, 3, 6)]
>>> [o for o, _, _, _ in scan.feed(keys, [b"a", b"c", b"b", b"b", b"", b"x"])]
[0, 1, 2]
>>> scan.next_offset, scan.epoch
(3, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["KEY_LENGTH", "Row", "ShardScan", "fence_key", "row_key", "row_keys"]

KEY_LENGTH = 44

#: a row found in a shard: ``(offset, append time in ms, JSON data, writer epoch)``
Row: TypeAlias = tuple[int, int, bytes, int]


def row_key(epoch: int, offset: int, ts_ms: int) -> str:
    """The partition key of the row at *offset*, written by *epoch* at *ts_ms*."""
    return f"R{epoch:09d}{offset:019d}{ts_ms:015d}"


def row_keys(epoch: int, first: int, count: int, ts_ms: int) -> list[str]:
    """:func:`row_key` of ``count`` consecutive offsets from *first* (vectorized)."""
    offsets = pa.array(np.arange(first, first + count, dtype=np.int64)).cast(pa.string())
    padded = pc.utf8_lpad(offsets, 19, "0")
    keys = pc.binary_join_element_wise(f"R{epoch:09d}", padded, f"{ts_ms:015d}", "")
    return keys.to_pylist()


def fence_key(epoch: int) -> str:
    """The partition key of the fence record that opens writer epoch *epoch*."""
    return f"F{epoch:09d}{0:019d}{0:015d}"


def parse_keys(keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(is_row, epoch, offset, ts_ms)`` arrays of partition keys (vectorized)."""
    arr = pa.array(keys, pa.string())
    if len(arr) and pc.any(pc.not_equal(pc.utf8_length(arr), KEY_LENGTH)).as_py():
        bad = next(k for k in keys if len(k) != KEY_LENGTH)
        from fluvial.errors import CorruptLogError

        raise CorruptLogError(
            f"a record's partition key is not Fluvial's ({KEY_LENGTH} characters): {bad[:60]!r}"
        )

    def part(start: int, stop: int) -> np.ndarray:
        col = pc.utf8_slice_codeunits(arr, start, stop).cast(pa.int64())
        return col.to_numpy(zero_copy_only=False)

    is_row = pc.equal(pc.utf8_slice_codeunits(arr, 0, 1), "R").to_numpy(zero_copy_only=False)
    return is_row, part(1, 10), part(10, 29), part(29, 44)


class ShardScan:
    """Turns a shard's records, in sequence order, into rows at dense offsets.

    *next_offset* is the offset expected first and *epoch* the highest writer epoch known
    to precede the records (from the index entry the read started at).
    """

    def __init__(self, next_offset: int, epoch: int) -> None:
        self.next_offset = next_offset
        self.epoch = epoch
        self._ahead: dict[int, Row] = {}

    @property
    def held_back(self) -> int:
        """How many records wait for an earlier offset."""
        return len(self._ahead)

    def feed(self, keys: Sequence[str], data: Sequence[bytes]) -> list[Row]:
        """The rows that these records complete, in offset order."""
        if not keys:
            return []
        is_row, epochs, offsets, stamps = parse_keys(keys)
        n = len(keys)
        out: list[Row] = []
        i = 0
        while i < n:
            if (
                not self._ahead
                and is_row[i]
                and epochs[i] == self.epoch
                and offsets[i] == self.next_offset
            ):
                # the common case, vectorized: a run of the current writer's next rows
                expected = np.arange(self.next_offset, self.next_offset + n - i, dtype=np.int64)
                ok = is_row[i:] & (epochs[i:] == self.epoch) & (offsets[i:] == expected)
                run = n - i if ok.all() else int(np.argmin(ok))
                out += zip(
                    offsets[i : i + run].tolist(),
                    stamps[i : i + run].tolist(),
                    data[i : i + run],
                    [self.epoch] * run,
                    strict=True,
                )
                self.next_offset += run
                i += run
                continue
            # a fence, a retry, a duplicate or an older writer's leftovers: one by one
            epoch = int(epochs[i])
            if epoch > self.epoch:
                self.epoch = epoch
                self._ahead.clear()  # held back by an older writer: never acknowledged
            if epoch == self.epoch and is_row[i]:
                offset = int(offsets[i])
                if offset >= self.next_offset and offset not in self._ahead:  # else a duplicate
                    self._ahead[offset] = (offset, int(stamps[i]), data[i], epoch)
                    while self.next_offset in self._ahead:
                        out.append(self._ahead.pop(self.next_offset))
                        self.next_offset += 1
            i += 1
        return out
