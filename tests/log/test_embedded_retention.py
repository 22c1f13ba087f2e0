"""Segment rolls and retention by size and age in the embedded log."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pytest

from fluvial.errors import OffsetOutOfRangeError
from fluvial.log.embedded import EmbeddedLog
from fluvial.log.embedded.segment import segment_name


def rows(n: int, start: int = 0) -> pa.Table:
    return pa.table({"seq": pa.array(range(start, start + n), pa.int64()), "pad": ["x" * 40] * n})


def segments(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "t" / "0").glob("*.seg"))


def test_segments_roll_and_are_named_by_base_offset(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, fsync="never", segment_bytes=4096) as log:
        log.create_topic("t", 1)
        for i in range(20):
            log.append("t", rows(25, start=i * 25))
        names = segments(tmp_path)
        assert len(names) > 3
        bases = [int(n.removesuffix(".seg")) for n in names]
        assert bases[0] == 0 and bases == sorted(bases)
        assert all(b % 25 == 0 for b in bases)  # a roll happens between frames
        assert all((tmp_path / "t" / "0" / n).stat().st_size <= 4096 for n in names[:-1])
        # reads cross segment boundaries
        out = log.read("t", 0, 0, 10_000)
        assert out.column("seq").to_pylist() == list(range(500))
    with EmbeddedLog(tmp_path, fsync="never", segment_bytes=4096) as log:  # reopen
        assert log.read("t", 0, 0, 10_000).column("_offset").to_pylist() == list(range(500))


def test_retention_by_size_keeps_the_newest_segments(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, fsync="never", segment_bytes=4096, retention_bytes=10_000) as log:
        log.create_topic("t", 1)
        for i in range(40):
            log.append("t", rows(25, start=i * 25))
        before = segments(tmp_path)
        sizes = {n: (tmp_path / "t" / "0" / n).stat().st_size for n in before}
        # expected, computed from the files: drop oldest while the total is over the limit
        total, expected = sum(sizes.values()), list(before)
        while len(expected) > 1 and total > 10_000:
            total -= sizes[expected.pop(0)]
        removed = log.apply_retention()
        assert segments(tmp_path) == expected
        start = int(expected[0].removesuffix(".seg"))
        assert removed == start
        info = log.topic("t").partitions[0]
        assert (info.start_offset, info.end_offset) == (start, 1000)
        with pytest.raises(OffsetOutOfRangeError):
            log.read("t", 0, start - 1)
        assert log.read("t", 0, start, 5).column("seq").to_pylist() == list(range(start, start + 5))
        consumer = log.consumer("t", start="earliest")
        assert consumer.positions == {0: start}


def test_retention_by_age_never_deletes_the_active_segment(tmp_path: Path) -> None:
    hours = 0.2 / 3600  # 200 ms
    with EmbeddedLog(tmp_path, fsync="never", segment_bytes=4096, retention_hours=hours) as log:
        log.create_topic("t", 1)
        for i in range(10):
            log.append("t", rows(25, start=i * 25))
        assert log.apply_retention() == 0  # nothing is old yet
        time.sleep(0.3)
        active = segments(tmp_path)[-1]
        removed = log.apply_retention()
        assert segments(tmp_path) == [active]
        assert removed == int(active.removesuffix(".seg"))
        log.append("t", rows(1, start=250))
        assert log.topic("t").partitions[0].end_offset == 251


def test_retention_zero_keeps_everything(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, fsync="never", segment_bytes=4096, retention_hours=0) as log:
        log.create_topic("t", 1)
        for i in range(10):
            log.append("t", rows(25, start=i * 25))
        assert log.apply_retention() == 0
        assert segment_name(0) in segments(tmp_path)


def test_retention_borrows_the_writer_lock_only_while_it_runs(tmp_path: Path) -> None:
    """A process that only applies retention (the collector) must not lock a topic that
    another process (a pipeline's topic sink) writes."""
    import subprocess
    import sys

    with EmbeddedLog(tmp_path, fsync="never", segment_bytes=4096) as log:
        log.create_topic("t", 1)
    script = (
        "import sys, pyarrow as pa\n"
        "from fluvial.log.embedded import EmbeddedLog\n"
        "with EmbeddedLog(sys.argv[1], fsync='never') as log:\n"
        "    log.append('t', pa.table({'seq': pa.array([1], pa.int64()), 'pad': ['x']}))\n"
    )
    with EmbeddedLog(tmp_path, fsync="never") as housekeeper:
        housekeeper.apply_retention()  # this process opened the topic for retention only
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr  # another process can still write it
        assert housekeeper.read("t", 0, 0, 100).num_rows == 1
