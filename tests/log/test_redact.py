"""Redacting retained records of the embedded log: tombstones at the same offsets, frames
at the same positions, crash-safe rewrites, and a log that stays writable and verifiable."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fluvial.govern.subject import Subject
from fluvial.log.embedded import EmbeddedLog
from fluvial.log.embedded import redact as redact_module
from fluvial.log.embedded.redact import FORGOTTEN, redact_topic
from fluvial.log.embedded.segment import scan_headers

SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("anonymous_id", pa.string()),
        pa.field("n", pa.int64()),
        pa.field("properties", pa.string()),
    ]
)
SUBJECT = Subject("u42", ("dev-42",))


def rows(start: int, count: int) -> pa.Table:
    """Every 7th row is u42's (every 14th signed in, the others on u42's device)."""
    i = list(range(start, start + count))
    mine = [k % 7 == 0 for k in i]
    return pa.table(
        {
            "event_id": [f"e{k}" for k in i],
            "event_type": ["page_view"] * count,
            "user_id": [
                "u42" if m and k % 14 == 0 else (None if m else f"u{k}")
                for k, m in zip(i, mine, strict=True)
            ],
            "anonymous_id": ["dev-42" if m else f"dev-{k}" for k, m in zip(i, mine, strict=True)],
            "n": i,
            "properties": [f'{{"k": {k}, "note": "x"}}' for k in i],
        },
        schema=SCHEMA,
    )


def build(root: Path, *, segment_bytes: int = 4096) -> EmbeddedLog:
    log = EmbeddedLog(root, partitions=2, fsync="always", segment_bytes=segment_bytes)
    log.create_topic("events", 2, schema=SCHEMA)
    for start in range(0, 600, 50):  # many frames over several segments
        log.append("events", rows(start, 50), partition=(start // 50) % 2)
    log.commit("g", "events", {0: 100, 1: 150})
    return log


def read_all(log: EmbeddedLog) -> pa.Table:
    info = log.topic("events")
    parts = [log.read("events", p.partition, p.start_offset, 10**6) for p in info.partitions]
    return pa.concat_tables(parts)


def layout(root: Path) -> dict[str, list[tuple[int, int]]]:
    out = {}
    for seg in sorted(root.rglob("*.seg")):
        fd = os.open(seg, os.O_RDONLY)
        try:
            scan = scan_headers(fd, 0, os.fstat(fd).st_size, int(seg.stem))
        finally:
            os.close(fd)
        out[str(seg.relative_to(root))] = [
            (pos, h.base_offset) for pos, h in zip(scan.positions, scan.headers, strict=True)
        ]
    return out


def test_records_become_tombstones_at_the_same_offsets_and_positions(tmp_path: Path) -> None:
    root = tmp_path / "log"
    log = build(root)
    before = read_all(log)
    shape = layout(root)
    sizes = {p: p.stat().st_size for p in root.rglob("*.seg")}
    assert len(sizes) > 2
    log.close()

    mine = SUBJECT.mask(before)
    expected = int(pc.sum(mine).as_py())
    preview = redact_topic(root / "events", SUBJECT.mask, dry_run=True)
    assert preview.records == expected and layout(root) == shape
    result = redact_topic(root / "events", SUBJECT.mask)
    assert (result.records, result.relaid) == (expected, 0)
    assert layout(root) == shape  # every frame where it was
    assert {p: p.stat().st_size for p in root.rglob("*.seg")} == sizes

    log = EmbeddedLog(root, partitions=2, fsync="always", segment_bytes=4096)
    after = read_all(log)
    assert after["_offset"].equals(before["_offset"])
    assert after.filter(pc.invert(mine)).equals(before.filter(pc.invert(mine)))
    tomb = after.filter(mine)
    assert set(tomb["event_type"].to_pylist()) == {FORGOTTEN}
    assert tomb["event_id"].equals(before.filter(mine)["event_id"])  # not identifying
    for col in ("user_id", "anonymous_id", "n", "properties"):
        assert tomb[col].null_count == expected, col
    assert not SUBJECT.mask(after).to_pylist().count(True)
    assert log.committed("g", "events") == {0: 100, 1: 150}
    assert log.verify("events") == []
    segments = list(root.rglob("*.seg"))
    assert segments
    for seg in segments:
        assert not re.search(rb"(dev-|u)42(?![0-9])", seg.read_bytes()), seg
    # still writable: the writer's recovery accepts the rewritten tail
    log.append("events", rows(600, 10), partition=0)
    assert read_all(log).num_rows == 610
    log.close()


def test_a_reader_that_indexed_the_segments_reads_the_tombstones(tmp_path: Path) -> None:
    root = tmp_path / "log"
    writer = build(root)
    writer.close()
    reader = EmbeddedLog(root, partitions=2)
    info = reader.topic("events")  # indexes the segments, maps nothing yet
    redact_topic(root / "events", SUBJECT.mask)
    table = pa.concat_tables(
        [reader.read("events", p.partition, p.start_offset, 10**6) for p in info.partitions]
    )
    assert not any(SUBJECT.mask(table).to_pylist())
    assert table.num_rows == 600
    reader.close()


def test_a_frame_that_cannot_keep_its_length_is_laid_out_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "log"
    log = build(root)
    before = read_all(log)
    log.close()
    monkeypatch.setattr(redact_module, "_fitted", lambda batch, size: None)
    result = redact_topic(root / "events", SUBJECT.mask)
    assert result.relaid == result.segments > 0
    log = EmbeddedLog(root, partitions=2)
    after = read_all(log)
    assert after["_offset"].equals(before["_offset"])
    assert not any(SUBJECT.mask(after).to_pylist())
    assert log.verify("events") == []
    log.close()


def test_a_crash_before_the_rename_leaves_the_old_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "log"
    build(root).close()
    originals = {p: p.read_bytes() for p in root.rglob("*.seg")}

    def crash(*args: Any) -> None:
        raise OSError("power lost")

    monkeypatch.setattr(redact_module.os, "replace", crash)
    with pytest.raises(OSError, match="power lost"):
        redact_topic(root / "events", SUBJECT.mask)
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in root.rglob("*.seg")} == originals
    assert list(root.rglob(".*.redact.tmp"))  # the half-done new segment, never renamed
    log = EmbeddedLog(root, partitions=2)
    assert read_all(log).num_rows == 600  # readers ignore it
    log.close()
    result = redact_topic(root / "events", SUBJECT.mask)  # the next run cleans up
    assert result.records and not list(root.rglob(".*.redact.tmp"))


def test_refuses_while_a_writer_holds_the_topic(tmp_path: Path) -> None:
    from fluvial.errors import LogError

    root = tmp_path / "log"
    log = build(root)  # this log object holds the writer lock
    with pytest.raises(LogError, match="Stop the collector"):
        redact_topic(root / "events", SUBJECT.mask)
    log.close()
