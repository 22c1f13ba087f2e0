"""The embedded log across processes: one writer per topic, readers follow the tail."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pytest

from fluvial.errors import LogError
from fluvial.log.embedded import EmbeddedLog

WRITER = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from fluvial.log.embedded import EmbeddedLog

    log = EmbeddedLog(sys.argv[1], fsync="never")
    log.create_topic("t", 1, exist_ok=True)
    log.append("t", pa.table({"seq": [0, 1, 2]}))
    print("ready", flush=True)
    sys.stdin.read()  # hold the writer lock until the parent closes our stdin
    log.close()
    """
)

FOLLOWER = textwrap.dedent(
    """
    import sys, time
    from fluvial.log.embedded import EmbeddedLog

    want = int(sys.argv[2])
    log = EmbeddedLog(sys.argv[1], fsync="never", segment_bytes=4096)
    consumer = log.consumer("t", start="earliest")
    print("ready", flush=True)
    seen = 0
    for table in consumer:
        now = time.time()
        for seq in table.column("seq").to_pylist():
            print(seq, now, flush=True)
        seen += table.num_rows
        if seen >= want:
            break
    """
)


def spawn(script: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_second_writer_process_is_refused(tmp_path: Path) -> None:
    child = spawn(WRITER, str(tmp_path))
    try:
        with EmbeddedLog(tmp_path, fsync="never") as log:
            # reading needs no lock
            assert log.read("t", 0, 0).column("seq").to_pylist() == [0, 1, 2]
            with pytest.raises(LogError, match=rf"another process \(pid {child.pid}\)"):
                log.append("t", pa.table({"seq": [3]}))
            with pytest.raises(LogError, match="another process"):
                log.delete_topic("t")
            log.create_topic("other", 1)  # other topics are free to write
            log.append("other", pa.table({"seq": [1]}))
    finally:
        child.communicate("", timeout=10)
    assert child.returncode == 0
    with EmbeddedLog(tmp_path, fsync="never") as log:  # the lock went with the process
        assert log.append("t", pa.table({"seq": [3]})).ranges == ((0, 3, 1),)


def test_a_reader_process_follows_the_tail(tmp_path: Path) -> None:
    total, batches = 400, 20
    with EmbeddedLog(tmp_path, fsync="never", segment_bytes=4096) as log:
        log.create_topic("t", 1)
        log.append("t", pa.table({"seq": pa.array([0], pa.int64())}))
        child = spawn(FOLLOWER, str(tmp_path), str(total))
        sent_at = {}
        per = (total - 1) // batches
        seq = 1
        for _ in range(batches):  # crosses several segment rolls
            time.sleep(0.01)
            n = min(per + 1, total - seq)
            sent_at[seq] = time.time()
            log.append("t", pa.table({"seq": pa.array(range(seq, seq + n), pa.int64())}))
            seq += n
        out, _ = child.communicate(timeout=20)
    assert child.returncode == 0
    lines = [line.split() for line in out.splitlines()]
    assert [int(s) for s, _ in lines] == list(range(total))
    received = {int(s): float(t) for s, t in lines}
    delays = [received[s] - t for s, t in sent_at.items()]
    assert sorted(delays)[len(delays) // 2] < 0.5  # typically a few milliseconds


RECREATOR = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from fluvial.log.embedded import EmbeddedLog

    with EmbeddedLog(sys.argv[1], fsync="never") as log:
        log.delete_topic("t")
        log.create_topic("t", 1)
        log.append("t", pa.table({"seq": [100, 101]}))
    """
)


def test_reader_sees_a_topic_recreated_by_another_process(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, fsync="never") as log:
        log.create_topic("t", 1)
        log.append("t", pa.table({"seq": list(range(50))}))
        assert log.read("t", 0, 0).num_rows == 50  # this process now holds the topic open
        log.store.get("t").close()  # give up the writer role, as a reader process would have
        subprocess.run([sys.executable, "-c", RECREATOR, str(tmp_path)], check=True, timeout=60)
        assert log.topic("t").end_offsets == {0: 2}
        assert log.read("t", 0, 0).column("seq").to_pylist() == [100, 101]
