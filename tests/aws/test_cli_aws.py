"""``fluvial aws template`` and ``fluvial aws cost`` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluvial.cli import main
from fluvial.project import Project


def test_template_to_a_file_and_to_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "shop"
    Project.init(root, example="clickstream")
    out = tmp_path / "stack.json"
    assert main(["aws", "template", "-p", str(root), "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert "wrote" in capsys.readouterr().out
    assert main(["aws", "template", "-p", str(root)]) == 0
    assert json.loads(capsys.readouterr().out) == written
    resources = written["Resources"]
    assert "StreamActiveUsers" in resources  # a topic a pipeline writes
    # page_views_per_minute upserts into the store and sends late rows to a topic
    assert resources["StoreTable"]["Type"] == "AWS::DynamoDB::Table"
    role = resources["PipelinePageViewsPerMinuteRole"]["Properties"]["Policies"][0]
    puts = [
        r
        for st in role["PolicyDocument"]["Statement"]
        if "kinesis:PutRecords" in st["Action"]
        for r in st["Resource"]
    ]
    assert puts == [{"Fn::GetAtt": ["StreamPageViewsLate", "Arn"]}]


def test_cost_json_breakdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "p"
    Project.init(root)
    args = [
        "aws",
        "cost",
        "-p",
        str(root),
        "-r",
        "1000",
        "-b",
        "1024",
        "-d",
        "30",
        "-q",
        "100",
        "--json",
    ]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["region"] == "us-east-1" and doc["prices_as_of"]
    services = {s["service"]: s for s in doc["services"]}
    assert list(services) == ["kinesis", "firehose", "s3", "athena", "flink", "dynamodb"]
    # the default project: events + events_failed streams, 168 h retention, no pipelines
    kinesis = {line["item"]: line for line in services["kinesis"]["lines"]}
    assert kinesis["shard-hours"]["quantity"] == 2 * 730
    assert kinesis["extended retention"]["usd"] == round(2 * 730 * 0.02, 2)  # beyond 24 h
    assert services["flink"]["usd"] == 0
    # 30 days of Parquet (ratio 9, the default) of 1,000 × 1 KiB events/s
    s3 = {line["item"]: line for line in services["s3"]["lines"]}
    assert s3["storage"]["quantity"] == pytest.approx(1000 * 1024 * 86400 * 30 / 9 / 1024**3)
    assert doc["total_usd"] == pytest.approx(sum(s["usd"] for s in doc["services"]), abs=0.02)
    assert set(doc["savings_usd"]) == {
        "record aggregation",
        "compaction",
        "partition pruning",
        "Parquet compression",
    }


def test_cost_table_for_people(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Project.init(tmp_path / "p")
    assert main(["aws", "cost", "-p", str(tmp_path / "p"), "-r", "100"]) == 0
    out = capsys.readouterr().out
    assert "monthly cost" in out and "what each optimization saves" in out


def test_bad_cost_input_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Project.init(tmp_path / "p")
    assert main(["aws", "cost", "-p", str(tmp_path / "p"), "-r", "-5"]) == 2
    assert "events per second" in capsys.readouterr().err
