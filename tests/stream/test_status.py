"""``fluvial stream status``: per pipeline, from the status file and the checkpoint metadata."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fluvial.cli import main
from fluvial.cli._common import console
from fluvial.project import Project
from fluvial.stream.checkpoint import CheckpointStore
from fluvial.stream.job import load_job
from fluvial.stream.runtime import run_job
from fluvial.stream.status import STATUS_FILE

from .test_exactly_once import JOB, make_input, make_project


def status_json(project: Project, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    assert main(["stream", "status", "--project", str(project.root), "--json"]) == 0
    rows: list[dict] = json.loads(capsys.readouterr().out)
    return rows


def test_status_after_a_finished_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_input(500, 2)
    project, path = make_project(tmp_path / "p", data)
    result = run_job(load_job(path), project=project, until_idle=True)
    rows = status_json(project, capsys)
    assert [r["pipeline"] for r in rows] == [s.name for s in result.pipelines]
    store = CheckpointStore(project.data_dir / "stream" / JOB / "checkpoints")
    meta = store.meta(result.checkpoint_id or -1)
    for row, stats in zip(rows, result.pipelines, strict=True):
        assert row["job"] == JOB and row["state"] == "finished"
        assert row["rows_in"] == data.num_rows == stats.rows_in
        assert row["rows_out"] == stats.rows_out and row["late_rows"] == 0
        assert row["checkpoint_id"] == result.checkpoint_id
        assert 0 <= row["checkpoint_age_s"] < 60
        assert row["state_bytes"] == meta["pipelines"][row["pipeline"]]["state_bytes"]
    # window operators keep state; the stateless filter keeps none
    assert {r["sink"]: r["state_bytes"] > 0 for r in rows} == {
        "agg_fs": True,
        "filt_fs": False,
        "agg_topic": True,
        "filt_topic": False,
    }
    # the table for people names the job and shows the watermark as time (end of input)
    monkeypatch.setattr(console, "width", 200)
    assert main(["stream", "status", "--project", str(project.root)]) == 0
    out = capsys.readouterr().out
    assert JOB in out and "finished" in out and " end " in out


def test_a_killed_job_shows_as_dead_with_its_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_input(300, 4)
    project, path = make_project(tmp_path / "p", data)
    run_job(load_job(path), project=project, until_idle=True)
    # as a SIGKILL leaves it: "running", with the pid of a process that is gone
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    status_path = project.data_dir / "stream" / JOB / STATUS_FILE
    doc = json.loads(status_path.read_text())
    doc.update(state="running", pid=int(gone.stdout))
    status_path.write_text(json.dumps(doc))
    rows = status_json(project, capsys)
    assert {r["state"] for r in rows} == {"dead"}
    # without a status file, the checkpoint metadata still answers
    status_path.unlink()
    rows = status_json(project, capsys)
    assert len(rows) == 4 and {r["state"] for r in rows} == {"unknown"}
    assert all(r["rows_in"] == data.num_rows for r in rows)


def test_status_of_a_project_without_jobs(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status_json(project, capsys) == []
    assert main(["stream", "status", "--project", str(project.root)]) == 0
    assert "no stream jobs" in capsys.readouterr().err


def test_run_hints_at_an_existing_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project, path = make_project(tmp_path / "p", make_input(200, 6))
    args = ["stream", "run", str(path), "--until-idle", "--project", str(project.root)]
    assert main(args) == 0
    assert "hint" not in capsys.readouterr().err
    assert main(args) == 0
    assert "pass --from checkpoint to resume" in capsys.readouterr().err
    assert main([*args, "--from", "checkpoint"]) == 0
    assert "hint" not in capsys.readouterr().err
