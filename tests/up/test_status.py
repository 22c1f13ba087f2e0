"""``fluvial status --json``: fluvial up's workers and the stream pipelines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import typer
from typer.testing import CliRunner

from fluvial.cli.up import register
from fluvial.project import Project
from fluvial.serve.app import status_path
from fluvial.serve.supervisor import Supervisor, WorkerSpec
from fluvial.up import build_supervisor, plan

SLEEPER = [sys.executable, "-c", "import time\nwhile True: time.sleep(0.1)"]


def _status(project: Project) -> dict:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["status", "--json", "--project", str(project.root)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_status_json_shows_every_worker_and_the_pipelines(project: Project) -> None:
    assert _status(project)["state"] == "not running"
    sup = Supervisor(
        [WorkerSpec("a", SLEEPER), WorkerSpec("b", SLEEPER)], status_path=status_path(project)
    )
    # a stream job's status file, as the runtime writes it
    job = project.data_dir / "stream" / "clicks"
    job.mkdir(parents=True)
    (job / "status.json").write_text(
        json.dumps(
            {
                "job": "clicks",
                "pid": os.getpid(),
                "state": "running",
                "started_ms": 0,
                "updated_ms": int(time.time() * 1000),
                "checkpoint": None,
                "pipelines": [
                    {"name": "clicks.0", "sink": "out", "rows_in": 7, "rows_out": 3, "late_rows": 1}
                ],
            }
        )
    )
    sup.start()
    try:
        os.kill(sup.worker_pids()["b"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while sup.snapshot()["workers"][1]["restarts"] == 0 and time.monotonic() < deadline:
            sup.step()
            time.sleep(0.05)
        sup.write_status(force=True)
        time.sleep(1.1)
        doc = _status(project)
    finally:
        sup.shutdown()
    assert doc["state"] == "running" and doc["pid"] == os.getpid()
    workers = {w["name"]: w for w in doc["workers"]}
    assert set(workers) == {"a", "b"}
    live = sup.worker_pids()  # after shutdown: none
    assert all(p is None for p in live.values())
    assert workers["a"]["restarts"] == 0 and workers["b"]["restarts"] == 1
    assert workers["a"]["state"] == "running" and workers["a"]["uptime_s"] >= 1.0
    assert workers["b"]["uptime_s"] < workers["a"]["uptime_s"]
    (pipeline,) = doc["pipelines"]
    assert (pipeline["job"], pipeline["rows_in"], pipeline["late_rows"]) == ("clicks", 7, 1)
    after = _status(project)
    assert after["state"] == "stopped"
    assert {w["state"] for w in after["workers"]} == {"stopped"}


def test_up_plans_every_pipeline_and_refuses_a_second_up(project: Project) -> None:
    for name in ("b_clicks", "a_views"):
        (project.root / "pipelines" / f"{name}.sql").write_text("-- empty\n")
    workers, schedules = plan(project, host="127.0.0.1", port=8765)
    names = [w.name for w in workers]
    assert names[:3] == ["web", "stream-a_views", "stream-b_clicks"]
    assert "archiver" in names
    assert [s.name for s in schedules] == ["maintenance"]
    # no checkpoint yet: from the earliest offsets; once there is one, resumed from it
    views = workers[1]
    assert "--from" not in views.command()
    from fluvial.stream.checkpoint import Checkpoint, CheckpointStore, now_ms

    CheckpointStore(project.data_dir / "stream" / "a_views" / "checkpoints").write(
        Checkpoint(1, now_ms(), {})
    )
    assert views.command()[-2:] == ["--from", "checkpoint"]
    assert "--from" not in workers[2].command()
    proc = subprocess.Popen(SLEEPER)
    try:
        status_path(project).parent.mkdir(parents=True, exist_ok=True)
        status_path(project).write_text(
            json.dumps({"pid": proc.pid, "state": "running", "workers": [], "schedules": []})
        )
        try:
            build_supervisor(project, port=8765)
        except Exception as exc:  # a UsageError naming the running pid
            assert str(proc.pid) in str(exc)
        else:
            raise AssertionError("a second fluvial up was not refused")
    finally:
        proc.kill()
        proc.wait()
