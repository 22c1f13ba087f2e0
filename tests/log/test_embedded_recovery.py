"""Recovery of the embedded log: torn tails are truncated, corruption elsewhere refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from fluvial.errors import CorruptLogError
from fluvial.log.embedded import EmbeddedLog
from fluvial.log.embedded.segment import HEADER_BYTES, Frame, segment_name


def rows(n: int, start: int = 0) -> pa.Table:
    return pa.table({"seq": pa.array(range(start, start + n), pa.int64())})


def fill(root: Path, appends: int = 4, size: int = 10, **kwargs: object) -> Path:
    with EmbeddedLog(root, fsync="never", **kwargs) as log:  # type: ignore[arg-type]
        log.create_topic("t", 1)
        for i in range(appends):
            log.append("t", rows(size, start=i * size))
    return root / "t" / "0" / segment_name(0)


def frame_bytes(base: int, n: int) -> bytes:
    frame = Frame.encode(rows(n, start=1000).to_batches()[0])
    parts = frame.parts(base_offset=base, timestamp_ms=0)
    return b"".join(bytes(p) for p in parts)


@pytest.mark.parametrize("keep", [1, HEADER_BYTES - 1, HEADER_BYTES + 10, -9])
def test_torn_tail_is_invisible_then_truncated(tmp_path: Path, keep: int) -> None:
    seg = fill(tmp_path)
    good = seg.stat().st_size
    torn = frame_bytes(40, 5)
    with open(seg, "ab") as f:  # a crash mid-write: only part of the next frame got out
        f.write(torn[:keep])
    with EmbeddedLog(tmp_path, fsync="batch") as log:
        # readers see only complete frames, without repairing anything
        assert log.topic("t").end_offsets == {0: 40}
        assert seg.stat().st_size == good + len(torn[:keep])
        # the writer recovers on its first append: truncates, then continues the offsets
        assert log.append("t", rows(2, start=40)).ranges == ((0, 40, 2),)
        out = log.read("t", 0, 0, 100)
        assert out.column("seq").to_pylist() == list(range(42))
        assert log.verify() == []


def test_corrupt_last_frame_is_truncated(tmp_path: Path) -> None:
    seg = fill(tmp_path)
    size = seg.stat().st_size
    with open(seg, "r+b") as f:  # the last frame's body was not fully persisted
        f.seek(size - 16)
        f.write(b"\0" * 16)
    with EmbeddedLog(tmp_path, fsync="batch") as log:
        log.append("t", rows(1, start=99))
        assert log.read("t", 0, 0, 100).column("seq").to_pylist() == [*range(30), 99]


def test_corrupt_middle_frame_raises(tmp_path: Path) -> None:
    seg = fill(tmp_path)
    with open(seg, "r+b") as f:  # garbage inside the second frame's body; later frames fine
        data = f.read()
        second = data.index(b"FLVF", 8)
        f.seek(second + HEADER_BYTES + 24)
        f.write(b"\xff" * 8)
    with EmbeddedLog(tmp_path, fsync="batch") as log:
        with pytest.raises(CorruptLogError, match="valid frame follows"):
            log.append("t", rows(1))
        assert any("CRC" in p for p in log.verify())
    assert seg.stat().st_size == len(data)  # nothing was truncated


def test_garbage_header_in_the_middle_raises(tmp_path: Path) -> None:
    seg = fill(tmp_path)
    data = seg.read_bytes()
    second = data.index(b"FLVF", 8)
    with open(seg, "r+b") as f:
        f.seek(second)
        f.write(b"XXXX")
    with EmbeddedLog(tmp_path, fsync="batch") as log, pytest.raises(CorruptLogError):
        log.append("t", rows(1))


def test_empty_segment_after_a_roll_is_dropped(tmp_path: Path) -> None:
    seg = fill(tmp_path)
    nxt = seg.with_name(segment_name(40))
    nxt.touch()  # a crash right after rolling to a new segment
    with open(seg, "ab") as f:
        f.write(frame_bytes(40, 5)[:50])  # and a torn frame in the old one
    with EmbeddedLog(tmp_path, fsync="batch") as log:
        assert log.append("t", rows(1, start=40)).ranges == ((0, 40, 1),)
        assert log.read("t", 0, 38, 10).column("seq").to_pylist() == [38, 39, 40]


def test_sealed_segment_with_a_bad_tail_is_corrupt(tmp_path: Path) -> None:
    seg = fill(tmp_path, appends=6, size=100, segment_bytes=2048)
    segments = sorted(seg.parent.glob("*.seg"))
    assert len(segments) >= 3
    with open(segments[0], "r+b") as f:
        f.truncate(os.path.getsize(segments[0]) - 8)
    with pytest.raises(CorruptLogError), EmbeddedLog(tmp_path) as log:
        log.topic("t")
