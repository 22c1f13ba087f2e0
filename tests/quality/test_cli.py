"""``fluvial quality check / report / rules`` on a project with lake tables."""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pytest
import typer
from tests.quality.conftest import USERS, make_orders, write_rules
from typer.testing import CliRunner

from fluvial.cli import quality
from fluvial.errors import ConfigError, NotFoundError
from fluvial.lake import append, open_lake
from fluvial.project import Project

RULES = """
rules:
  - IsComplete: kind
  - ReferentialIntegrity: {columns: user_id, references: curated.dim_users.user_id}
  - RowCount: {min: 1}
  - ColumnValues: {column: amount, min: 0}
    severity: warn
"""


def cli(project: Project, *args: str, code: int = 0) -> Any:
    root = typer.Typer()
    root.add_typer(quality.app, name="quality")
    result = CliRunner().invoke(root, ["quality", *args, "--project", str(project.root)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == code, result.output
    return json.loads(result.output) if "--json" in args else result.output


@pytest.fixture
def shop(quality_project: Project) -> Project:
    data = make_orders(200, seed=5)
    with open_lake(quality_project) as lake:
        append(lake.create_table("refined.orders", data.schema, time_column="at"), data)
    write_rules(quality_project, "models/refined/orders.quality.yml", RULES)
    write_rules(quality_project, "quality/raw.events.yml", "- IsUnique: event_id\n")
    return quality_project


def test_check_fails_on_error_rules_and_records(shop: Project) -> None:
    data = make_orders(200, seed=5)
    kinds, users = data.column("kind").to_pylist(), data.column("user_id").to_pylist()
    amounts = data.column("amount").to_pylist()
    out = cli(shop, "check", "--json", code=1)
    assert out["passed"] is False and out["missing"] == ["raw.events"]
    (table,) = out["tables"]
    assert table["table"] == "refined.orders" and table["rows"] == data.num_rows
    counts = {r["name"]: (r["passed"], r["failing_rows"]) for r in table["results"]}
    assert counts == {
        "IsComplete(kind)": (False, sum(k is None for k in kinds)),
        "ReferentialIntegrity(user_id -> curated.dim_users.user_id)": (
            False,
            sum(u is not None and u >= USERS for u in users),
        ),
        "RowCount": (True, 0),
        "ColumnValues(amount)": (False, sum(a is not None and a < 0 for a in amounts)),
    }
    failing = {
        i
        for i, (k, u) in enumerate(zip(kinds, users, strict=True))
        if k is None or (u is not None and u >= USERS)
    }
    assert table["failing_rows"] == len(failing)

    latest = cli(shop, "report", "--json")
    assert [(r["table_name"], r["passed"], r["errors"], r["warnings"]) for r in latest] == [
        ("refined.orders", False, 2, 1)
    ]
    runs = cli(shop, "report", "refined.orders", "--json")
    assert runs["runs"][0]["run_id"] == table["run_id"]
    assert [r["rule"] for r in runs["latest"]] == list(counts)
    assert "refined.orders" in cli(shop, "report")


def test_check_passes_and_no_record(shop: Project) -> None:
    write_rules(shop, "models/refined/orders.quality.yml", "- RowCount: {min: 1}\n")
    out = cli(shop, "check", "refined.orders", "--json", "--no-record")
    assert out["passed"] is True and len(out["tables"]) == 1
    assert cli(shop, "report", "--json") == []
    text = cli(shop, "check", "refined.orders")
    assert "refined.orders: passed" in text and "RowCount" in text


def test_rules_lists_and_validates(shop: Project) -> None:
    rows = cli(shop, "rules", "--json")
    assert [(r["table"], r["rule"]) for r in rows] == [
        ("raw.events", "IsUnique(event_id)"),
        ("refined.orders", "IsComplete(kind)"),
        ("refined.orders", "ReferentialIntegrity(user_id -> curated.dim_users.user_id)"),
        ("refined.orders", "RowCount"),
        ("refined.orders", "ColumnValues(amount)"),
    ]
    write_rules(shop, "quality/raw.events.yml", "- IsUnik: event_id\n")
    with pytest.raises(ConfigError, match="did you mean 'IsUnique'"):
        cli(shop, "rules")


def test_unknown_table(shop: Project) -> None:
    with pytest.raises(NotFoundError, match=r"did you mean 'refined\.orders'"):
        cli(shop, "check", "refined.order")
    with pytest.raises(NotFoundError, match="does not exist"):
        cli(shop, "check", "raw.events")
    with pytest.raises(NotFoundError, match="no recorded quality runs"):
        cli(shop, "report", "raw.events")


def test_check_reads_marts_from_the_warehouse(quality_project: Project) -> None:
    path = quality_project.data_dir / quality.WAREHOUSE_FILE
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA marts")
        con.execute("CREATE TABLE marts.daily AS SELECT range AS day, range * 2 AS n FROM range(5)")
    write_rules(quality_project, "models/marts/daily.quality.yml", "- IsUnique: day\n")
    out = cli(quality_project, "check", "--json")
    assert out["passed"] is True and out["tables"][0]["rows"] == 5
