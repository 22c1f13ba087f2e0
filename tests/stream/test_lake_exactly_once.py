"""Exactly-once into the lake across crashes: ``fluvial stream run`` writing two lake tables
is SIGKILLed right after a checkpoint, in the middle of a commit and at random polls, then
restarted with ``--from checkpoint`` until it finishes; each table must equal an
uninterrupted run and DuckDB batch over the same input, with no row twice."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from fluvial.lake import open_lake
from fluvial.project import Project
from fluvial.stream.checkpoint import CheckpointStore
from fluvial.stream.connectors.base import CONNECTORS
from fluvial.stream.job import load_job
from fluvial.stream.runtime import PAUSE_ENV, run_job

ENTRY = "fluvial.stream.connectors.lake:LakeSink"
JOB = "lake_job"
TABLES = {"agg": "curated.page_windows", "filt": "refined.big_clicks"}
BASE_MS = int(dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC).timestamp() * 1000)
INPUT = pa.schema(
    [
        ("user_id", pa.string()),
        ("page", pa.string()),
        ("amount", pa.int64()),
        ("ts", pa.timestamp("ms")),
    ]
)
# until the registry has the entry, the subprocess registers it at start-up
SITECUSTOMIZE = f"""from fluvial.stream.connectors.base import CONNECTORS
CONNECTORS["sink"].setdefault("lake", {ENTRY!r})
"""


@pytest.fixture(autouse=True)
def lake_connector() -> Iterator[None]:
    added = "lake" not in CONNECTORS["sink"]
    CONNECTORS["sink"].setdefault("lake", ENTRY)
    try:
        yield
    finally:
        if added:
            CONNECTORS["sink"].pop("lake", None)


def make_input(n: int, seed: int) -> pa.Table:
    """Rows ~100 ms apart, out of order by under a second (less than the watermark delay)."""
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


def make_project(root: Path, data: pa.Table) -> tuple[Project, Path]:
    """A project whose ``clicks`` topic (2 partitions) holds *data*, and the job file."""
    project = Project.init(root)
    with project.open_log() as log:
        log.create_topic("clicks", 2, schema=INPUT)
        half = data.num_rows // 2
        for p, part in enumerate((data.slice(0, half), data.slice(half))):
            for start in range(0, part.num_rows, 100):
                log.append("clicks", part.slice(start, 100), partition=p)
    sql = f"""SET 'execution.checkpointing.interval' = '200 ms';
