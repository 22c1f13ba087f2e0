"""The archiver: every record of the topics in the raw zone exactly once, across crashes."""

from __future__ import annotations

import collections
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pytest

from fluvial.lake import Archiver, Lake, committed_offsets, open_lake
from fluvial.lake.archive import FROM_KEY, TO_KEY, TOPIC_KEY
from fluvial.log import EventLog
from fluvial.project import Project

from .conftest import make_events, make_failed


def _ids(table: pa.Table) -> collections.Counter[str]:
    return collections.Counter(table.column("event_id").to_pylist())


def _fill(log: EventLog, batches: int, size: int, seed: int = 0) -> None:
    log.create_topic("events", exist_ok=True)
    for i in range(batches):
        log.append("events", make_events(size, seed=seed * 1000 + i), key="user_id")


def _check_exactly_once(lake: Lake, log: EventLog) -> None:
    """raw.events holds each logged event once, and the offsets chain without gaps."""
    logged = log.snapshot("events")
    archived = lake.table("raw.events").scan().to_arrow()
    assert _ids(archived) == _ids(logged)
    assert max(_ids(archived).values()) == 1
    # the row at each (partition, offset) is the log's row at that position
    key = lambda t: sorted(  # noqa: E731
        zip(
            t["_partition"].to_pylist(),
            t["_offset"].to_pylist(),
            t["event_id"].to_pylist(),
            strict=True,
        )
    )
    assert key(archived) == key(logged)


def _offset_chain(
    lake: Lake, topic: str, table: str
) -> list[tuple[dict[str, int], dict[str, int]]]:
    t = lake.table(table)
    chain = []
    for snap in sorted(t.metadata.snapshots, key=lambda s: s.sequence_number or 0):
        assert snap.summary is not None
        if snap.summary[TOPIC_KEY] == topic:
            chain.append((json.loads(snap.summary[FROM_KEY]), json.loads(snap.summary[TO_KEY])))
    return chain


def test_archives_both_topics_with_offsets_in_each_commit(lake_project: Project) -> None:
    with open_lake(lake_project) as lake, lake_project.open_log() as log:
        _fill(log, 4, 2_500)
        log.create_topic("events_failed", exist_ok=True)
        log.append("events_failed", make_failed(300))
        archiver = Archiver(lake, log, settings=lake_project.settings, buffer_records=3_000)
        stats = archiver.run(until_idle=True)
        assert stats.records == {"events": 10_000, "events_failed": 300}
        assert stats.commits["events"] >= 4  # the buffer forced several commits
        _check_exactly_once(lake, log)
        failed = lake.table("raw.events_failed").scan().to_arrow()
        assert sorted(failed["payload"].to_pylist()) == sorted(
            log.snapshot("events_failed")["payload"].to_pylist()
        )
        # each commit covers the range right after the previous one, up to the end
        chain = _offset_chain(lake, "events", "raw.events")
        assert chain[0][0] == {"0": 0, "1": 0, "2": 0}
        for (_, prev_to), (next_from, _) in itertools.pairwise(chain):
            assert next_from == prev_to
        ends = {str(p): o for p, o in log.topic("events").end_offsets.items()}
        assert chain[-1][1] == ends
        assert (
            committed_offsets(lake.table("raw.events"), "events") == log.topic("events").end_offsets
        )


def test_restart_resumes_from_the_table_not_from_a_group(lake_project: Project) -> None:
    with open_lake(lake_project) as lake, lake_project.open_log() as log:
        _fill(log, 2, 1_000)
        Archiver(lake, log, settings=lake_project.settings).run(until_idle=True)
        # a consumer group far ahead must not matter: the archiver reads the table
        log.commit("archiver", "events", log.topic("events").end_offsets)
        _fill(log, 2, 1_000, seed=1)
        # a crashed run: read and buffered, never committed
        crashed = Archiver(lake, log, settings=lake_project.settings)
        crashed._lanes[0].poll()
        assert crashed._lanes[0].buffered_rows > 0
        stats = Archiver(lake, log, settings=lake_project.settings).run(until_idle=True)
        assert stats.records["events"] == 2_000
        _check_exactly_once(lake, log)
        again = Archiver(lake, log, settings=lake_project.settings).run(until_idle=True)
        assert again.records == {}


def test_a_concurrent_archiver_is_detected_not_duplicated(lake_project: Project) -> None:
    with open_lake(lake_project) as lake, lake_project.open_log() as log:
        _fill(log, 1, 500)
        Archiver(lake, log, settings=lake_project.settings).run(until_idle=True)
        _fill(log, 3, 1_000, seed=2)
        slow = Archiver(lake, log, settings=lake_project.settings, poll_records=1_000)
        slow._lanes[0].poll()  # buffers offsets another archiver will commit first
        Archiver(lake, log, settings=lake_project.settings).run(until_idle=True)
        slow.run(until_idle=True)
        assert slow.stats.conflicts >= 1
        _check_exactly_once(lake, log)


ARCHIVER = textwrap.dedent(
    """
    import sys
    from fluvial.lake import Archiver, open_lake
    from fluvial.project import Project

    project = Project(sys.argv[1], env={"FLUVIAL_LOG__FSYNC": "never"})
    with open_lake(project) as lake, project.open_log() as log:
        print("ready", flush=True)
        Archiver(
            lake, log, settings=project.settings, buffer_records=700, buffer_seconds=0.05,
            poll_records=300,
        ).run()
    """
)


@pytest.mark.slow
def test_sigkill_while_events_arrive_loses_and_repeats_nothing(lake_project: Project) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    kills = 0
    with lake_project.open_log() as log:
        log.create_topic("events", exist_ok=True)
        for round_ in range(4):
            proc = subprocess.Popen(
                [sys.executable, "-c", ARCHIVER, str(lake_project.root)],
                stdout=subprocess.PIPE,
                env=env,
                text=True,
            )
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            deadline = time.monotonic() + 1.0 + 0.3 * round_
            batch = 0
            while time.monotonic() < deadline:  # events keep arriving while it commits
                log.append("events", make_events(400, seed=round_ * 100 + batch), key="user_id")
                batch += 1
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            assert proc.returncode == -signal.SIGKILL
            kills += 1
        log.append("events", make_events(123, seed=999), key="user_id")
    assert kills == 4
    with open_lake(lake_project) as lake, lake_project.open_log() as log:
        partial = lake.table("raw.events").scan().to_arrow().num_rows
        assert 0 < partial < log.topic("events").records  # killed mid-stream, not idle
        Archiver(lake, log, settings=lake_project.settings).run(until_idle=True)
        _check_exactly_once(lake, log)
        # several commits happened between the kills
        assert len(_offset_chain(lake, "events", "raw.events")) > 4


def test_without_archive_snapshots_the_rows_say_where_to_resume(lake_project: Project) -> None:
    with open_lake(lake_project) as lake, lake_project.open_log() as log:
        _fill(log, 2, 1_000)
        Archiver(lake, log, settings=lake_project.settings).run(until_idle=True)
        # as if expiry removed every archive snapshot: a rewrite without the properties
        table = lake.table("raw.events")
        table.overwrite(table.scan().to_arrow())
        current = table.current_snapshot()
        assert current is not None
        old = [s.snapshot_id for s in table.snapshots() if s.snapshot_id != current.snapshot_id]
        table.maintenance.expire_snapshots().by_ids(old).commit()
        assert committed_offsets(lake.table("raw.events"), "events") is None
        _fill(log, 1, 500, seed=3)
        stats = Archiver(lake, log, settings=lake_project.settings).run(until_idle=True)
        assert stats.records["events"] == 500
        _check_exactly_once(lake, log)
