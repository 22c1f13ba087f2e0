"""``fluvial alerts list | history | test NAME``."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import typer
from typer.testing import CliRunner

from fluvial.cli import alerts
from fluvial.errors import FluvialError
from fluvial.project import Project
from fluvial.serve.alerts import AlertEvaluator
from fluvial.serve.store import open_store

from .conftest import Clock, Receiver, write_rules


def cli(project: Project, *args: str) -> Any:
    root = typer.Typer()
    root.add_typer(alerts.app, name="alerts")
    result = CliRunner().invoke(root, ["alerts", *args, "--project", str(project.root)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return json.loads(result.output) if "--json" in args else result.output


def test_list_history_and_test(tmp_path: Any, clock: Clock, webhook: Receiver) -> None:
    project = Project.init(tmp_path / "p")
    write_rules(
        project,
        f"""
        [[rule]]
        name = "big"
        kind = "threshold"
        table = "t"
        column = "v"
        threshold = 10
        channels = [{{type = "webhook", url = "{webhook.url}"}}]
        """,
    )
    assert "big" in cli(project, "list")
    with open_store(project) as store:
        store.upsert("t", pa.table({"k": [1], "v": [11]}), ["k"])
    with AlertEvaluator(project, clock=clock) as ev:
        ev.evaluate_once()
    (row,) = cli(project, "list", "--json")
    assert (row["name"], row["state"], row["value"], row["origin"]) == (
        "big",
        "FIRING",
        11.0,
        "file",
    )
    (change,) = cli(project, "history", "--json")
    assert (change["from_state"], change["to_state"], change["notified"]) == ("OK", "FIRING", True)
    assert "OK -> FIRING" in cli(project, "history", "big")
    assert cli(project, "test", "big", "--json") == [{"channel": "webhook", "ok": True}]
    assert [b["state"] for b in webhook.bodies] == ["FIRING", "TEST"]
    webhook.status = 503
    try:
        cli(project, "test", "big")
    except FluvialError as exc:
        assert "1 of 1 channel(s) of 'big' failed" in str(exc)
    else:
        raise AssertionError("a failed channel must fail the command")
