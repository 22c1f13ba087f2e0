"""``fluvial lake`` compact / expire / retain / orphans / describe / annotate / crawl."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from fluvial.cli.lake_admin import parse_age, register
from fluvial.errors import UsageError
from fluvial.lake.catalog import open_lake
from fluvial.project import Project

SCHEMA = pa.schema([("id", pa.int64()), ("at", pa.timestamp("us", "UTC"))])


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = Project.init(tmp_path / "p")
    with open_lake(project) as lake:
        table = lake.catalog.create_table(("refined", "things"), schema=SCHEMA)
        now = datetime.now(UTC)
        for i in range(6):  # six small files, rows 0..59, one per 12 hours back in time
            at = [now - timedelta(hours=12 * i, minutes=k) for k in range(10)]
            table.append(pa.table({"id": range(i * 10, i * 10 + 10), "at": at}, schema=SCHEMA))
    return project


def run(project: Project, *args: str) -> Any:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, [*args, "--project", str(project.root), "--json"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def rows(project: Project) -> list[int]:
    with open_lake(project) as lake:
        return sorted(lake.table("refined.things").scan().to_arrow()["id"].to_pylist())


def test_maintenance_commands(project: Project) -> None:
    info = run(project, "describe", "refined.things")
    assert (info["rows"], info["data_files"]) == (60, 6)

    done = run(project, "compact", "refined.things", "--min-files", "2")
    assert done["rewritten_files"] == 6 and done["added_files"] == 1
    assert run(project, "describe", "refined.things")["data_files"] == 1
    assert rows(project) == list(range(60))

    expired = run(project, "expire", "refined.things", "--older-than", "0s")
    assert len(expired["expired_snapshots"]) == 6 and expired["deleted_data_files"] == 6

    assert run(project, "orphans", "refined.things", "--dry-run") == {
        "orphans": [],
        "deleted": False,
    }

    # files 0..1 are within a day; file 2 (24 h back) straddles the cutoff
    trimmed = run(project, "retain", "refined.things", "--days", "1", "--column", "at")
    kept = rows(project)
    assert trimmed["deleted_rows"] == 60 - len(kept) and 20 <= len(kept) < 30


def test_annotate_and_describe(project: Project) -> None:
    info = run(
        project,
        "annotate",
        "refined.things",
        "--description",
        "things we count",
        "--owner",
        "ops",
        "--tag",
        "pii=no",
    )
    assert (info["description"], info["owner"], info["tags"]) == (
        "things we count",
        "ops",
        {"pii": "no"},
    )
    info = run(project, "annotate", "refined.things", "-c", "id", "-d", "the key", "-t", "pii=")
    assert info["tags"] == {"pii": "no"}
    assert [c["doc"] for c in info["columns"] if c["name"] == "id"] == ["the key"]
    with pytest.raises(UsageError, match="nothing to annotate"):
        run(project, "annotate", "refined.things")


def test_crawl_command(project: Project, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    pq.write_table(pa.table({"id": [1, 2], "name": ["a", "b"]}), landing / "a.parquet")
    report = run(project, "crawl", str(landing), "--table", "raw.landed")
    assert report["created"] and report["rows"] == 2 and report["changed"]
    assert not run(project, "crawl", str(landing), "--table", "raw.landed")["changed"]


def test_parse_age() -> None:
    assert parse_age("90s") == timedelta(seconds=90)
    assert parse_age("2w") == timedelta(days=14)
    with pytest.raises(UsageError, match="expected an age"):
        parse_age("soon")