SET 'table.exec.mini-batch.size' = '60';
CREATE TABLE clicks (
  user_id STRING, page STRING, amount BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH ('connector' = 'fluvial', 'topic' = 'clicks', 'scan.startup.mode' = 'earliest-offset');
CREATE TABLE agg (window_start TIMESTAMP(3), page STRING, n BIGINT, total BIGINT)
WITH ('connector' = 'lake', 'table' = '{TABLES["agg"]}', 'time-column' = 'window_start');
CREATE TABLE filt (user_id STRING, page STRING, amount BIGINT, ts TIMESTAMP(3))
WITH ('connector' = 'lake', 'table' = '{TABLES["filt"]}', 'time-column' = 'ts');
INSERT INTO agg SELECT window_start, page, COUNT(*), SUM(amount)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, page;
INSERT INTO filt SELECT user_id, page, amount, ts FROM clicks WHERE amount >= 50;
"""
    path = root / f"{JOB}.sql"
    path.write_text(sql, encoding="utf-8")
    return project, path


def _rows(table: pa.Table) -> Counter[tuple[Any, ...]]:
    return Counter(zip(*(table[c].to_pylist() for c in table.column_names), strict=True))


def lake_contents(project: Project) -> dict[str, Counter[tuple[Any, ...]]]:
    with open_lake(project) as lake:
        return {key: _rows(lake.table(name).scan().to_arrow()) for key, name in TABLES.items()}


def duckdb_reference(data: pa.Table) -> dict[str, Counter[tuple[Any, ...]]]:
    """What the job computes, as batch SQL (independent of the engine)."""
    con = duckdb.connect()
    con.register("clicks", data)
    agg = con.sql(
        "SELECT time_bucket(INTERVAL 10 SECOND, ts)::TIMESTAMP AS ws, page, COUNT(*) AS n, "
        "SUM(amount)::BIGINT AS total FROM clicks GROUP BY ALL"
    ).to_arrow_table()
    filt = con.sql("SELECT * FROM clicks WHERE amount >= 50").to_arrow_table()
    us = pa.timestamp("us")  # what Iceberg stores
    agg = agg.set_column(0, "ws", agg["ws"].cast(us))
    filt = filt.set_column(3, "ts", filt["ts"].cast(us))
    return {"agg": _rows(agg), "filt": _rows(filt)}


class Killer:
    """Runs ``fluvial stream run`` in a subprocess and SIGKILLs it at a ``[pause]`` line."""

    def __init__(self, project: Project, path: Path, hook_dir: Path) -> None:
        self.project, self.path = project, path
        hook_dir.mkdir(exist_ok=True)
        (hook_dir / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
        pythonpath = os.pathsep.join(p for p in (str(hook_dir), os.environ.get("PYTHONPATH")) if p)
        self.env = {
            **os.environ,
            "PYTHONPATH": pythonpath,
            PAUSE_ENV: "poll=0.01,checkpointed=0.02,committing=0.01",
        }

    def run(self, resume: bool, trigger: tuple[str, int] | None) -> tuple[int, str]:
        cmd = [sys.executable, "-m", "fluvial", "stream", "run", str(self.path)]
        cmd += ["--project", str(self.project.root), "--until-idle"]
        if resume:
            cmd += ["--from", "checkpoint"]
        proc = subprocess.Popen(
            cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=self.env
        )
        assert proc.stderr is not None
        seen, lines = 0, []
        timer = threading.Timer(60, proc.kill)  # never hang the suite
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


def kill_and_restart(killer: Killer, triggers: list[tuple[str, int]]) -> list[int]:
    store = CheckpointStore(killer.project.data_dir / "stream" / JOB / "checkpoints")
    codes = []
    for trigger in [*triggers, None, None]:
        code, err = killer.run(store.latest() is not None, trigger)
        codes.append(code)
        if code == 0:
            return codes
        assert code == -signal.SIGKILL, err
    raise AssertionError(f"the job never finished: exit codes {codes}")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigkill_then_restart_writes_the_lake_exactly_once(tmp_path: Path) -> None:
    rnd = random.Random(int.from_bytes(os.urandom(4), "little"))
    seed = rnd.randrange(1 << 16)
    data = make_input(4000, seed)
    project, path = make_project(tmp_path / "killed", data)
    triggers = [
        ("checkpointed", rnd.randint(1, 3)),  # checkpoint durable, no table committed
        ("committing", rnd.randint(2, 4)),  # one table committed, the other not
        ("poll", rnd.randint(2, 12)),  # anywhere
        ("committing", 1),  # the redo of a restart is itself killed
    ]
    killer = Killer(project, path, tmp_path / "hook")
    codes = kill_and_restart(killer, triggers)
    assert codes.count(-signal.SIGKILL) >= 3, codes
    got = lake_contents(project)

    reference_project, reference_path = make_project(tmp_path / "reference", data)
    run_job(load_job(reference_path), project=reference_project, until_idle=True)
    uninterrupted = lake_contents(reference_project)
    batch = duckdb_reference(data)
    for key in TABLES:
        assert sum(got[key].values()) > 0
        assert got[key] == uninterrupted[key], f"{key} (seed {seed}, triggers {triggers})"
        assert got[key] == batch[key], f"{key} vs DuckDB (seed {seed})"
    with open_lake(project) as lake:  # one snapshot per committed checkpoint, none twice
        for name in TABLES.values():
            ids = [
                s.summary["fluvial.sink.checkpoint"]  # type: ignore[index]
                for s in lake.table(name).snapshots()
            ]
            assert len(ids) == len(set(ids)) > 1, (name, ids)
