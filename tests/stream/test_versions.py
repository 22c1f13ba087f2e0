"""Kappa: replaying a pipeline from the log into a new version, switching, rolling back.

The pipeline writes three outputs (a store table, a topic, a Parquet folder) and a
late-events topic. The first run's outputs are checked against DuckDB's GROUP BY over the
logged rows that were not late (an independent reference); the replay must then give the
very same rows in every output, under the next version's names, while readers keep using
the first version until the switch.
"""

from __future__ import annotations

import fcntl
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from fluvial.cli import lambda_kappa
from fluvial.errors import NotFoundError, PipelineError, UsageError
from fluvial.project import Project
from fluvial.serve.store import open_store
from fluvial.stream.job import load_job
from fluvial.stream.runtime import PipelineStats, run_job
from fluvial.stream.sql import parse_script
from fluvial.stream.versions import (
    current_table,
    current_version,
    job_outputs,
    load_versions,
    replay,
    resolve_job,
    rollback,
    switch,
    versioned_script,
)

T0_MS = 1_780_000_000_000
CLICKS = pa.schema([("page", pa.string()), ("user_id", pa.string()), ("ts", pa.timestamp("ms"))])


def pipeline(out_dir: Path) -> str:
    return f"""
SET 'table.exec.mini-batch.size' = '250';

CREATE TABLE clicks (
  page STRING, user_id STRING, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH ('connector' = 'fluvial', 'topic' = 'clicks',
        'fluvial.late-events.topic' = 'clicks_late');

CREATE TABLE page_counts (
  window_start TIMESTAMP(3), page STRING, n BIGINT, users BIGINT,
  PRIMARY KEY (window_start, page) NOT ENFORCED
) WITH ('connector' = 'store', 'table' = 'page_counts');

CREATE TABLE page_counts_log (window_start TIMESTAMP(3), page STRING, n BIGINT)
WITH ('connector' = 'fluvial', 'topic' = 'page_counts_log');

CREATE TABLE page_counts_files (window_start TIMESTAMP(3), page STRING, n BIGINT)
WITH ('connector' = 'filesystem', 'path' = '{out_dir}', 'format' = 'parquet');

INSERT INTO page_counts
SELECT window_start, page, COUNT(*), COUNT(DISTINCT user_id)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, page;

INSERT INTO page_counts_log
SELECT window_start, page, COUNT(*)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, page;

INSERT INTO page_counts_files
SELECT window_start, page, COUNT(*)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, page;
"""


def clicks(n: int = 3_000, seed: int = 5) -> pa.Table:
    """Clicks 100 ms apart, each up to 3 s early, and 2% of them 30 s early: those arrive
    after the watermark passed their window."""
    rng = np.random.default_rng(seed)
    ts = T0_MS + np.arange(n) * 100 - rng.integers(0, 3_000, n)
    ts -= np.where(rng.random(n) < 0.02, 30_000, 0)
    return pa.table(
        {
            "page": pa.array(np.array(["/", "/a", "/b", "/c"])[rng.integers(0, 4, n)]),
            "user_id": pa.array(np.char.add("u", rng.integers(0, 25, n).astype(str))),
            "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("ms")),
        },
        schema=CLICKS,
    )


def topic_rows(project: Project, topic: str) -> Counter[tuple[object, ...]]:
    with project.open_log() as log:
        table = log.snapshot(topic)
    names = [c for c in table.column_names if not c.startswith("_")]
    return Counter(zip(*(table[c].to_pylist() for c in names), strict=True))


def store_rows(project: Project, table: str) -> list[dict[str, object]]:
    with open_store(project) as store:
        return store.scan(table).to_pylist()


def file_rows(folder: Path) -> Counter[tuple[object, ...]]:
    files = sorted(folder.rglob("*.parquet"))
    assert files, f"no Parquet files under {folder}"
    table = pa.concat_tables(pq.read_table(f) for f in files)
    return Counter(zip(*(table[c].to_pylist() for c in table.column_names), strict=True))


