"""``fluvial lineage TABLE``: trees for people, JSON for machines."""

from __future__ import annotations

import json

import pytest
import typer

from fluvial.cli import lineage as lineage_cli
from fluvial.errors import NotFoundError, UsageError
from fluvial.lineage import emit, new_run_id, run_event
from fluvial.project import Project


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Root."""

    lineage_cli.register(app)
    return app


def _run(project: Project, *args: str) -> None:
    _app()(args=["lineage", *args, "--project", str(project.root)], standalone_mode=False)


@pytest.fixture
def recorded(project: Project) -> Project:
    run = new_run_id()
    sql = (
        "SELECT o.id, upper(u.name) AS customer FROM raw.orders o JOIN raw.users u ON u.id = o.uid"
    )
    emit(
        project,
        run_event(
            "COMPLETE",
            "refined.sales",
            run,
            ["raw.orders", "raw.users"],
            ["refined.sales"],
            sql=sql,
        ),
    )
    emit(
        project,
        run_event(
            "FAIL",
            "marts.sales",
            new_run_id(),
            ["refined.sales"],
            ["marts.sales"],
            sql="SELECT customer FROM refined.sales",
            error="disk full",
        ),
    )
    return project


def test_tree_shows_both_directions(recorded: Project, capsys: pytest.CaptureFixture[str]) -> None:
    _run(recorded, "refined.sales")
    out = capsys.readouterr().out
    assert "refined.sales" in out and "upstream" in out and "downstream" in out
    assert "raw.orders" in out and "raw.users" in out
    assert "marts.sales" in out and "FAIL" in out


def test_json_upstream(recorded: Project, capsys: pytest.CaptureFixture[str]) -> None:
    _run(recorded, "marts.sales", "--upstream", "--json")
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"dataset", "upstream"}
    (sales,) = data["upstream"]["upstream"]
    assert (sales["dataset"], sales["job"], sales["state"]) == (
        "refined.sales",
        "marts.sales",
        "FAIL",
    )
    assert {d["dataset"] for d in sales["upstream"]} == {"raw.orders", "raw.users"}


def test_json_columns_downstream(recorded: Project, capsys: pytest.CaptureFixture[str]) -> None:
    _run(recorded, "raw.users", "--downstream", "--columns", "--json")
    data = json.loads(capsys.readouterr().out)
    name = next(c for c in data["downstream"]["columns"] if c["field"] == "name")
    (customer,) = name["downstream"]
    assert (customer["dataset"], customer["field"], customer["transformations"]) == (
        "refined.sales",
        "customer",
        ["DIRECT/TRANSFORMATION"],
    )
    (mart,) = customer["downstream"]
    assert (mart["dataset"], mart["field"]) == ("marts.sales", "customer")


def test_columns_tree(recorded: Project, capsys: pytest.CaptureFixture[str]) -> None:
    _run(recorded, "marts.sales", "--upstream", "--columns")
    out = capsys.readouterr().out
    assert "customer" in out and "raw.users" in out and "DIRECT/TRANSFORMATION" in out


def test_errors(recorded: Project) -> None:
    with pytest.raises(UsageError):
        _run(recorded, "raw.users", "--upstream", "--downstream")
    with pytest.raises(NotFoundError, match="did you mean"):
        _run(recorded, "raw.user")
