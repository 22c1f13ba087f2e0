"""Exactly-once across crashes: SIGKILL a running job at random moments and right after a
checkpoint / in the middle of a commit, restart it with ``--from checkpoint`` until it
finishes, and compare every sink with an uninterrupted run and with DuckDB."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fluvial.errors import PipelineError
from fluvial.project import Project
from fluvial.stream.checkpoint import FORMAT_VERSION, CheckpointStore
from fluvial.stream.connectors.filesystem import FileSink
from fluvial.stream.connectors.fluvial import LogSink
from fluvial.stream.job import load_job
from fluvial.stream.runtime import PAUSE_ENV, run_job

BASE_MS = int(dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC).timestamp() * 1000)
INPUT = pa.schema(
    [
        ("user_id", pa.string()),
        ("page", pa.string()),
        ("amount", pa.int64()),
        ("ts", pa.timestamp("ms")),
    ]
)
SINKS = ("agg_fs", "filt_fs", "agg_topic", "filt_topic")
JOB = "clicks_job"


def make_input(n: int, seed: int) -> pa.Table:
    """Rows about 100 ms apart, each partition out of order by under a second (less than
    the watermark delay, so no row is late however the input is batched)."""
    rng = np.random.default_rng(seed)
    ts = BASE_MS + np.arange(n) * 100 + rng.integers(0, 900, n)
    return pa.table(
        {
            "user_id": pa.array([f"u{i}" for i in rng.integers(0, 40, n)]),
            "page": pa.array([f"/p/{i}" for i in rng.integers(0, 5, n)]),
            "amount": pa.array(rng.integers(0, 100, n), pa.int64()),
            "ts": pa.array(ts, pa.timestamp("ms")),
        },
        schema=INPUT,
    )


def make_project(root: Path, data: pa.Table, mini_batch: int = 60) -> tuple[Project, Path]:
    """A project whose ``clicks`` topic (2 partitions) holds *data*, and the job file."""
    project = Project.init(root)
    with project.open_log() as log:
        log.create_topic("clicks", 2, schema=INPUT)
        half = data.num_rows // 2
        for p, part in enumerate((data.slice(0, half), data.slice(half))):
            for start in range(0, part.num_rows, 100):  # many small appends, like a feed
                log.append("clicks", part.slice(start, 100), partition=p)
    out = root / "out"
    source = "WITH ('connector' = 'fluvial', 'topic' = 'clicks', 'scan.startup.mode' = 'earliest-offset')"
    agg_cols = "(window_start TIMESTAMP(3), page STRING, n BIGINT, total BIGINT)"
    filt_cols = "(user_id STRING, page STRING, amount BIGINT, ts TIMESTAMP(3))"
    agg_query = """SELECT window_start, page, COUNT(*), SUM(amount)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, page"""
    filt_query = "SELECT user_id, page, amount, ts FROM clicks WHERE amount >= 50"
    sql = f"""SET 'execution.checkpointing.interval' = '200 ms';
SET 'table.exec.mini-batch.size' = '{mini_batch}';
CREATE TABLE clicks (
  user_id STRING, page STRING, amount BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) {source};
CREATE TABLE agg_fs {agg_cols} WITH ('connector' = 'filesystem', 'path' = '{out}/agg', 'format' = 'parquet');
CREATE TABLE filt_fs {filt_cols} WITH ('connector' = 'filesystem', 'path' = '{out}/filt', 'format' = 'parquet');
CREATE TABLE agg_topic {agg_cols} WITH ('connector' = 'fluvial', 'topic' = 'agg_out');
CREATE TABLE filt_topic {filt_cols} WITH ('connector' = 'fluvial', 'topic' = 'filt_out');
INSERT INTO agg_fs {agg_query};
INSERT INTO filt_fs {filt_query};
INSERT INTO agg_topic {agg_query};
INSERT INTO filt_topic {filt_query};
"""
    path = root / f"{JOB}.sql"
    path.write_text(sql, encoding="utf-8")
    return project, path


def _rows(table: pa.Table) -> Counter[tuple[Any, ...]]:
    return Counter(zip(*(table[c].to_pylist() for c in table.column_names), strict=True))


def sink_contents(project: Project) -> dict[str, Counter[tuple[Any, ...]]]:
    """Every sink's committed rows as a multiset (visible part files; topic rows)."""
    got: dict[str, Counter[tuple[Any, ...]]] = {}
    for name, folder in (("agg_fs", "agg"), ("filt_fs", "filt")):
        files = sorted((project.root / "out" / folder).glob("part-*.parquet"))
        got[name] = sum((_rows(pq.read_table(f)) for f in files), Counter())
    with project.open_log() as log:
        for name, topic in (("agg_topic", "agg_out"), ("filt_topic", "filt_out")):
            snap = log.snapshot(topic)
            got[name] = _rows(snap.drop_columns([c for c in snap.column_names if c[0] == "_"]))
    return got