@dataclass
class Replayed:
    project: Project
    out: Path
    first: dict[str, object]
    seen_during: list[str]


def _outputs(project: Project, version: int, out: Path) -> dict[str, object]:
    suffix = "" if version == 1 else f"__v{version}"
    return {
        "store": store_rows(project, f"page_counts{suffix}"),
        "topic": topic_rows(project, f"page_counts_log{suffix}"),
        "files": file_rows(Path(f"{out}{suffix}")),
        "late": topic_rows(project, f"clicks_late{suffix}"),
    }


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayed]:
    root = tmp_path_factory.mktemp("kappa") / "shop"
    Project.init(root)
    project = Project(root, env={"FLUVIAL_LOG__FSYNC": "never"})
    out = root / "data" / "out" / "page_counts"
    (root / "pipelines" / "page_counts.sql").write_text(pipeline(out), encoding="utf-8")
    with project.open_log() as log:
        log.create_topic("clicks", 1, schema=CLICKS)  # one partition: a deterministic order
        log.append("clicks", clicks())
    job = load_job(root / "pipelines" / "page_counts.sql")
    run_job(job, project=project, until_idle=True)
    first = _outputs(project, 1, out)
    seen: list[str] = []

    def during(stats: list[PipelineStats]) -> None:
        seen.append(current_table(project, "page_counts"))

    result = replay(project, "page_counts", on_progress=during)
    assert (result.version, result.previous, result.switched) == (2, 1, True)
    yield Replayed(project, out, first, seen)


def test_first_run_matches_duckdb(replayed: Replayed) -> None:
    """The reference: every logged click that is not in the late topic, grouped."""
    project = replayed.project
    with project.open_log() as log:
        logged = log.snapshot("clicks").select(["page", "user_id", "ts"])
        late = log.snapshot("clicks_late").select(["page", "user_id", "ts"])
    assert 0 < late.num_rows < logged.num_rows
    con = duckdb.connect()
    con.register("logged", logged)
    con.register("late", late)
    want = con.sql(
        "SELECT time_bucket(INTERVAL 10 SECOND, ts) AS window_start, page, count(*) AS n, "
        "count(DISTINCT user_id) AS users FROM (SELECT * FROM logged EXCEPT ALL "
        "SELECT * FROM late) GROUP BY ALL ORDER BY window_start, page"
    ).to_arrow_table()
    assert replayed.first["store"] == want.to_pylist()


def test_replay_yields_the_same_outputs(replayed: Replayed) -> None:
    second = _outputs(replayed.project, 2, replayed.out)
    assert second == replayed.first
    # the first version is untouched (it stays available for rollback)
    assert _outputs(replayed.project, 1, replayed.out) == replayed.first


def test_readers_switch_only_when_the_replay_is_complete(replayed: Replayed) -> None:
    assert replayed.seen_during and set(replayed.seen_during) == {"page_counts"}
    project = replayed.project
    assert current_table(project, "page_counts") == "page_counts__v2"
    assert current_table(project, "page_counts_log", "topic") == "page_counts_log__v2"
    assert current_table(project, "clicks_late", "topic") == "clicks_late__v2"
    assert current_table(project, str(replayed.out), "path") == f"{replayed.out}__v2"
    assert current_table(project, "clicks") == "clicks"  # a source is no output
    registry = json.loads(
        (project.data_dir / "stream" / "page_counts" / "versions.json").read_text()
    )
    assert registry["current"] == 2
    assert [(v["version"], v["job"], v["state"]) for v in registry["versions"]] == [
        (1, "page_counts", "ready"),
        (2, "page_counts__v2", "ready"),
    ]
    # version 2 has its own checkpoints: the first version's job is not disturbed
    assert (project.data_dir / "stream" / "page_counts__v2" / "checkpoints").is_dir()
    assert resolve_job(project, project.root / "pipelines" / "page_counts.sql").name == (
        "page_counts__v2"
    )


