"""Retention applied periodically by the writing process."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa

from fluvial.errors import LogError
from fluvial.log.embedded import EmbeddedLog
from fluvial.log.retention import RetentionRunner


def test_runner_trims_old_segments_while_the_writer_appends(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, fsync="never", segment_bytes=4096, retention_bytes=8192) as log:
        log.create_topic("t", 1)
        runner = RetentionRunner(log, every_seconds=0.02).start()
        try:
            for i in range(200):
                log.append("t", pa.table({"i": list(range(i * 10, i * 10 + 10))}))
            deadline = time.monotonic() + 5
            while log.topic("t").partitions[0].start_offset == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            runner.stop()
        part = log.topic("t").partitions[0]
        assert part.start_offset > 0 and part.end_offset == 2000
        assert runner.removed == part.start_offset  # every removed record is counted
        kept = log.read("t", 0, part.start_offset, 10_000).column("i").to_pylist()
        assert kept == list(range(part.start_offset, 2000))  # the newest records survive


def test_runner_survives_errors() -> None:
    class Failing:
        calls = 0

        def apply_retention(self) -> int:
            Failing.calls += 1
            raise LogError("topic 't' is being written by another process")

    runner = RetentionRunner(Failing(), every_seconds=0.01).start()
    time.sleep(0.1)
    runner.stop()
    assert Failing.calls > 2 and runner.removed == 0


def test_zero_interval_never_runs() -> None:
    class Log:
        def apply_retention(self) -> int:
            raise AssertionError("must not run")

    RetentionRunner(Log(), every_seconds=0).start().stop()
