"""``fluvial batch`` commands, through a Typer app that mounts them as the lead will."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import typer
from typer.testing import CliRunner

from fluvial.cli.batch import app as batch_app
from fluvial.lake import Lake
from fluvial.project import Project

from .conftest import events, read

root = typer.Typer()
root.add_typer(batch_app, name="batch")


def test_run_ls_runs_backfill_freshness(
    bproject: Project,
    lake: Lake,
    add_events: Callable[[pa.Table], None],
    write_model: Callable[[str, str], Path],
    monkeypatch: object,
) -> None:
    write_model(
        "refined/buys.sql",
        "/*---\nmaterialized: incremental\npartition_by: day(at)\n"
        "freshness: {warn_after: 1h}\n---*/\n"
        "SELECT event_id, amount, at FROM raw.events WHERE kind = 'buy'",
    )
    add_events(events(0, 30))
    cli = CliRunner()
    p = ["--project", str(bproject.root)]
    out = cli.invoke(root, ["batch", "ls", *p, "--json"])
    assert out.exit_code == 0, out.output
    listed = json.loads(out.output)
    assert listed[0]["name"] == "refined.buys" and listed[0]["depends_on"] == ["raw.events"]
    out = cli.invoke(root, ["batch", "run", *p, "--json"])
    assert out.exit_code == 0, out.output
    assert (
        json.loads(out.output)["models"][0]["rows_written"] == read(lake, "refined.buys").num_rows
    )
    out = cli.invoke(root, ["batch", "run", *p, "--select", "buys+"])
    assert out.exit_code == 0 and "up_to_date" in out.output
    out = cli.invoke(
        root, ["batch", "backfill", *p, "--start", "2026-03-01", "--end", "2026-03-02", "--json"]
    )
    assert out.exit_code == 0, out.output
    out = cli.invoke(root, ["batch", "runs", *p, "--json"])
    assert [r["kind"] for r in json.loads(out.output)] == ["backfill", "run", "run"]
    out = cli.invoke(root, ["batch", "freshness", *p, "--json"])
    assert out.exit_code == 0 and json.loads(out.output)[0]["status"] == "ok"