def duckdb_reference(data: pa.Table) -> dict[str, Counter[tuple[Any, ...]]]:
    """What the job computes, as batch SQL (independent of the engine)."""
    con = duckdb.connect()
    con.register("clicks", data)
    agg = con.sql(
        "SELECT time_bucket(INTERVAL 10 SECOND, ts) AS ws, page, COUNT(*) AS n, "
        "SUM(amount)::BIGINT AS total FROM clicks GROUP BY ALL"
    ).to_arrow_table()
    agg = agg.set_column(0, "ws", agg["ws"].cast(pa.timestamp("ms")))
    filt = con.sql("SELECT * FROM clicks WHERE amount >= 50").to_arrow_table()
    filt = filt.set_column(3, "ts", filt["ts"].cast(pa.timestamp("ms")))
    return {
        "agg_fs": _rows(agg),
        "agg_topic": _rows(agg),
        "filt_fs": _rows(filt),
        "filt_topic": _rows(filt),
    }


def run_uninterrupted(tmp_path: Path, data: pa.Table) -> dict[str, Counter[tuple[Any, ...]]]:
    project, path = make_project(tmp_path / "reference", data)
    run_job(load_job(path), project=project, until_idle=True)
    return sink_contents(project)


# -------------------------------------------------------------------------- subprocess runs


class Killer:
    """Runs ``fluvial stream run`` in a subprocess and SIGKILLs it at a trigger line."""

    def __init__(self, project: Project, path: Path) -> None:
        self.project, self.path = project, path
        self.env = {**os.environ, PAUSE_ENV: "poll=0.01,checkpointed=0.02,committing=0.01"}

    def run(self, resume: bool, trigger: tuple[str, int] | None) -> tuple[int, str]:
        """Run once; kill at the *n*-th ``[pause] <step>`` line if *trigger* is given.
        Returns the exit code and stderr."""
        cmd = [sys.executable, "-m", "fluvial", "stream", "run", str(self.path)]
        cmd += ["--project", str(self.project.root), "--until-idle"]
        if resume:
            cmd += ["--from", "checkpoint"]
        proc = subprocess.Popen(
            cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=self.env
        )
        assert proc.stderr is not None
        seen, lines = 0, []
        timer = threading.Timer(30, proc.kill)  # never hang the suite
        timer.start()
        try:
            for line in proc.stderr:
                lines.append(line)
                if trigger and line.startswith(f"[pause] {trigger[0]} "):
                    seen += 1
                    if seen == trigger[1]:
                        proc.send_signal(signal.SIGKILL)
                        break
            proc.stderr.read()
            code = proc.wait()
        finally:
            timer.cancel()
        return code, "".join(lines)


def kill_and_restart(project: Project, path: Path, triggers: list[tuple[str, int]]) -> list[int]:
    """Run with every trigger in turn (restarting from the newest checkpoint once there is
    one), then without, until the job finishes. Returns the exit codes."""
    killer = Killer(project, path)
    store = CheckpointStore(project.data_dir / "stream" / JOB / "checkpoints")
    codes = []
    for trigger in [*triggers, None, None]:
        code, err = killer.run(store.latest() is not None, trigger)
        codes.append(code)
        if code == 0:
            return codes
        assert code == -signal.SIGKILL, err
    raise AssertionError(f"the job never finished: exit codes {codes}")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigkill_at_random_moments_then_restart_is_exactly_once(tmp_path: Path) -> None:
    rnd = random.Random(int.from_bytes(os.urandom(4), "little"))
    seed = rnd.randrange(1 << 16)
    data = make_input(3000, seed)
    project, path = make_project(tmp_path / "killed", data)
    triggers = [
        ("checkpointed", rnd.randint(1, 3)),  # checkpoint durable, no sink committed
        ("committing", rnd.randint(2, 4)),  # some pipelines' sinks committed, others not
        ("poll", rnd.randint(3, 40)),  # anywhere
        ("committing", 1),  # the first commit of a restart: the redo itself is killed
        ("poll", rnd.randint(3, 40)),
    ]
    codes = kill_and_restart(project, path, triggers)
    assert codes.count(-signal.SIGKILL) >= 3, codes  # it really was killed several times
    got = sink_contents(project)
    expected = run_uninterrupted(tmp_path, data)
    reference = duckdb_reference(data)
    for sink in SINKS:
        assert got[sink] == expected[sink], f"{sink} (seed {seed}, triggers {triggers})"
        assert got[sink] == reference[sink], f"{sink} vs DuckDB (seed {seed})"
        assert sum(got[sink].values()) > 0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigkill_after_each_of_several_checkpoints(tmp_path: Path) -> None:
    data = make_input(2000, 11)
    project, path = make_project(tmp_path / "killed", data)
    store = CheckpointStore(project.data_dir / "stream" / JOB / "checkpoints")
    codes = kill_and_restart(
        project, path, [("checkpointed", 2), ("checkpointed", 2), ("committing", 3)]
    )
    assert codes[:3] == [-signal.SIGKILL] * 3 and codes[-1] == 0
    assert store.latest() is not None and store.latest() >= 5  # several checkpoints
    got = sink_contents(project)
    assert got == duckdb_reference(data)


