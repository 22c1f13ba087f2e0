"""The lake on an ``s3://`` warehouse, against moto's S3 server on a loopback port.

The same lake code as on a folder: tables created in their zones, the archiver, reads back
through pyiceberg and through ``fluvial sql`` (DuckDB's httpfs loaded from its package,
with an S3 secret for the endpoint), compaction and orphan removal; and the SQL catalog on
PostgreSQL with the warehouse on S3.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from fluvial.cli import sql as sql_cli
from fluvial.lake import Archiver, Lake, append, connect, open_lake, run_sql
from fluvial.lake.maintenance import compact, expire_snapshots, remove_orphans
from fluvial.project import Project

from .conftest import make_events

BUCKET = "fluvial-lake"
REGION = "eu-west-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, one bucket, dummy credentials."""
    boto3 = pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            mp.delenv(name, raising=False)
        client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        try:
            yield endpoint
        finally:
            server.stop()


def s3_project(root: Path, endpoint: str, catalog_uri: str = "") -> Project:
    """A project whose ``fluvial.toml`` puts the warehouse in a fresh prefix of the bucket."""
    Project.init(root)
    config = root / "fluvial.toml"
    lake = (
        "[lake]\n"
        f'warehouse = "s3://{BUCKET}/{uuid.uuid4().hex[:10]}/"\n'
        f's3_endpoint = "{endpoint}"\n'
        f's3_region = "{REGION}"\n'
    )
    if catalog_uri:
        lake += f'catalog_uri = "{catalog_uri}"\ncatalog_name = "s3_{uuid.uuid4().hex[:10]}"\n'
    text = config.read_text(encoding="utf-8")
    text = text.replace("[lake]\n", lake, 1).replace("[log]\n", '[log]\nfsync = "never"\n', 1)
    config.write_text(text, encoding="utf-8")
    return Project(root)


def _objects(endpoint: str, prefix: str) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _sql(project: Project, query: str, out: Path) -> pa.Table:
    app = typer.Typer()
    sql_cli.register(app)
    app.command("noop")(lambda: None)  # more than one command: "sql" stays a subcommand
    result = CliRunner().invoke(
        app,
        ["sql", query, "--format", "parquet", "--out", str(out), "--project", str(project.root)],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    return pq.read_table(out)


def test_archive_query_and_compact_on_s3(tmp_path: Path, s3_endpoint: str) -> None:
    project = s3_project(tmp_path / "p", s3_endpoint)
    batches = [make_events(400, seed=s) for s in range(4)]
    logged = pa.concat_tables(batches)
    with project.open_log() as log, open_lake(project) as lake:
        assert lake.warehouse.startswith(f"s3://{BUCKET}/")
        log.create_topic("events", 2)
        log.create_topic("events_failed", 1)
        for batch in batches:
            log.append("events", batch, key="user_id")
        stats = Archiver(lake, log, settings=project.settings, buffer_records=500).run(
            until_idle=True
        )
        assert stats.records == {"events": 1_600}
        table = lake.table("raw.events")
        assert table.metadata_location.startswith(f"s3://{BUCKET}/")
        prefix = table.location().removeprefix(f"s3://{BUCKET}/")
        keys = _objects(s3_endpoint, prefix)
        assert any(k.endswith(".parquet") for k in keys)
        assert any(k.endswith(".metadata.json") for k in keys)

        # pyiceberg reads back exactly the logged events
        back = table.scan().to_arrow()
        assert sorted(back["event_id"].to_pylist()) == sorted(logged["event_id"].to_pylist())

        # fluvial sql (DuckDB over S3) agrees with the Arrow data
        query = "SELECT event_type, count(*) AS n, count(DISTINCT user_id) AS u FROM raw.events GROUP BY 1 ORDER BY 1"
        got = _sql(project, query, tmp_path / "q1.parquet")
        want = logged.group_by("event_type").aggregate(
            [("event_id", "count"), ("user_id", "count_distinct")]
        )
        want = want.sort_by("event_type")
        assert got["event_type"].to_pylist() == want["event_type"].to_pylist()
        assert got["n"].to_pylist() == want["event_id_count"].to_pylist()
        assert got["u"].to_pylist() == want["user_id_count_distinct"].to_pylist()

        # compaction rewrites the small files on S3; rows and their values are unchanged
        files_before = len(table.inspect.files())
        result = compact(table, min_input_files=2)
        assert result.rewritten_files > result.added_files >= 1
        table = lake.table("raw.events")
        assert len(table.inspect.files()) < files_before
        current = table.current_snapshot()
        assert current is not None and current.summary is not None
        assert current.summary["fluvial.maintenance"] == "compact"
        after = _sql(
            project,
            "SELECT event_id, event_time FROM raw.events ORDER BY event_id",
            tmp_path / "q2.parquet",
        )
        expected = logged.select(["event_id", "event_time"]).sort_by("event_id")
        assert after["event_id"].to_pylist() == expected["event_id"].to_pylist()
        us = pa.timestamp("us", tz="UTC")
        assert after["event_time"].cast(us).equals(expected["event_time"].cast(us))

        # expiry deletes the compacted-away files from the bucket
        now = datetime.now(UTC)
        expired = expire_snapshots(table, older_than=now, retain_last=1)
        assert expired.deleted_data_files == result.rewritten_files
        table = lake.table("raw.events")
        live = {
            f.removeprefix(f"s3://{BUCKET}/")
            for f in table.inspect.files()["file_path"].to_pylist()
        }
        stored = {k for k in _objects(s3_endpoint, prefix) if k.endswith(".parquet")}
        assert stored == live

        # orphan removal lists the table's folder through the lake's S3 settings
        assert remove_orphans(table, older_than=timedelta(0), dry_run=True) == []
        import boto3

        stray = f"{prefix}/data/stray.parquet"
        boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION).put_object(
            Bucket=BUCKET, Key=stray, Body=b"x"
        )
        found = remove_orphans(table, older_than=timedelta(0))
        assert found == [f"s3://{BUCKET}/{stray}"]
        assert stray not in _objects(s3_endpoint, prefix)
        assert table.scan().to_arrow().num_rows == 1_600  # nothing referenced was removed


