"""Redacting retained records in place: forgotten records become tombstones.

Segments are immutable and offsets are forever, so a record cannot be removed: it is
replaced by a *tombstone* at the same offset. Every nullable column of a tombstone is
null; a non-nullable text column that held an identifying value is emptied; the column
``event_type`` (when there is one) says ``forgotten``; other non-nullable values (the
event id, the times) stay. Readers and consumer groups see the same offsets as before.

A rewritten frame keeps its exact length (the new IPC stream, zstd-compressed when the
plain one would not fit, is zero-padded to the old body length), so every frame stays at
its file position and a reader in another process that indexed the segment earlier still
finds it. Only when even the compressed stream does not fit is the segment laid out anew
(``relaid``; readers in other processes must reopen the log).

A segment is rewritten beside itself (``.<name>.redact.tmp``), fsynced, renamed over the
old one and the folder fsynced: a crash leaves the old or the new segment, never a mix.
The topic's writer lock is held throughout; a running writer (the collector, ``fluvial
up``) makes :func:`redact_topic` refuse rather than wait.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import CorruptLogError, LogError
from fluvial.log.embedded.durability import fsync_dir
from fluvial.log.embedded.segment import HEADER_BYTES, Frame, FrameHeader, check_frames, decode_body
from fluvial.log.embedded.topic import LOCK_FILE, META_FILE, WriterLock

__all__ = ["FORGOTTEN", "RedactionResult", "lock_topic", "redact_topic", "tombstones"]

#: the event_type of a tombstone
FORGOTTEN = "forgotten"

#: (rows, per-column test) -> which rows to redact; the per-column test says, for a
#: one-column table, which of its values identify the subject
RowMatcher = Callable[[pa.RecordBatch], pa.Array]


@dataclass
class RedactionResult:
    """What :func:`redact_topic` found and (unless a dry run) redacted."""

    topic: str
    records: int = 0
    frames: int = 0
    segments: int = 0
    relaid: int = 0
    partitions: dict[int, int] = field(default_factory=dict)


def _padded(n: int) -> int:
    return (n + 7) & ~7


def tombstones(batch: pa.RecordBatch, rows: pa.Array, match: RowMatcher) -> pa.RecordBatch:
    """*batch* with the *rows* (a boolean mask) replaced by tombstones."""
    columns = []
    for f, column in zip(batch.schema, batch.columns, strict=True):
        if f.name == "event_type" and (
            pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        ):
            columns.append(pc.if_else(rows, pa.scalar(FORGOTTEN, f.type), column))
        elif f.nullable:
            columns.append(pc.if_else(rows, pa.scalar(None, f.type), column))
        elif pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            mentions = match(pa.record_batch([column], names=[f.name]))
            columns.append(pc.if_else(pc.and_(rows, mentions), pa.scalar("", f.type), column))
        else:
            columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


def _encode(batch: pa.RecordBatch, compression: str | None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, batch.schema, options=options) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _fitted(batch: pa.RecordBatch, body_bytes: int) -> bytes | None:
    """The encoded *batch* zero-padded to *body_bytes*, or None when it cannot fit."""
    for compression in (None, "zstd"):
        body = _encode(batch, compression)
        if len(body) <= body_bytes:
            return body + b"\0" * (body_bytes - len(body))
    return None


def _frame(body: bytes, count: int) -> Frame:
    pad = b"\0" * (_padded(len(body)) - len(body))
    return Frame(pa.py_buffer(body), zlib.crc32(pad, zlib.crc32(body)), count)


def _redact_segment(
    path: Path, base_offset: int, match: RowMatcher, *, last: bool, dry_run: bool
) -> tuple[int, int, bool]:
    """Redact one segment; return (records, frames, relaid)."""
    scan = check_frames(path, base_offset, repair=last and not dry_run)
    if scan.problem and not last:
        raise CorruptLogError(f"{path}: {scan.problem}; run `fluvial log verify` first")
    records = frames = 0
    new: list[tuple[FrameHeader, bytes]] = []  # (header, body as written, unpadded)
    relaid = False
    with open(path, "rb") as f:
        for position, header in zip(scan.positions, scan.headers, strict=True):
            f.seek(position + HEADER_BYTES)
            raw = f.read(header.body_bytes)
            batch = decode_body(pa.py_buffer(raw))
            rows = match(batch)
            hits = int(pc.sum(rows).as_py() or 0)
            if not hits:
                new.append((header, raw))
                continue
            records += hits
            frames += 1
            redacted = tombstones(batch, rows, match)
            body = _fitted(redacted, header.body_bytes)
            if body is None:
                relaid = True
                body = _encode(redacted, "zstd")
            new.append((header, body))
    if dry_run or not frames:
        return records, frames, False
    tmp = path.with_name(f".{path.name}.redact.tmp")
    with open(tmp, "wb") as out:
        for header, body in new:
            frame = _frame(body, header.count)
            for part in frame.parts(
                base_offset=header.base_offset, timestamp_ms=header.timestamp_ms
            ):
                out.write(part)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return records, frames, relaid


def lock_topic(directory: Path) -> WriterLock:
    """Take the writer lock of the topic at *directory*, or refuse at once.

    Raises:
        LogError: another process (a collector, ``fluvial up``, a pipeline writing the
            topic) holds it.
    """
    if not (directory / META_FILE).exists():
        raise LogError(f"{directory} is not a topic of the embedded log")
    lock = WriterLock(directory / LOCK_FILE)
    try:
        lock.acquire(f"topic '{directory.name}'")
    except LogError as exc:
        raise LogError(
            f"cannot forget in topic '{directory.name}': {exc}. Stop the collector and "
            "`fluvial up` (forget rewrites segments under the writer lock), then run again"
        ) from exc
    return lock


def redact_topic(
    directory: Path, match: RowMatcher, *, dry_run: bool = False, locked: bool = False
) -> RedactionResult:
    """Replace the records *match* selects by tombstones in every segment of the topic at
    *directory*, holding its writer lock (taken here unless *locked* says the caller
    holds it; a dry run only counts, without the lock).

    Raises:
        LogError: another process holds the topic's writer lock (a collector or pipeline
            is appending): stop it and run again.
        CorruptLogError: a sealed segment fails its checks (nothing is rewritten in it).
    """
    if not (directory / META_FILE).exists():
        raise LogError(f"{directory} is not a topic of the embedded log")
    result = RedactionResult(directory.name)
    lock = None if dry_run or locked else lock_topic(directory)
    try:
        parts = sorted(
            (p for p in directory.iterdir() if p.is_dir() and p.name.isdigit()),
            key=lambda p: int(p.name),
        )
        for part in parts:
            if not dry_run:  # a crashed earlier run's new segment, never renamed
                for stale in part.glob(".*.redact.tmp"):
                    stale.unlink()
            segments = sorted(p for p in part.glob("*.seg") if p.stem.isdigit())
            for i, seg in enumerate(segments):
                records, frames, relaid = _redact_segment(
                    seg, int(seg.stem), match, last=i == len(segments) - 1, dry_run=dry_run
                )
                if records:
                    number = int(part.name)
                    result.records += records
                    result.frames += frames
                    result.segments += 1
                    result.relaid += int(relaid)
                    result.partitions[number] = result.partitions.get(number, 0) + records
    finally:
        if lock is not None:
            lock.release()
    return result
