"""One segment in memory: its sparse frame index, and zero-copy reads through a memory map.

The index holds one entry per frame (not per record): the frame's file position, base
offset and header. It is built by reading frame headers only and grows as frames are
appended (by this process) or appear on disk (written by another process).
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_right
from pathlib import Path

import pyarrow as pa

from fluvial.errors import CorruptLogError
from fluvial.log.embedded.segment import HEADER_BYTES, FrameHeader, decode_body, scan_headers

__all__ = ["IndexedSegment"]


class IndexedSegment:
    """A segment file, its frame index and (lazily) a memory map of it.

    Lists are only appended to, and ``end_offset`` is set last, so a reader that looks
    at ``end_offset`` first always finds the index entries it needs without a lock.
    """

    def __init__(self, path: Path, base_offset: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.positions: list[int] = []
        self.offsets: list[int] = []  # base offset of each frame, for bisection
        self.headers: list[FrameHeader] = []
        self.size = 0  # file position just past the last complete frame
        self.end_offset = base_offset
        self._map: tuple[pa.Buffer, int] | None = None
        self._map_lock = threading.Lock()
        self._cached: tuple[int, pa.RecordBatch] | None = None

    def __repr__(self) -> str:
        return f"IndexedSegment({self.path.name}, frames={len(self.offsets)}, bytes={self.size})"

    @property
    def frames(self) -> int:
        return len(self.offsets)

    @property
    def last_timestamp(self) -> int | None:
        return self.headers[-1].timestamp_ms if self.headers else None

    def add(self, position: int, header: FrameHeader) -> None:
        """Index a frame at *position* (the next one; written or found on disk)."""
        self.positions.append(position)
        self.headers.append(header)
        self.offsets.append(header.base_offset)
        self.size = position + header.frame_bytes
        self.end_offset = header.end_offset

    def scan(self, *, sealed: bool) -> bool:
        """Index frames that appeared on disk since the last scan; return whether any did.

        An incomplete or invalid tail is left invisible (a writer may be mid-frame, or a
        crashed writer's torn frame awaits recovery); in a *sealed* segment (one that has
        a successor) anything unreadable before the end of the file is corruption.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            size = os.fstat(fd).st_size
            if size <= self.size:
                return False
            found = scan_headers(fd, self.size, size, self.end_offset)
        finally:
            os.close(fd)
        for position, header in zip(found.positions, found.headers, strict=True):
            self.add(position, header)
        if sealed and found.problem:
            raise CorruptLogError(f"{self.path}: {found.problem}")
        return bool(found.headers)

    def frame_at(self, offset: int) -> int:
        """The index of the frame holding *offset* (which must be in this segment)."""
        return bisect_right(self.offsets, offset) - 1

    def frame_for_time(self, timestamp_ms: int) -> int:
        """The index of the first frame appended at or after *timestamp_ms* (or ``frames``)."""
        lo, hi = 0, len(self.headers)
        while lo < hi:  # frame timestamps never decrease within a partition
            mid = (lo + hi) // 2
            if self.headers[mid].timestamp_ms < timestamp_ms:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def batch(self, i: int) -> pa.RecordBatch:
        """Frame *i*'s record batch, decoded zero-copy from the memory map."""
        cached = self._cached
        if cached is not None and cached[0] == i:
            return cached[1]
        position, header = self.positions[i], self.headers[i]
        end = position + header.frame_bytes
        mapped = self._map
        if mapped is None or mapped[1] < end:
            with self._map_lock:
                mapped = self._map
                if mapped is None or mapped[1] < end:
                    # the file grew since it was mapped (the active segment): map it anew
                    try:
                        with pa.memory_map(str(self.path)) as mm:
                            mapped = (mm.read_buffer(), mm.size())
                    except OSError as exc:
                        raise CorruptLogError(f"cannot map segment {self.path}: {exc}") from exc
                    self._map = mapped
        body = mapped[0].slice(position + HEADER_BYTES, header.body_bytes)
        try:
            batch = decode_body(body)
        except (pa.ArrowInvalid, OSError) as exc:
            raise CorruptLogError(
                f"{self.path}: frame at position {position} (offset {header.base_offset}) "
                f"does not decode: {exc}"
            ) from exc
        self._cached = (i, batch)
        return batch

    def release(self) -> None:
        """Drop the memory map (buffers still referenced by readers stay valid)."""
        self._map = None
        self._cached = None
