"""``fluvial store``: tables, get, scan and purge, for people and with --json."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from fluvial.cli.store import app
from fluvial.errors import NotFoundError
from fluvial.project import Project
from fluvial.serve.store import open_store

UTC = dt.UTC


@pytest.fixture
def filled(project: Project) -> Project:
    hours = [dt.datetime(2026, 1, 1, h, tzinfo=UTC) for h in range(5)]
    data = pa.table(
        {
            "page": ["/a"] * 5 + ["/b"] * 5,
            "hour": pa.array(hours * 2, pa.timestamp("ms", tz="UTC")),
            "views": list(range(10)),
            "revenue": pa.array([Decimal(i) / 4 for i in range(10)], pa.decimal128(8, 2)),
        }
    )
    with open_store(project) as store:
        store.upsert("page_views", data, ["page", "hour"])
        store.upsert("short", pa.table({"k": [1, 2]}), ["k"], ttl_seconds=0.001)
    return project


def run(project: Project, *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--project", str(project.root)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_tables_json(filled: Project) -> None:
    out = json.loads(run(filled, "tables", "--json"))
    assert [t["name"] for t in out] == ["page_views", "short"]
    assert out[0]["key"] == ["page", "hour"] and out[0]["rows"] == 10
    assert out[0]["columns"]["revenue"] == "decimal128(8, 2)"
    assert "page_views" in run(filled, "tables")


def test_get_parses_the_key_types(filled: Project) -> None:
    row = json.loads(run(filled, "get", "page_views", "/b", "2026-01-01T02:00:00Z", "--json"))
    assert row["views"] == 7 and row["revenue"] == "1.75"
    assert "views" in run(filled, "get", "page_views", "/b", "2026-01-01T02:00:00Z")
    with pytest.raises(NotFoundError, match="no row with key"):
        run(filled, "get", "page_views", "/c", "2026-01-01T02:00:00Z")


def test_scan_matches_the_api(filled: Project) -> None:
    args = ["--prefix", "/a", "--start", "2026-01-01T01:00:00Z", "--limit", "2", "--reverse"]
    out = json.loads(run(filled, "scan", "page_views", *args, "--json"))
    assert [r["views"] for r in out] == [4, 3]
    with open_store(filled) as store:
        start = dt.datetime(2026, 1, 1, 1, tzinfo=UTC)
        expected = store.scan("page_views", prefix=["/a"], start=start, limit=2, reverse=True)
    assert [r["views"] for r in out] == expected["views"].to_pylist()


def test_purge(filled: Project) -> None:
    assert json.loads(run(filled, "purge", "--json")) == {"removed_rows": 2}
    assert "purged 0" in run(filled, "purge")