# -------------------------------------------------------------------------- in-process crashes


class Crash(Exception):
    """Stands for the process dying."""


def test_restore_redoes_an_interrupted_commit_without_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_input(1500, 5)
    project, path = make_project(tmp_path / "crashed", data, mini_batch=100)
    job = load_job(path)
    monkeypatch.setenv(PAUSE_ENV, "poll=0.04")  # slow enough for several checkpoints
    real_write_state = LogSink._write_state
    real_file_commit = FileSink.commit
    calls = Counter[str]()

    def log_state(self: LogSink, checkpoint_id: int) -> None:
        calls["log"] += 1
        if calls["log"] == 3:  # rows appended to the topic, the commit not yet recorded
            raise Crash("killed between append and record")
        real_write_state(self, checkpoint_id)

    def file_commit(self: FileSink, checkpoint_id: int) -> None:
        calls["file"] += 1
        if calls["file"] == 4:  # staged, not renamed into place
            raise Crash("killed before the rename")
        real_file_commit(self, checkpoint_id)

    monkeypatch.setattr(LogSink, "_write_state", log_state)
    monkeypatch.setattr(FileSink, "commit", file_commit)
    with pytest.raises(Crash):
        run_job(job, project=project, until_idle=True)
    monkeypatch.undo()
    store = CheckpointStore(project.data_dir / "stream" / JOB / "checkpoints")
    interrupted = store.latest()
    assert interrupted is not None
    meta = json.loads((store.root / str(interrupted) / "meta.json").read_text())
    assert meta["format"] == FORMAT_VERSION
    assert any(p["sink"]["rows"] for p in meta["pipelines"].values())  # rows await commit
    before = sink_contents(project)
    result = run_job(job, project=project, until_idle=True, from_checkpoint=True)
    assert result.checkpoint_id is not None and result.checkpoint_id > interrupted
    got = sink_contents(project)
    assert got == duckdb_reference(data)
    assert got != before  # the restart did add the interrupted checkpoint's rows
    # the topic sink recorded the redone checkpoint once: no id appears twice
    parts = sorted(p.name for p in (project.root / "out" / "agg").glob("part-*"))
    assert len(parts) == len(set(parts))


def test_a_fresh_run_after_checkpoints_uses_new_ids(tmp_path: Path) -> None:
    """Without --from checkpoint the job starts over, and its checkpoint ids continue
    (reusing one would make the sinks skip the new rows as already committed)."""
    data = make_input(300, 3)
    project, path = make_project(tmp_path / "twice", data)
    job = load_job(path)
    first = run_job(job, project=project, until_idle=True)
    second = run_job(job, project=project, until_idle=True)
    assert first.checkpoint_id is not None and second.checkpoint_id is not None
    assert second.checkpoint_id > first.checkpoint_id
    got = sink_contents(project)
    once = duckdb_reference(data)
    assert got == {k: Counter({r: 2 * n for r, n in v.items()}) for k, v in once.items()}


def test_checkpoint_of_another_format_is_refused(tmp_path: Path) -> None:
    data = make_input(200, 1)
    project, path = make_project(tmp_path / "fmt", data)
    job = load_job(path)
    run_job(job, project=project, until_idle=True)
    store = CheckpointStore(project.data_dir / "stream" / JOB / "checkpoints")
    latest = store.latest()
    assert latest is not None and len(store.ids()) <= 3  # older ones are dropped
    meta_path = store.root / str(latest) / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert not list(store.root.rglob("*.pickle"))
    meta["format"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PipelineError, match="expected checkpoint format 1, found 99"):
        run_job(job, project=project, until_idle=True, from_checkpoint=True)