def test_rollback_and_switch(replayed: Replayed) -> None:
    project = replayed.project
    try:
        assert rollback(project, "page_counts").current == 1
        assert current_table(project, "page_counts") == "page_counts"
        with pytest.raises(UsageError, match="no ready version older"):
            rollback(project, "page_counts")
        assert switch(project, "page_counts", 2).current == 2
        with pytest.raises(NotFoundError, match="has no version 7"):
            switch(project, "page_counts", 7)
        with pytest.raises(NotFoundError, match="never replayed"):
            rollback(project, "other_job")
    finally:
        switch(project, "page_counts", 2)


def test_a_stopped_replay_leaves_readers_where_they_are(replayed: Replayed) -> None:
    project = replayed.project
    stop = threading.Event()
    stop.set()
    with pytest.raises(PipelineError, match="stopped before it caught up"):
        replay(project, "page_counts", stop=stop)
    versions = load_versions(project, "page_counts")
    assert versions is not None and versions.current == 2
    assert versions.get(3).state == "failed"
    with pytest.raises(UsageError, match="failed, not ready"):
        switch(project, "page_counts", 3)
    assert current_version(project, "page_counts") == 2


def test_one_replay_at_a_time(replayed: Replayed) -> None:
    project = replayed.project
    lock = project.data_dir / "stream" / "page_counts" / "versions.lock"
    with lock.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            with pytest.raises(UsageError, match="another process"):
                replay(project, "page_counts")
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def test_cli_versions_rollback_replay(replayed: Replayed) -> None:
    project = replayed.project
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root."""

    stream = typer.Typer()
    lambda_kappa.register_stream(stream)
    app.add_typer(stream, name="stream")
    runner = CliRunner()
    where = ["--project", str(project.root)]
    shown = runner.invoke(app, ["stream", "versions", "page_counts", "--json", *where])
    assert shown.exit_code == 0, shown.output
    (doc,) = json.loads(shown.stdout)
    assert doc["current"] == 2 and [v["state"] for v in doc["versions"]][:2] == ["ready"] * 2
    back = runner.invoke(app, ["stream", "rollback", "page_counts", "--to", "1", *where])
    assert back.exit_code == 0, back.output
    assert "version 1" in back.stdout and current_table(project, "page_counts") == "page_counts"
    again = runner.invoke(app, ["stream", "replay", "page_counts", "--json", *where])
    assert again.exit_code == 0, again.output
    done = json.loads(again.stdout)
    # the next version after every one made so far (other tests of the module may have
    # added some on this worker: a stopped replay leaves a failed one)
    newest = max(v["version"] for v in doc["versions"])
    assert done["version"] == newest + 1 and done["switched"] and done["previous"] == 1
    assert store_rows(project, f"page_counts__v{done['version']}") == replayed.first["store"]
    switch(project, "page_counts", 2)


def test_versioned_script_renames_outputs_only(tmp_path: Path) -> None:
    script = parse_script(
        """
CREATE TABLE src (a INT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
WITH ('connector' = 'fluvial', 'topic' = 'src', 'fluvial.late-events.topic' = 'late');
CREATE TABLE to_lake (a INT) WITH ('connector' = 'lake', 'table' = 'curated.a');
CREATE TABLE to_print (a INT) WITH ('connector' = 'print');
INSERT INTO to_lake SELECT a FROM src;
INSERT INTO to_print SELECT a FROM src;
"""
    )
    renamed = versioned_script(script, 3).tables
    assert renamed["src"].options["topic"] == "src"
    assert renamed["src"].options["fluvial.late-events.topic"] == "late__v3"
    assert renamed["to_lake"].options["table"] == "curated.a__v3"
    assert renamed["to_print"].options == {"connector": "print"}
    assert [(o.kind, o.name, o.physical) for o in job_outputs(script, 3)] == [
        ("topic", "late", "late__v3"),
        ("lake", "curated.a", "curated.a__v3"),
    ]
    assert versioned_script(script, 1).tables == script.tables
