"""``[project] backend = "aws"`` end to end, against AWS's APIs on moto's loopback server.

One project whose fluvial.toml says ``backend = "aws"`` (and where moto is): events go in,
a stream pipeline upserts per-user counts into the operational store (DynamoDB), the
archiver writes ``raw.events`` to the lake (S3 + Glue), and a batch model builds a
refined table there. Every result is checked against DuckDB over the same events, and
the AWS side is checked through AWS's own APIs (boto3): the items, the Glue tables.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from fluvial.cli import main
from fluvial.lake import open_lake
from fluvial.lake.query import connect, run_sql
from fluvial.project import Project
from fluvial.serve.store import open_store

from .conftest import make_events

REGION = "eu-central-1"

PIPELINE = """
CREATE TABLE events (
  event_id STRING,
  event_type STRING,
  event_time TIMESTAMP_LTZ(3),
  user_id STRING,
  WATERMARK FOR event_time AS event_time - INTERVAL '5' SECOND
) WITH ('connector' = 'fluvial', 'topic' = 'events');

CREATE TABLE user_activity (
  user_id STRING,
  event_type STRING,
  events BIGINT,
  last_seen TIMESTAMP(3),
  PRIMARY KEY (user_id, event_type) NOT ENFORCED
) WITH ('connector' = 'store', 'table' = 'user_activity');

INSERT INTO user_activity
SELECT user_id, event_type, COUNT(*), MAX(event_time)
FROM events
GROUP BY user_id, event_type;
"""

MODEL = """/*---
materialized: table
description: Events and users per type and hour.
---*/
SELECT
    event_type,
    date_trunc('hour', event_time) AS hour,
    count(*) AS events,
    count(DISTINCT user_id) AS users
FROM raw.events
GROUP BY ALL
"""


def _log_backend() -> str:
    """kinesis where that backend exists; the embedded log otherwise (explicitly set)."""
    from fluvial.log import BACKENDS

    return "kinesis" if "kinesis" in BACKENDS else "embedded"


@pytest.fixture
def aws_project(tmp_path: Path, moto_endpoint: str) -> Project:
    import boto3

    prefix = f"e2e{uuid.uuid4().hex[:8]}"
    # backend = "aws" puts the lake in s3://<prefix>-lake/warehouse: the bucket a
    # deployment creates, created here
    boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION).create_bucket(
        Bucket=f"{prefix}-lake", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    root = tmp_path / "shop"
    Project.init(root)
    log = "" if _log_backend() == "kinesis" else '[log]\nbackend = "embedded"\nfsync = "never"\n'
    (root / "fluvial.toml").write_text(
        '[project]\nbackend = "aws"\n'
        f'[aws]\nendpoint_url = "{moto_endpoint}"\nregion = "{REGION}"\n'
        f'resource_prefix = "{prefix}"\n' + log,
        encoding="utf-8",
    )
    (root / "pipelines" / "user_activity.sql").write_text(PIPELINE, encoding="utf-8")
    model = root / "models" / "refined" / "hourly_activity.sql"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_text(MODEL, encoding="utf-8")
    return Project(root)


def _duckdb(events: pa.Table, sql: str) -> list[tuple[object, ...]]:
    """The reference: *sql* over the events in DuckDB (UTC), rows as tuples."""
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("events", events)
        result = con.execute(sql).to_arrow_table()
    return [tuple(row.values()) for row in result.to_pylist()]


@pytest.mark.slow
def test_pipeline_archive_and_batch_model_on_aws(
    aws_project: Project, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3

    project = aws_project
    settings = project.settings
    prefix = settings.aws.resource_prefix
    assert (settings.store.backend, settings.lake.catalog_uri) == ("dynamodb", "glue")
    assert settings.lake.warehouse == f"s3://{prefix}-lake/warehouse"
    assert settings.log.backend == _log_backend()

    # events in
    batches = [make_events(500, seed=s) for s in range(3)]
    events = pa.concat_tables(batches)
    with project.open_log() as log:
        log.create_topic("events", 2)
        log.create_topic("events_failed", 1)
        for batch in batches:
            log.append("events", batch, key="user_id")

    # a stream pipeline upserts into DynamoDB
    pipeline = str(project.root / "pipelines" / "user_activity.sql")
    args = ["--project", str(project.root)]
    assert main(["stream", "run", pipeline, "--until-idle", *args]) == 0, capsys.readouterr().err
    with open_store(project) as store:
        assert store.name == "dynamodb"
        got = {
            (r["user_id"], r["event_type"]): (r["events"], r["last_seen"])
            for r in store.scan("user_activity").to_pylist()
        }
    want = _duckdb(
        events,
        "SELECT user_id, event_type, count(*), max(event_time)::TIMESTAMP FROM events GROUP BY ALL",
    )
    assert got == {(u, t): (n, last) for u, t, n, last in want}
    ddb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name=REGION)
    items = ddb.query(
        TableName=f"{prefix}-store",
        KeyConditionExpression="p = :p",
        ExpressionAttributeValues={":p": {"S": "fluvial_store#t#user_activity"}},
        Select="COUNT",
    )
    assert items["Count"] == len(want)

    # the archiver writes raw.events to S3, registered in Glue
    assert main(["lake", "archive", "--until-idle", *args]) == 0, capsys.readouterr().err
    # a batch model builds refined.hourly_activity on S3 + Glue
    assert main(["batch", "run", *args]) == 0, capsys.readouterr().err
    glue = boto3.client("glue", endpoint_url=moto_endpoint, region_name=REGION)
    for zone, name in (("raw", "events"), ("refined", "hourly_activity")):
        table = glue.get_table(DatabaseName=f"{prefix}_{zone}", Name=name)["Table"]
        location = table["Parameters"]["metadata_location"]
        assert location.startswith(f"s3://{prefix}-lake/warehouse/{prefix}_{zone}.db/{name}/")

    with open_lake(project) as lake:
        con = connect(lake)
        raw = run_sql(con, "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM raw.events")
        refined = run_sql(
            con, "SELECT event_type, hour, events, users FROM refined.hourly_activity ORDER BY 1, 2"
        )
        con.close()
    assert raw.to_pylist() == [{"n": 1_500, "d": 1_500}]
    want = _duckdb(
        events,
        "SELECT event_type, date_trunc('hour', event_time) AS hour, count(*), "
        "count(DISTINCT user_id) FROM events GROUP BY ALL ORDER BY 1, 2",
    )
    got_rows = [(r["event_type"], r["hour"], r["events"], r["users"]) for r in refined.to_pylist()]
    assert got_rows == want
