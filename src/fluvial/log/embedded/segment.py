"""Segment files: a sequence of frames, each one append's rows as an Arrow IPC stream.

A segment is named by the offset of its first record (``00000000000000000042.seg``). Every
frame starts 8-byte aligned, so the Arrow buffers inside a memory-mapped segment are
aligned and read without copying. The 40-byte frame header (little-endian):

======  ======  =====================================================================
bytes   type    field
======  ======  =====================================================================
0-3     4s      magic ``FLVF``
4       u8      format version (1)
5       u8      flags (0; reserved)
6-7     u16     header length (40)
8-11    u32     body length: the IPC stream's bytes, before padding
12-15   u32     CRC32 of the padded body
16-23   i64     base offset: the offset of the frame's first record
24-31   i64     append timestamp, ms since the epoch (UTC)
32-35   u32     record count
36-39   u32     CRC32 of header bytes 0-35
======  ======  =====================================================================

The body (an IPC stream: schema message, one record batch, end marker) is zero-padded to a
multiple of 8. Readers trust the header CRC and the file length and skip the body CRC,
which :func:`check_frames` (recovery, ``verify``) checks.

>>> import pyarrow as pa
>>> batch = pa.record_batch({"x": [1, 2, 3]})
>>> frame = Frame.encode(batch)
>>> header = FrameHeader.unpack(frame.header(base_offset=7, timestamp_ms=1000))
>>> header.base_offset, header.count, header.frame_bytes == frame.nbytes
(7, 3, True)
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from fluvial.errors import CorruptLogError

__all__ = [
    "HEADER_BYTES",
    "MAGIC",
    "Frame",
    "FrameHeader",
    "FrameScan",
    "check_frames",
    "decode_body",
    "scan_headers",
    "segment_name",
]

MAGIC = b"FLVF"
VERSION = 1
_HEADER = struct.Struct("<4sBBHIIqqII")
HEADER_BYTES = _HEADER.size  # 40
_PREFIX = struct.Struct("<4sBBHIIqqI")  # the header without its own CRC
_PADS = [b"\0" * n for n in range(8)]


def segment_name(base_offset: int) -> str:
    """The file name of the segment whose first record is *base_offset*."""
    return f"{base_offset:020d}.seg"


def _padded(n: int) -> int:
    return (n + 7) & ~7


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """A parsed frame header."""

    body_bytes: int
    body_crc: int
    base_offset: int
    timestamp_ms: int
    count: int

    @property
    def frame_bytes(self) -> int:
        """The whole frame on disk: header plus padded body."""
        return HEADER_BYTES + _padded(self.body_bytes)

    @property
    def end_offset(self) -> int:
        return self.base_offset + self.count

    @classmethod
    def unpack(cls, raw: bytes) -> FrameHeader | None:
        """Parse 40 header bytes; ``None`` when they are not a valid header."""
        if len(raw) < HEADER_BYTES:
            return None
        magic, version, _flags, hlen, blen, bcrc, base, ts, count, hcrc = _HEADER.unpack_from(raw)
        if magic != MAGIC or version != VERSION or hlen != HEADER_BYTES:
            return None
        if zlib.crc32(memoryview(raw)[: HEADER_BYTES - 4]) != hcrc or base < 0:
            return None
        return cls(blen, bcrc, base, ts, count)


@dataclass(frozen=True, slots=True)
class Frame:
    """One encoded frame body, ready to be written once its offset is known."""

    body: pa.Buffer
    body_crc: int
    count: int

    @classmethod
    def encode(cls, batch: pa.RecordBatch) -> Frame:
        """Serialize *batch* as an IPC stream (outside any lock: it is offset-independent)."""
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        body = sink.getvalue()
        crc = zlib.crc32(_PADS[_padded(body.size) - body.size], zlib.crc32(body))
        return cls(body, crc, batch.num_rows)

    @property
    def nbytes(self) -> int:
        return HEADER_BYTES + _padded(self.body.size)

    def header(self, *, base_offset: int, timestamp_ms: int) -> bytes:
        prefix = _PREFIX.pack(
            MAGIC,
            VERSION,
            0,
            HEADER_BYTES,
            self.body.size,
            self.body_crc,
            base_offset,
            timestamp_ms,
            self.count,
        )
        return prefix + struct.pack("<I", zlib.crc32(prefix))

    def parts(self, *, base_offset: int, timestamp_ms: int) -> list[bytes | pa.Buffer]:
        """The buffers to hand to ``os.writev``: header, body, padding (no copy of the body)."""
        pad = _PADS[_padded(self.body.size) - self.body.size]
        return [self.header(base_offset=base_offset, timestamp_ms=timestamp_ms), self.body, pad]


def decode_body(body: pa.Buffer) -> pa.RecordBatch:
    """The record batch in a frame body (zero-copy over *body*)."""
    return pa.ipc.open_stream(body).read_next_batch()


@dataclass(frozen=True, slots=True)
class FrameScan:
    """What a scan of a segment found: the frames and where valid data ends."""

    positions: list[int]
    headers: list[FrameHeader]
    end: int  # file position just past the last good frame
    problem: str = ""  # why the scan stopped before the end of the file ("" = it did not)


def scan_headers(fd: int, start: int, size: int, expected_offset: int) -> FrameScan:
    """Read frame headers from *start* up to *size*, skipping bodies (for the sparse index).

    Stops at a frame that is not complete yet (its declared length runs past *size*: a
    writer is still writing it, or a crash tore it) or whose header is invalid.
    """
    positions: list[int] = []
    headers: list[FrameHeader] = []
    pos, expected, problem = start, expected_offset, ""
    while pos < size:
        if size - pos < HEADER_BYTES:
            problem = f"{size - pos} trailing bytes at position {pos} are shorter than a header"
            break
        header = FrameHeader.unpack(os.pread(fd, HEADER_BYTES, pos))
        if header is None:
            problem = f"invalid frame header at position {pos}"
            break
        if header.base_offset != expected:
            problem = (
                f"frame at position {pos} starts at offset {header.base_offset}, "
                f"expected {expected}"
            )
            break
        if pos + header.frame_bytes > size:
            problem = f"frame at position {pos} runs past the end of the file"
            break
        positions.append(pos)
        headers.append(header)
        pos += header.frame_bytes
        expected = header.end_offset
    return FrameScan(positions, headers, pos, problem)


def _body_ok(fd: int, pos: int, header: FrameHeader) -> bool:
    body = os.pread(fd, _padded(header.body_bytes), pos + HEADER_BYTES)
    return len(body) == _padded(header.body_bytes) and zlib.crc32(body) == header.body_crc


def _valid_frame_after(fd: int, start: int, size: int) -> int | None:
    """The position of a fully valid frame (header and body CRC) at or after *start*."""
    pos = (start + 7) & ~7
    chunk = 1 << 20
    while pos < size:
        data = os.pread(fd, min(chunk + HEADER_BYTES, size - pos), pos)
        at = data.find(MAGIC)
        while at >= 0:
            if at % 8 == 0:
                header = FrameHeader.unpack(data[at : at + HEADER_BYTES])
                if header is None and at + HEADER_BYTES > len(data):
                    header = FrameHeader.unpack(os.pread(fd, HEADER_BYTES, pos + at))
                if (
                    header is not None
                    and pos + at + header.frame_bytes <= size
                    and _body_ok(fd, pos + at, header)
                ):
                    return pos + at
            at = data.find(MAGIC, at + 1)
        pos += chunk
    return None


def check_frames(
    path: Path, base_offset: int, *, repair: bool, limit: int | None = None
) -> FrameScan:
    """Validate every frame of a segment (header, length, body CRC, offsets).

    A bad region that runs to the end of the file is a torn tail: with *repair* the file
    is truncated to its last good frame (and fsynced). A bad frame followed by a good one
    is corruption that truncation would silently lose data for: :class:`CorruptLogError`.
    *limit* checks only the first *limit* bytes (what readers already see).
    """
    fd = os.open(path, os.O_RDWR if repair else os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if limit is not None:
            size = min(size, limit)
        scan = scan_headers(fd, 0, size, base_offset)
        good = len(scan.headers)
        problem = scan.problem
        for i, (pos, header) in enumerate(zip(scan.positions, scan.headers, strict=True)):
            if not _body_ok(fd, pos, header):
                good, problem = i, f"frame at position {pos} fails its CRC32 check"
                break
        end = scan.positions[good] if good < len(scan.positions) else scan.end
        if end < size:
            later = _valid_frame_after(fd, end + 8, size)
            if later is not None:
                raise CorruptLogError(
                    f"{path}: {problem or 'bad frame at position ' + str(end)}, but a valid "
                    f"frame follows at position {later}; refusing to truncate "
                    f"(restore the file or truncate it at {end} by hand)"
                )
            if repair:
                os.ftruncate(fd, end)
                os.fsync(fd)
        return FrameScan(scan.positions[:good], scan.headers[:good], end, problem)
    finally:
        os.close(fd)
