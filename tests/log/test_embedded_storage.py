"""The embedded log's files: layout, frame format, index, verify, shared opens."""

from __future__ import annotations

import base64
import json
import os
import struct
import zlib
from pathlib import Path

import pyarrow as pa
import pytest

from fluvial.config import load_settings
from fluvial.errors import ConfigError, LogError
from fluvial.log import open_log
from fluvial.log.embedded import EmbeddedLog
from fluvial.log.embedded.segment import HEADER_BYTES, MAGIC, FrameHeader, segment_name


def rows(n: int, start: int = 0) -> pa.Table:
    return pa.table(
        {"user": [f"u{i % 3}" for i in range(start, start + n)], "seq": range(start, start + n)}
    )


def frames_of(path: Path) -> list[tuple[int, FrameHeader]]:
    """Parse a segment file independently of the log's index: (position, header) pairs."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        magic, version, _, hlen, blen, bcrc, base, ts, count, hcrc = struct.unpack_from(
            "<4sBBHIIqqII", data, pos
        )
        assert (magic, version, hlen) == (MAGIC, 1, HEADER_BYTES)
        assert zlib.crc32(data[pos : pos + 36]) == hcrc
        padded = (blen + 7) // 8 * 8
        assert zlib.crc32(data[pos + HEADER_BYTES : pos + HEADER_BYTES + padded]) == bcrc
        out.append((pos, FrameHeader(blen, bcrc, base, ts, count)))
        pos += HEADER_BYTES + padded
    assert pos == len(data)
    return out


def test_layout_topic_json_and_segment_names(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, fsync="never") as log:
        log.create_topic("clicks", 3)
        log.append("clicks", rows(10), partition=1)
        topic_dir = tmp_path / "clicks"
        assert sorted(p.name for p in topic_dir.iterdir() if p.is_dir()) == ["0", "1", "2"]
        assert [p.name for p in (topic_dir / "1").iterdir()] == [segment_name(0)]
        assert segment_name(42) == "00000000000000000042.seg"
        doc = json.loads((topic_dir / "topic.json").read_text())
        assert doc["partitions"] == 3 and doc["name"] == "clicks"
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(doc["schema"])))
        assert schema.equals(rows(1).schema)


def test_each_append_is_one_aligned_frame_of_arrow_ipc(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, fsync="never") as log:
        log.create_topic("t", 1)
        for i, n in enumerate((5, 1, 13)):
            log.append("t", rows(n, start=i * 100))
    frames = frames_of(tmp_path / "t" / "0" / segment_name(0))
    assert [(h.base_offset, h.count) for _, h in frames] == [(0, 5), (5, 1), (6, 13)]
    assert all(pos % 8 == 0 for pos, _ in frames)
    stamps = [h.timestamp_ms for _, h in frames]
    assert stamps == sorted(stamps)
    data = (tmp_path / "t" / "0" / segment_name(0)).read_bytes()
    pos, header = frames[2]
    body = pa.py_buffer(data[pos + HEADER_BYTES : pos + HEADER_BYTES + header.body_bytes])
    assert pa.ipc.open_stream(body).read_all().equals(rows(13, start=200))


def test_a_keyed_append_writes_one_frame_per_partition(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, fsync="never") as log:
        log.create_topic("t", 2)
        result = log.append("t", rows(30), key="user")
    per_partition = {p: count for p, _, count in result.ranges}
    for p, count in per_partition.items():
        frames = frames_of(tmp_path / "t" / str(p) / segment_name(0))
        assert [(h.base_offset, h.count) for _, h in frames] == [(0, count)]


def test_reopen_rebuilds_the_index(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, fsync="never") as log:
        log.create_topic("t", 2)
        for i in range(20):
            log.append("t", rows(10, start=i * 10), partition=i % 2)
        before = log.read("t", 1, 0, 1000)
    with EmbeddedLog(tmp_path, fsync="never") as log:
        assert log.topic("t").end_offsets == {0: 100, 1: 100}
        assert log.read("t", 1, 0, 1000).equals(before)
        assert log.read("t", 1, 55, 10).column("_offset").to_pylist() == list(range(55, 65))
        result = log.append("t", rows(1), partition=1)  # the writer continues the offsets
        assert result.ranges == ((1, 100, 1),)


def test_verify_finds_a_flipped_byte(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, fsync="never") as log:
        log.create_topic("t", 1)
        for i in range(3):
            log.append("t", rows(50, start=i * 50))
        assert log.verify() == []
        seg = tmp_path / "t" / "0" / segment_name(0)
        pos, header = frames_of(seg)[1]
        with open(seg, "r+b") as f:  # corrupt the body, not the header: reads do not notice
            f.seek(pos + HEADER_BYTES + header.body_bytes - 1)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
        problems = log.verify("t")
        assert len(problems) == 1 and "CRC" in problems[0]


def test_opens_in_one_process_share_the_writer(tmp_path: Path) -> None:
    a = EmbeddedLog(tmp_path, fsync="never")
    b = EmbeddedLog(tmp_path, fsync="never")
    try:
        a.create_topic("t", 1)
        a.append("t", rows(2))
        b.append("t", rows(3, start=2))  # no "another writer" error: same process, same store
        assert a.read("t", 0, 0).column("seq").to_pylist() == [0, 1, 2, 3, 4]
        a.close()
        assert b.topic("t").records == 5  # closing one does not close the other
    finally:
        a.close()
        b.close()
    with pytest.raises(LogError, match="closed"):
        b.topic("t")


def test_open_log_from_settings(tmp_path: Path) -> None:
    settings = load_settings(
        None, env={"FLUVIAL_LOG__PARTITIONS": "3", "FLUVIAL_LOG__FSYNC": "never"}
    )
    with open_log(settings, tmp_path) as log:
        assert isinstance(log, EmbeddedLog)
        assert log.root == (tmp_path / "log").resolve()
        assert log.create_topic("t").num_partitions == 3
    bad = load_settings(None, env={"FLUVIAL_LOG__FSYNC": "sometimes"})
    with pytest.raises(ConfigError, match="sometimes"):
        open_log(bad, tmp_path)


def test_bad_inputs_are_clear_errors(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, fsync="never") as log:
        log.create_topic("t", 2)
        with pytest.raises(LogError, match="key column 'nope'"):
            log.append("t", rows(2), key="nope")
        with pytest.raises(LogError, match="expected 2 keys"):
            log.append("t", rows(2), key=pa.array(["a"]))
        with pytest.raises(LogError, match="Table or RecordBatch"):
            log.append("t", {"user": ["a"]})
        with pytest.raises(LogError, match="partitions 0-1"):
            log.read("t", 5, 0)
        with pytest.raises(LogError, match="at least 1 partition"):
            log.create_topic("u", 0)
