"""``fluvial forget``: the reference project built end to end (log, archiver, batch build,
a store-sink pipeline), one user forgotten, and every table, store and file checked.

The proof of "no trace" is independent of forget's own matching: every file under the
data dir is decoded by format (Parquet, the log's Arrow IPC frames, DuckDB, SQLite, Avro
manifests) and every value searched for the ids, and every file's raw bytes are grepped.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from fluvial.batch import QualityHooks, run
from fluvial.batch.warehouse import warehouse_path
from fluvial.cli import main
from fluvial.events.ingest import Ingestor
from fluvial.examples.clickstream import load_catalogue
from fluvial.generate.clickstream import ClickstreamConfig, clickstream_batches
from fluvial.govern.audit import open_audit
from fluvial.govern.forget import forget
from fluvial.lake import Archiver, open_lake
from fluvial.lake.query import extension_path
from fluvial.log.embedded.segment import decode_body, scan_headers
from fluvial.project import Project
from fluvial.serve.store import open_store
from fluvial.stream.job import plan_text
from fluvial.stream.runtime import run_job

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
BUILT_AT = datetime(2026, 1, 20, 8, 0, tzinfo=UTC)

PIPELINE = """
CREATE TABLE events (
  event_id STRING, event_type STRING, event_time TIMESTAMP_LTZ(3),
  user_id STRING, anonymous_id STRING,
  WATERMARK FOR event_time AS event_time - INTERVAL '10' SECOND
) WITH ('connector' = 'fluvial', 'topic' = 'events');
CREATE TABLE last_events (
  event_id STRING, event_type STRING, user_id STRING, anonymous_id STRING,
  PRIMARY KEY (event_id) NOT ENFORCED
) WITH ('connector' = 'store', 'table' = 'last_events');
CREATE TABLE page_views (
  event_time TIMESTAMP(3), anonymous_id STRING, user_id STRING
) WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'json');
INSERT INTO last_events SELECT event_id, event_type, user_id, anonymous_id FROM events;
INSERT INTO page_views SELECT event_time, anonymous_id, user_id FROM events
WHERE event_type = 'page_view';
"""


def build(root: Path, events: int, users: int) -> Project:
    """The clickstream project: events through the log, archived, built, and a pipeline
    into the store."""
    project = Project.init(root, example="clickstream")
    config = ClickstreamConfig(events=events, seed=5, users=users, days=10, start_ms=START_MS)
    with Ingestor.for_project(project) as ingestor:
        for batch in clickstream_batches(config):
            ingestor.ingest(batch.lines(), received_at_ms=START_MS + 11 * 86_400_000, app_id="demo")
    with open_lake(project) as lake, project.open_log() as log:
        Archiver(lake, log, settings=project.settings).run(until_idle=True)
    load_catalogue(project, exported_at=BUILT_AT)
    run(project, hooks=QualityHooks(project), now=BUILT_AT)
    sql = PIPELINE.replace("{out}", str(project.data_dir / "out" / "page_views"))
    job = plan_text(sql, source="last_events.sql")
    run_job(job, project=project, until_idle=True)  # checkpoints under the data dir
    return project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return build(tmp_path_factory.mktemp("forget") / "shop", events=4_000, users=60)


def log_events(project: Project) -> pa.Table:
    with project.open_log() as log:
        parts = []
        for info in log.list_topics():
            if info.name != "events":
                continue
            for p in info.partitions:
                parts.append(log.read("events", p.partition, p.start_offset, 10**7))
    return pa.concat_tables(parts)


def pick_user(project: Project) -> tuple[str, set[str]]:
    """A user with identified and anonymous events, on devices no one else used."""
    events = log_events(project)
    rows = events.select(["user_id", "anonymous_id"]).to_pylist()
    users_of: dict[str, set[str]] = {}
    for r in rows:
        if r["anonymous_id"] and r["user_id"]:
            users_of.setdefault(r["anonymous_id"], set()).add(r["user_id"])
    anonymous = Counter(r["anonymous_id"] for r in rows if r["user_id"] is None)
    best: tuple[int, str, set[str]] | None = None
    for user in sorted({r["user_id"] for r in rows if r["user_id"]}):
        devices = {a for a, us in users_of.items() if user in us}
        if any(len(users_of[d]) > 1 for d in devices):
            continue
        pre_login = sum(anonymous[d] for d in devices)
        if pre_login and (best is None or pre_login > best[0]):
            best = (pre_login, user, devices)
    assert best is not None
    return best[1], best[2]


def count_lake(project: Project) -> dict[str, int]:
    with open_lake(project) as lake:
        return {
            name: lake.table(name).scan().to_arrow().num_rows
            for name in lake.tables()
            if lake.table(name).current_snapshot() is not None
        }


def count_warehouse(project: Project) -> dict[str, int]:
    con = duckdb.connect(str(warehouse_path(project)), read_only=True)
    try:
        tables = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE schema_name = 'marts'"
        ).fetchall()
        return {
            f"{s}.{t}": con.execute(f'SELECT count(*) FROM "{s}"."{t}"').fetchone()[0]  # type: ignore[index]
            for s, t in tables
        }
    finally:
        con.close()


def count_store(project: Project) -> dict[str, int]:
    with open_store(project) as store:
        return {t.name: store.count(t.name) for t in store.tables()}


# ---------------------------------------------------------------- file scanning


def _values(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _values(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _values(v)
    elif isinstance(value, bytes):
        yield value.decode("utf-8", "replace")
    elif value is not None:
        yield str(value)


def decoded_values(path: Path) -> Iterator[str]:
    """Every value a file holds, decoded by its format (nothing for unknown formats)."""
    name = path.name
    if name.endswith(".parquet"):
        yield from _values(pq.read_table(path).to_pylist())
    elif name.endswith(".seg"):
        raw = path.read_bytes()
        fd = os.open(path, os.O_RDONLY)
        try:
            scan = scan_headers(fd, 0, len(raw), int(path.stem))
        finally:
            os.close(fd)
        for pos, header in zip(scan.positions, scan.headers, strict=True):
            body = pa.py_buffer(raw[pos + 40 : pos + 40 + header.body_bytes])
            yield from _values(decode_body(body).to_pylist())
    elif name.endswith(".arrow"):  # stream checkpoints: outboxes and operator state
        try:
            yield from _values(
                pa.ipc.open_file(pa.py_buffer(path.read_bytes())).read_all().to_pylist()
            )
        except pa.ArrowInvalid:
            pass  # an operator's own layout: the raw bytes are grepped
    elif name.endswith(".avro"):
        con = duckdb.connect()
        try:
            con.execute(f"LOAD '{extension_path('avro')}'")
            yield from _values(con.execute(f"SELECT * FROM read_avro('{path}')").fetchall())
        finally:
            con.close()
    elif name.endswith(".duckdb"):
        con = duckdb.connect(str(path), read_only=True)
        try:
            for s, t in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables()"
            ).fetchall():
                yield from _values(con.execute(f'SELECT * FROM "{s}"."{t}"').fetchall())
        finally:
            con.close()
    elif name.endswith(".db") or name.endswith(".sqlite"):
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                yield from _values(con.execute(f'SELECT * FROM "{t}"').fetchall())
        finally:
            con.close()


def traces(project: Project, ids: set[str]) -> list[str]:
    """Every file under the data dir that holds one of *ids*, and how it was found."""
    pattern = "(?<![A-Za-z0-9_-])(" + "|".join(map(re.escape, ids)) + ")(?![A-Za-z0-9_-])"
    text = re.compile(pattern)
    raw = re.compile(pattern.encode())
    found = []
    for path in sorted(project.data_dir.rglob("*")):
        if not path.is_file():
            continue
        if raw.search(path.read_bytes()):
            found.append(f"{path} (bytes)")
        if any(text.search(v) for v in decoded_values(path)):
            found.append(f"{path} (values)")
    return found


# ---------------------------------------------------------------- the test


def test_forget_leaves_no_trace_and_keeps_everyone_else(project: Project) -> None:
    user, devices = pick_user(project)
    ids = {user, *devices}
    assert traces(project, ids), "the scan must see the user before forget"
    lake_before, wh_before, store_before = (
        count_lake(project),
        count_warehouse(project),
        count_store(project),
    )
    events_before = log_events(project)

    # orphans in raw.events' folder, as a crashed writer leaves them: the one holding the
    # user must go, the other is left to maintenance
    with open_lake(project) as lake:
        raw = lake.table("raw.events")
        data = raw.scan(limit=200).to_arrow()
        location = Path(raw.location().removeprefix("file://")) / "data"
    holding = data.slice(0, 1).set_column(
        data.schema.get_field_index("user_id"), "user_id", pa.array([user])
    )
    orphan_user, orphan_other = location / "orphan-user.parquet", location / "orphan-other.parquet"
    pq.write_table(holding, orphan_user)
    others = data.filter(pc.invert(pc.is_in(data["user_id"], pa.array(sorted(ids)))))
    others = others.filter(pc.invert(pc.is_in(others["anonymous_id"], pa.array(sorted(ids)))))
    pq.write_table(others.slice(0, 5), orphan_other)
    for orphan in (orphan_user, orphan_other):
        os.utime(orphan, (1_700_000_000, 1_700_000_000))

    preview = forget(project, user, dry_run=True)
    assert set(preview.anonymous_ids) == devices
    assert count_lake(project) == lake_before  # a dry run changes nothing
    assert preview.totals()["log"] > 0 and preview.totals()["lake"] > 0

    report = forget(project, user, principal="admin")
    assert report.removals == preview.removals
    removed = {(r.place, r.name): r.rows for r in report.removals}

    # every place: 0 rows of the subject, everyone else's rows all still there
    lake_after = count_lake(project)
    for name, before in lake_before.items():
        assert lake_after[name] == before - removed.get(("lake", name), 0), name
    with open_lake(project) as lake:
        for name in lake.tables():
            data = lake.table(name).scan().to_arrow()
            for col in ("user_id", "anonymous_id"):
                if col in data.column_names:
                    assert not pc.any(pc.is_in(data[col], pa.array(sorted(ids)))).as_py(), name
            assert len(lake.table(name).metadata.snapshots) <= 1, name
    wh_after = count_warehouse(project)
    for name, before in wh_before.items():
        assert wh_after[name] == before - removed.get(("warehouse", name), 0), name
    store_after = count_store(project)
    for name, before in store_before.items():
        assert store_after[name] == before - removed.get(("store", name), 0), name
    assert removed[("store", "last_events")] > 0
    outboxes = [r for r in report.removals if r.place == "files" and r.detail == "checkpoint"]
    sink_files = [r for r in report.removals if r.place == "files" and r.detail == "sink file"]
    assert outboxes and sink_files
    import pyarrow.json as pajson

    parts = sorted((project.data_dir / "out" / "page_views").glob("part-*.json"))
    views = pa.concat_tables([pajson.read_json(p) for p in parts])
    views_before = pc.sum(pc.equal(events_before["event_type"], "page_view")).as_py()
    assert views.num_rows == views_before - sum(r.rows for r in sink_files)

    events_after = log_events(project)
    assert events_after["_offset"].to_pylist() == events_before["_offset"].to_pylist()
    forgotten = pc.equal(events_after["event_type"], "forgotten")
    assert pc.sum(forgotten).as_py() == removed[("log", "events")]
    assert events_after.filter(forgotten)["user_id"].null_count == removed[("log", "events")]
    kept = pc.invert(forgotten)
    assert events_after.filter(kept).equals(
        events_before.filter(kept), check_metadata=False
    )  # everyone else's records are untouched, at the same offsets

    assert traces(project, ids) == []
    assert not orphan_user.exists() and orphan_other.exists()

    (record,) = list(open_audit(project).records(kind="forget"))
    assert record.principal == "admin"
    assert record.data["totals"] == report.totals()
    assert user not in str(record.data)
    assert open_audit(project).verify().ok


def test_forget_refuses_while_a_collector_holds_the_log(tmp_path: Path) -> None:
    from fluvial.errors import LogError

    project = Project.init(tmp_path / "p", example="clickstream")
    with Ingestor.for_project(project) as ingestor:
        config = ClickstreamConfig(events=200, seed=1, users=5, days=1, start_ms=START_MS)
        for batch in clickstream_batches(config):
            ingestor.ingest(batch.lines(), received_at_ms=START_MS + 86_400_000, app_id="demo")
        user = log_events(project)["user_id"].drop_null()[0].as_py()
        before = [p.read_bytes() for p in sorted(project.data_dir.rglob("*.seg"))]
        with pytest.raises(LogError, match="Stop the collector"):
            forget(project, user)
        assert [p.read_bytes() for p in sorted(project.data_dir.rglob("*.seg"))] == before
    assert forget(project, user).totals()["log"] > 0


def test_cli_forget_dry_run_and_json(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    code = main(
        ["forget", "--user-id", "u-nobody", "--dry-run", "--json", "--project", str(project.root)]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] is True and out["totals"] == {
        "log": 0,
        "files": 0,
        "lake": 0,
        "warehouse": 0,
        "store": 0,
    }


def test_only_an_admin_may_forget(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fluvial.govern.principals import open_principals

    _, secret = open_principals(project).create("analyst", "user", [], by=None)
    monkeypatch.setenv("FLUVIAL_API_KEY", secret)
    args = ["forget", "--user-id", "u-nobody", "--project", str(project.root)]
    assert main(args) == 1
    assert "needs the admin role, which analyst does not hold" in capsys.readouterr().err
    monkeypatch.setenv("FLUVIAL_API_KEY", "fvk_not-a-key")
    assert main(args) == 1
    assert "unknown API key" in capsys.readouterr().err
    monkeypatch.delenv("FLUVIAL_API_KEY")
    assert main(args) == 0  # local file access: the bootstrap admin
    (*_, last) = open_audit(project).records(kind="forget")
    assert last.principal == "root"


def test_forget_refuses_a_kafka_log_unless_told_to_keep_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fluvial.errors import UsageError

    monkeypatch.setenv("FLUVIAL_LOG__BACKEND", "kafka")
    monkeypatch.setenv("FLUVIAL_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9")  # nothing listens
    project = Project.init(tmp_path / "p")
    with pytest.raises(UsageError, match=r"no per-record delete.*retention.*--keep-log"):
        forget(project, "u100001")
    assert not list(open_audit(project).records(kind="forget"))