def test_archiver_resumes_from_s3_snapshots(tmp_path: Path, s3_endpoint: str) -> None:
    project = s3_project(tmp_path / "p", s3_endpoint)
    first, second = make_events(300, seed=10), make_events(200, seed=11)
    with project.open_log() as log:
        log.create_topic("events", 2)
        log.create_topic("events_failed", 1)
        log.append("events", first, key="user_id")
        with open_lake(project) as lake:
            Archiver(lake, log, settings=project.settings).run(until_idle=True)
        log.append("events", second, key="user_id")
        with open_lake(project) as lake:  # a new process would start like this
            Archiver(lake, log, settings=project.settings).run(until_idle=True)
            ids = lake.table("raw.events").scan().to_arrow()["event_id"].to_pylist()
    assert sorted(ids) == sorted(first["event_id"].to_pylist() + second["event_id"].to_pylist())


def _drop_all(lake: Lake) -> None:
    for name in lake.tables():
        lake.drop_table(name)
    for zone in lake.zones:
        lake.catalog.drop_namespace(zone)


def test_postgres_catalog_with_s3_warehouse(
    tmp_path: Path, s3_endpoint: str, postgres_dsn: str
) -> None:
    project = s3_project(tmp_path / "p", s3_endpoint, catalog_uri=postgres_dsn)
    events = make_events(1_000, seed=3)
    lake = open_lake(project)
    try:
        assert lake.catalog.engine.url.get_backend_name() == "postgresql"  # type: ignore[attr-defined]
        table = lake.create_table("refined.events", events.schema, time_column="event_time")
        assert [str(f.transform) for f in table.spec().fields] == ["day"]
        append(table, events.slice(0, 600), properties={"batch": "1"})
        append(table, events.slice(600), properties={"batch": "2"})
        with open_lake(project) as again:  # the catalog is the database, not this process
            assert again.tables() == ["refined.events"]
            reloaded = again.table("refined.events")
            assert reloaded.metadata_location.startswith(f"s3://{BUCKET}/")
            assert [s.summary["batch"] for s in reloaded.snapshots()] == ["1", "2"]  # type: ignore[index]
            back = reloaded.scan().to_arrow()
            assert sorted(back["event_id"].to_pylist()) == sorted(events["event_id"].to_pylist())
            con = connect(again)
            got = run_sql(
                con, "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM refined.events"
            )
            con.close()
            assert got.to_pylist() == [{"n": 1_000, "d": 1_000}]
    finally:
        _drop_all(lake)
        lake.close()


def test_lake_sink_on_s3_skips_a_replayed_checkpoint(tmp_path: Path, s3_endpoint: str) -> None:
    from fluvial.stream.connectors import ConnectorContext
    from fluvial.stream.connectors.lake import LakeSink
    from fluvial.stream.sql.ast import CreateTable
    from fluvial.stream.sql.parser import parse_script

    project = s3_project(tmp_path / "p", s3_endpoint)
    (ddl,) = parse_script(
        "CREATE TABLE t (id BIGINT, at TIMESTAMP(3)) WITH ("
        "'connector' = 'lake', 'table' = 'curated.t', 'time-column' = 'at')"
    ).statements
    assert isinstance(ddl, CreateTable)
    at = pa.array([1_790_000_000_000 + i * 60_000 for i in range(6)], pa.timestamp("ms"))
    data = pa.table({"id": pa.array(range(6), pa.int64()), "at": at})
    for run in range(2):  # the second run replays checkpoint 1, then commits 2
        sink = LakeSink(ddl, ddl.options, ConnectorContext(project))
        sink.open()
        sink.write(data.slice(0, 4))
        sink.commit(1)
        if run:
            sink.write(data.slice(4))
            sink.commit(2)
        sink.close()
    with open_lake(project) as lake:
        con = connect(lake)
        got = run_sql(con, "SELECT id FROM curated.t ORDER BY id")["id"].to_pylist()
        con.close()
    assert got == list(range(6))


def test_duckdb_secret_carries_the_lake_s3_settings(
    tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = s3_project(tmp_path / "p", s3_endpoint)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "temporary")
    with open_lake(project) as lake:
        con = connect(lake)
        (secret,) = con.sql("SELECT secret_string FROM duckdb_secrets()").fetchone() or ("",)
        con.close()
    fields = dict(part.split("=", 1) for part in secret.split(";"))
    assert fields["endpoint"] == s3_endpoint.removeprefix("http://")
    assert fields["region"] == REGION
    assert fields["key_id"] == "testing"
    assert fields["session_token"] == "redacted"  # set (DuckDB never shows its value)
    assert fields["use_ssl"] == "false" and fields["url_style"] == "path"
