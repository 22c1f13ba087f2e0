"""Kill a writer process mid-stream with SIGKILL; every acknowledged record must survive.

A child appends keyed batches with fsync=batch and, after each append returns, prints
what was acknowledged. The parent kills it at a random moment, reopens the log and checks
every acknowledged record against an independent expectation (partition from
``partition_for``, content from the id), exactly once, with contiguous offsets; the next
round's writer recovers the tail and continues. (One append is one ``pwritev``, which a
SIGKILL rarely tears; torn and corrupt frames are covered in ``test_embedded_recovery``.)
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pytest

from fluvial.log import partition_for
from fluvial.log.embedded import EmbeddedLog

PARTITIONS = 3

CHILD = textwrap.dedent(
    """
    import json, sys
    import pyarrow as pa
    from fluvial.log.embedded import EmbeddedLog

    root, base = sys.argv[1], int(sys.argv[2])
    log = EmbeddedLog(root, fsync="batch", segment_bytes=64 * 1024)
    log.create_topic("t", 3, exist_ok=True)
    print("ready", flush=True)
    i = 0
    while True:
        n = 1 + (i * 37) % 120
        ids = list(range(base, base + n))
        table = pa.table({
            "id": pa.array(ids, pa.int64()),
            "key": [f"k{x % 13}" for x in ids],
            "content": [f"row-{x}-" + "z" * (x % 50) for x in ids],
        })
        result = log.append("t", table, key="key")
        print(json.dumps({"ranges": result.ranges, "ids": ids}), flush=True)
        base += n
        i += 1
    """
)


def content(i: int) -> str:
    return f"row-{i}-" + "z" * (i % 50)


def run_round(root: Path, base: int, rng: random.Random) -> list[dict]:
    """Start a writer, let it acknowledge some appends, SIGKILL it; return its acks."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(base)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    acks: list[dict] = []
    wanted = rng.randint(3, 40)
    while len(acks) < wanted:
        line = proc.stdout.readline()
        assert line.endswith("\n"), "the writer died on its own"
        acks.append(json.loads(line))
    time.sleep(rng.uniform(0, 0.02))  # land the kill anywhere in an append
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=10)
    for line in rest.splitlines(keepends=True):
        if line.endswith("\n"):  # printed in full: the append had returned
            acks.append(json.loads(line))
    assert proc.returncode == -signal.SIGKILL
    return acks


def check(root: Path, acks: list[dict]) -> None:
    with EmbeddedLog(root, fsync="never") as log:
        info = log.topic("t")
        tables = [log.read("t", p.partition, 0, 10**9) for p in info.partitions]
    for p, table in enumerate(tables):  # offsets contiguous, from 0
        assert table.column("_offset").to_pylist() == list(range(table.num_rows)), p
    everything = pa.concat_tables(tables)
    ids = everything.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "a record is present twice"
    by_partition = [t.column("id").to_pylist() for t in tables]
    for ack in acks:
        keys = pa.array([f"k{x % 13}" for x in ack["ids"]])
        expected = partition_for(keys, PARTITIONS)
        assert sum(count for _, _, count in ack["ranges"]) == len(ack["ids"])
        for p, first, count in ack["ranges"]:
            want = [x for x, q in zip(ack["ids"], expected, strict=True) if q == p]
            assert by_partition[p][first : first + count] == want
            got = tables[p].slice(first, count).column("content").to_pylist()
            assert got == [content(x) for x in want]


@pytest.mark.slow
def test_acknowledged_records_survive_sigkill(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("FLUVIAL_CRASH_SEED", "0")) or None)
    acks: list[dict] = []
    started = time.monotonic()
    for round_no in range(5):
        acks += run_round(tmp_path, base=round_no * 10_000_000, rng=rng)
        check(tmp_path, acks)  # a reader sees every ack, even before recovery
        if time.monotonic() - started > 20:
            break
    with EmbeddedLog(tmp_path, fsync="batch") as log:  # a writer recovers the last tail
        log.append("t", pa.table({"id": [-1], "key": ["x"], "content": ["last"]}))
        assert log.verify() == []
    check(tmp_path, acks)
    assert len(acks) >= 15
