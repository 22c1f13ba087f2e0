"""Many threads appending at once: offsets unique and contiguous, fsyncs shared."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from fluvial.log.embedded import EmbeddedLog

THREADS = 8
APPENDS = 40
ROWS = 5


@pytest.mark.parametrize("fsync", ["batch", "always"])
def test_concurrent_appends_get_unique_contiguous_offsets(tmp_path: Path, fsync: str) -> None:
    with EmbeddedLog(tmp_path, fsync=fsync, segment_bytes=16 * 1024) as log:
        log.create_topic("t", 1)
        acks: list[tuple[int, int, int]] = []
        lock = threading.Lock()
        barrier = threading.Barrier(THREADS)

        def writer(w: int) -> None:
            barrier.wait()
            for i in range(APPENDS):
                ids = [w * 10_000 + i * ROWS + j for j in range(ROWS)]
                result = log.append("t", pa.table({"w": [w] * ROWS, "id": ids}))
                with lock:
                    acks.extend((first, count, ids[0]) for _, first, count in result.ranges)

        pool = [threading.Thread(target=writer, args=(w,)) for w in range(THREADS)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        total = THREADS * APPENDS * ROWS
        acks.sort()
        # the acknowledged ranges tile [0, total) exactly: unique and contiguous
        assert [first for first, _, _ in acks] == list(range(0, total, ROWS))
        out = log.read("t", 0, 0, total + 1)
        assert out.column("_offset").to_pylist() == list(range(total))
        ids = out.column("id").to_pylist()
        for first, count, first_id in acks:  # each append's rows sit where it was told
            assert ids[first : first + count] == list(range(first_id, first_id + count))
        for w in range(THREADS):  # and each thread's appends keep their order
            mine = [i for i, ww in zip(ids, out.column("w").to_pylist(), strict=True) if ww == w]
            assert mine == sorted(mine)
        assert len(list((tmp_path / "t" / "0").glob("*.seg"))) > 1  # rolls happened meanwhile
        fsyncs = log.store.get("t").partitions[0].fsyncs
        if fsync == "batch":
            assert 0 < fsyncs < THREADS * APPENDS  # group commit shared fsyncs


def test_first_appends_race_while_partitions_recover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads making the very first appends must all wait for every partition to open."""
    from fluvial.log.embedded.partition import Partition

    slow_open = Partition.open_for_write

    def open_slowly(self: Partition) -> None:  # a long tail recovery widens the race window
        time.sleep(0.005)
        slow_open(self)

    monkeypatch.setattr(Partition, "open_for_write", open_slowly)
    for round_ in range(3):
        root = tmp_path / str(round_)
        schema = pa.schema([("k", pa.string()), ("w", pa.int64())])
        with EmbeddedLog(root, fsync="batch") as log:
            log.create_topic("t", 8, schema=schema)
        with EmbeddedLog(root, fsync="batch") as log:  # a fresh process view: nothing open yet
            barrier = threading.Barrier(THREADS)
            errors: list[BaseException] = []

            def writer(
                w: int, barrier: threading.Barrier = barrier, errors: list[BaseException] = errors
            ) -> None:
                barrier.wait()
                time.sleep(0.002 * w)  # stagger: later threads arrive mid-recovery
                keys = [f"user-{w}-{j}" for j in range(32)]
                try:
                    log.append("t", pa.table({"k": keys, "w": [w] * 32}), key="k")
                except BaseException as exc:  # collected: a thread's exception is otherwise lost
                    errors.append(exc)

            pool = [threading.Thread(target=writer, args=(w,)) for w in range(THREADS)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            assert errors == []
            assert log.topic("t").records == THREADS * 32
