"""One partition: its segments, appends (with group commit), reads, recovery and retention.

A partition directory holds segment files named by base offset. Only the last segment
(the active one) is appended to; it rolls when it would grow past ``segment_bytes``.
Records are visible to readers as soon as their frame is written (before the fsync, like
Kafka's leader); ``append`` returns only once they are durable per the fsync policy.
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from fluvial.errors import CorruptLogError, LogError, OffsetOutOfRangeError
from fluvial.log.embedded.durability import FsyncPolicy, GroupCommit, fsync_dir
from fluvial.log.embedded.index import IndexedSegment
from fluvial.log.embedded.segment import Frame, FrameHeader, check_frames, segment_name

__all__ = ["Partition"]

_TIMESTAMP = pa.timestamp("ms", tz="UTC")


def _write_all(fd: int, parts: Sequence[bytes | pa.Buffer], position: int) -> None:
    """pwritev until every byte is written (a regular file may take a short write)."""
    views = [memoryview(p) for p in parts]  # pa.Buffer has the buffer protocol
    while views:
        written = os.pwritev(fd, views, position)
        position += written
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


class Partition:
    """A partition directory of segments; thread-safe appends and lock-free reads."""

    def __init__(
        self, directory: Path, number: int, *, fsync: FsyncPolicy, segment_bytes: int
    ) -> None:
        self.directory = directory
        self.number = number
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self.writable = False
        self._write_lock = threading.Lock()
        self._fd: int | None = None
        self._written = 0  # bytes written by this process: the group-commit mark
        self._last_ts = 0
        self._commit = GroupCommit(self._snapshot)
        self.segments: list[IndexedSegment] = self._load()

    # -- opening ------------------------------------------------------------------------

    @staticmethod
    def create(directory: Path, *, durable: bool) -> None:
        """Make an empty partition directory with its first (empty) segment."""
        directory.mkdir(parents=True)
        (directory / segment_name(0)).touch()
        if durable:
            fsync_dir(directory)

    def _load(self) -> list[IndexedSegment]:
        names = sorted(p for p in self.directory.glob("*.seg") if p.stem.isdigit())
        if not names:
            raise CorruptLogError(f"partition {self.directory} has no segment files")
        segments = [IndexedSegment(p, int(p.stem)) for p in names]
        # a segment is sealed once a later one has data; empty ones after it may be left by
        # a crash just after a roll (the writer's recovery drops them)
        sizes = [p.stat().st_size for p in names]
        last_with_data = max((i for i, size in enumerate(sizes) if size), default=0)
        for i, seg in enumerate(segments):
            seg.scan(sealed=i < last_with_data)
            if i + 1 < len(segments) and seg.end_offset != segments[i + 1].base_offset:
                raise CorruptLogError(
                    f"{seg.path}: ends at offset {seg.end_offset} but the next segment "
                    f"starts at {segments[i + 1].base_offset}"
                )
        return segments

    def open_for_write(self) -> None:
        """Recover the tail (truncating a torn or corrupt last frame) and open for appends.

        Call only while holding the topic's writer lock.
        """
        with self._write_lock:
            if self.writable:
                return
            durable = self.fsync is not FsyncPolicy.NEVER
            segments = self._load()
            # a crash just after a roll can leave an empty last segment: drop it, so a torn
            # tail of the segment before it can be truncated without leaving a gap
            while len(segments) > 1 and segments[-1].path.stat().st_size == 0:
                segments[-1].path.unlink()
                segments.pop()
            last = segments[-1]
            scan = check_frames(last.path, last.base_offset, repair=True)
            recovered = IndexedSegment(last.path, last.base_offset)
            for position, header in zip(scan.positions, scan.headers, strict=True):
                recovered.add(position, header)
            segments[-1] = recovered
            if durable:
                fsync_dir(self.directory)
            self.segments = segments
            self._fd = os.open(last.path, os.O_WRONLY)
            self._last_ts = recovered.last_timestamp or 0
            for seg in reversed(segments):
                if seg.last_timestamp is not None:
                    self._last_ts = seg.last_timestamp
                    break
            self.writable = True

    # -- state --------------------------------------------------------------------------

    @property
    def start_offset(self) -> int:
        return self.segments[0].base_offset

    @property
    def end_offset(self) -> int:
        return self.segments[-1].end_offset

    @property
    def bytes(self) -> int:
        return sum(seg.size for seg in self.segments)

    def refresh(self) -> bool:
        """Pick up what another process wrote or deleted; return whether the end moved.

        Costs a stat or two when nothing changed (used to follow the tail).
        """
        if self.writable:
            return False
        segments = self.segments
        while len(segments) > 1 and not segments[0].path.exists():  # retention elsewhere
            segments = segments[1:]
        before = segments[-1].end_offset
        segments[-1].scan(sealed=False)
        while True:  # the writer rolled: the next segment is named by our end offset
            successor = self.directory / segment_name(segments[-1].end_offset)
            if successor == segments[-1].path or not successor.exists():
                break
            segments[-1].scan(sealed=True)
            nxt = IndexedSegment(successor, segments[-1].end_offset)
            nxt.scan(sealed=False)
            segments = [*segments, nxt]
        self.segments = segments
        return segments[-1].end_offset > before

    # -- writing ------------------------------------------------------------------------

    def _snapshot(self) -> tuple[int, int]:
        with self._write_lock:
            if self._fd is None:
                raise LogError(f"partition {self.directory} is closed")
            return os.dup(self._fd), self._written

    def _roll(self) -> None:
        assert self._fd is not None
        durable = self.fsync is not FsyncPolicy.NEVER
        if durable:
            os.fsync(self._fd)
            self._commit.mark_synced(self._written)
        base = self.end_offset
        path = self.directory / segment_name(base)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        if durable:
            fsync_dir(self.directory)
        os.close(self._fd)
        self._fd = fd
        self.segments = [*self.segments, IndexedSegment(path, base)]

    def append(self, frames: Sequence[Frame]) -> tuple[int, int]:
        """Write *frames* contiguously; return ``(first_offset, count)`` once durable."""
        first, count, mark = self.write(frames)
        self.wait_durable(mark)
        return first, count

    def write(self, frames: Sequence[Frame]) -> tuple[int, int, int]:
        """Write *frames* contiguously (visible at once); return ``(first, count, mark)``.

        The append is acknowledged only after :meth:`wait_durable` of the mark, so a
        caller writing to several partitions writes them all first, then waits.
        """
        if not self.writable:
            raise LogError(f"partition {self.directory} is not open for writing")
        with self._write_lock:
            if self._fd is None:
                raise LogError(f"partition {self.directory} is closed")
            first = self.end_offset
            for frame in frames:
                active = self.segments[-1]
                if active.size and active.size + frame.nbytes > self.segment_bytes:
                    self._roll()
                    active = self.segments[-1]
                # never decreasing, so offset_for_time can bisect
                ts = max(int(time.time() * 1000), self._last_ts)
                base, position = active.end_offset, active.size
                try:
                    _write_all(self._fd, frame.parts(base_offset=base, timestamp_ms=ts), position)
                except OSError as exc:
                    try:
                        os.ftruncate(self._fd, position)
                    except OSError:
                        pass
                    raise LogError(f"append to {active.path} failed: {exc}") from exc
                header = FrameHeader(frame.body.size, frame.body_crc, base, ts, frame.count)
                active.add(position, header)
                self._last_ts = ts
                self._written += frame.nbytes
            mark = self._written
            if self.fsync is FsyncPolicy.ALWAYS and frames:
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    raise LogError(f"fsync of {active.path} failed: {exc}") from exc
                self._commit.mark_synced(mark)
        return first, self.end_offset - first, mark

    def wait_durable(self, mark: int) -> None:
        """Return once everything written up to *mark* is durable per the fsync policy."""
        if self.fsync is FsyncPolicy.BATCH:
            try:
                self._commit.wait(mark)
            except OSError as exc:
                raise LogError(f"fsync of {self.directory} failed: {exc}") from exc

    @property
    def fsyncs(self) -> int:
        return self._commit.fsyncs

    # -- reading ------------------------------------------------------------------------

    def read(self, offset: int, max_records: int, schema: pa.Schema) -> list[pa.RecordBatch]:
        """Batches of *schema* (the topic's columns plus the system columns) from *offset*."""
        end = self.end_offset
        if offset >= end and self.refresh():
            end = self.end_offset
        segments = self.segments
        start = segments[0].base_offset
        if offset < start or offset > end:
            raise OffsetOutOfRangeError(
                f"offset {offset} is out of range for partition {self.number}: "
                f"retained offsets are [{start}, {end})"
            )
        remaining = min(max_records, end - offset)
        out: list[pa.RecordBatch] = []
        si = bisect_right([s.base_offset for s in segments], offset) - 1
        while remaining > 0 and si < len(segments):
            seg = segments[si]
            fi = seg.frame_at(offset) if offset < seg.end_offset else seg.frames
            while remaining > 0 and fi < seg.frames:
                header = seg.headers[fi]
                local = offset - header.base_offset
                n = min(header.count - local, remaining)
                rows = seg.batch(fi).slice(local, n)
                out.append(self._with_system_columns(rows, offset, header.timestamp_ms, schema))
                offset += n
                remaining -= n
                fi += 1
            si += 1
        return out

    def _with_system_columns(
        self, rows: pa.RecordBatch, offset: int, timestamp_ms: int, schema: pa.Schema
    ) -> pa.RecordBatch:
        n = rows.num_rows
        system = [
            pa.array(np.full(n, self.number, dtype=np.int32)),
            pa.array(np.arange(offset, offset + n, dtype=np.int64)),
            pa.array(np.full(n, timestamp_ms, dtype=np.int64)).view(_TIMESTAMP),
        ]
        return pa.RecordBatch.from_arrays([*rows.columns, *system], schema=schema)

    def offset_for_time(self, timestamp_ms: int) -> int:
        """The first offset appended at or after *timestamp_ms*, else the end offset."""
        self.refresh()
        for seg in self.segments:
            i = seg.frame_for_time(timestamp_ms)
            if i < seg.frames:
                return seg.headers[i].base_offset
        return self.end_offset

    def timestamp_bounds(self) -> tuple[int | None, int | None]:
        first = next((s.headers[0].timestamp_ms for s in self.segments if s.headers), None)
        last = next((s.last_timestamp for s in reversed(self.segments) if s.headers), None)
        return first, last

    # -- housekeeping -------------------------------------------------------------------

    def apply_retention(self, *, older_than_ms: int | None, max_bytes: int) -> int:
        """Delete whole sealed segments that are too old or beyond the size limit.

        The active segment is never deleted. Returns the number of records removed.
        """
        with self._write_lock:
            segments = self.segments
            total = sum(s.size for s in segments)
            drop = 0
            while drop < len(segments) - 1:
                seg = segments[drop]
                last = seg.last_timestamp
                expired = older_than_ms is not None and (last is None or last < older_than_ms)
                oversized = max_bytes > 0 and total > max_bytes
                if not (expired or oversized):
                    break
                total -= seg.size
                drop += 1
            if not drop:
                return 0
            removed = segments[drop].base_offset - segments[0].base_offset
            self.segments = segments[drop:]
            for seg in segments[:drop]:
                seg.release()
                seg.path.unlink(missing_ok=True)
            if self.fsync is not FsyncPolicy.NEVER:
                fsync_dir(self.directory)
            return removed

    def verify(self) -> list[str]:
        """Check every frame's CRC; return the problems found (empty when all is well)."""
        problems = []
        segments = self.segments
        for i, seg in enumerate(segments):
            try:
                scan = check_frames(seg.path, seg.base_offset, repair=False, limit=seg.size)
            except CorruptLogError as exc:
                problems.append(str(exc))
                continue
            if scan.problem or scan.end != seg.size:
                where = "sealed segment" if i < len(segments) - 1 else "segment"
                problems.append(f"{seg.path} ({where}): {scan.problem or 'short'}")
        return problems

    def close(self) -> None:
        with self._write_lock:
            if self._fd is not None:
                if self.fsync is not FsyncPolicy.NEVER:
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
            self.writable = False
            for seg in self.segments:
                seg.release()
