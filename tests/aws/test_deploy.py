"""The template deployed with moto's CloudFormation on loopback, and Fluvial's Kinesis event
log and DynamoDB store running on the streams and tables it declared.

moto's CloudFormation creates the resources it implements (Kinesis streams, DynamoDB
tables, S3 buckets, IAM roles) and skips the others (Lake Formation, Glue, Athena, bucket
policies) with a warning; cfn-lint checks those in test_template.py.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import pyarrow as pa

from fluvial.aws.template import build_template, dump_template
from fluvial.project import Project
from log.kinesis_server import REGION, aws_endpoint_session

ACCOUNT = "123456789012"  # moto's account


def deploy(endpoint: str, template: dict[str, Any], name: str) -> dict[str, str]:
    """Create the stack and wait; its outputs by key."""
    import boto3

    cf = boto3.client("cloudformation", endpoint_url=endpoint, region_name=REGION)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the resource types moto skips
        cf.create_stack(
            StackName=name, TemplateBody=dump_template(template), Capabilities=["CAPABILITY_IAM"]
        )
        deadline = time.monotonic() + 60
        while True:
            stack = cf.describe_stacks(StackName=name)["Stacks"][0]
            if not stack["StackStatus"].endswith("IN_PROGRESS") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def test_the_kinesis_log_runs_on_the_deployed_stack(tmp_path: Path) -> None:
    import boto3

    root = tmp_path / "shop"
    Project.init(root, example="clickstream")
    env = {
        "FLUVIAL_AWS__RESOURCE_PREFIX": "shop",
        "FLUVIAL_AWS__PEAK_EVENTS_PER_SECOND": "2500",  # 3 shards
        "FLUVIAL_LOG__BACKEND": "kinesis",
        "FLUVIAL_STORE__BACKEND": "dynamodb",
        "FLUVIAL_AWS__REGION": REGION,
    }
    with aws_endpoint_session() as endpoint:
        env["FLUVIAL_AWS__ENDPOINT_URL"] = endpoint
        project = Project(root, env=env)
        template = build_template(project)
        deploy(endpoint, template, "shop")

        kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name=REGION)
        streams = sorted(kinesis.list_streams()["StreamNames"])
        assert streams == [
            "shop-active_users",
            "shop-events",
            "shop-events_failed",
            "shop-page_views_late",
        ]
        summary = kinesis.describe_stream_summary(StreamName="shop-events")[
            "StreamDescriptionSummary"
        ]
        assert summary["OpenShardCount"] == 3
        assert summary["RetentionPeriodHours"] == 168
        dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
        assert sorted(dynamodb.list_tables()["TableNames"]) == ["shop-log", "shop-store"]
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        buckets = sorted(b["Name"] for b in s3.list_buckets()["Buckets"])
        assert buckets == sorted(
            f"shop-{z}-{ACCOUNT}-{REGION}"
            for z in ("raw", "refined", "curated", "quarantine", "results")
        )

        # Fluvial's Kinesis log adopts the declared streams and keeps its offsets in shop-log
        rows = pa.table({"event_id": [f"e{i}" for i in range(30)], "n": list(range(30))})
        with project.open_log() as log:
            log.create_topic("events", 4, exist_ok=True)  # adopted with the stream's 3 shards
            log.append("events", rows, key="event_id")
            topic = next(t for t in log.list_topics() if t.name == "events")
            assert len(topic.partitions) == 3
            assert topic.records == 30
            read = []
            with log.consumer("events") as consumer:
                while (batch := consumer.poll(timeout=0)) is not None:
                    read.append(batch)
        assert sorted(pa.concat_tables(read).column("event_id").to_pylist()) == sorted(
            rows.column("event_id").to_pylist()
        )
        # the DynamoDB store works in the declared table (it creates none)
        from fluvial.serve.store import open_store

        views = pa.table({"url": ["/", "/cart"], "views": [3, 1]})
        with open_store(project) as store:
            store.upsert("page_views", views, key=["url"], ttl_seconds=3600)
            assert store.get("page_views", "/cart") == {"url": "/cart", "views": 1}
        assert sorted(dynamodb.list_tables()["TableNames"]) == ["shop-log", "shop-store"]
        assert (
            kinesis.describe_stream_summary(StreamName="shop-events")["StreamDescriptionSummary"][
                "OpenShardCount"
            ]
            == 3
        )
    json.dumps(template)  # the template is plain JSON data
