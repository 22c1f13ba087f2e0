"""The supervisor: real subprocesses restarted after SIGKILL, crash loops, graceful
shutdown without orphans, schedules, and the status file."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fluvial.serve.supervisor import (
    JOB,
    RestartPolicy,
    Schedule,
    Supervisor,
    WorkerSpec,
    pid_alive,
    read_status,
)

FAST = RestartPolicy(
    backoff_seconds=0.1, backoff_max_seconds=0.4, crash_loop_restarts=3, grace_seconds=3
)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


SLEEPER = _python("import time\nwhile True: time.sleep(0.1)")


def _until(check: Callable[[], bool], sup: Supervisor, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sup.step()
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_worker_killed_with_sigkill_is_restarted(tmp_path: Path) -> None:
    sup = Supervisor([WorkerSpec("w", SLEEPER)], policy=FAST, status_path=tmp_path / "s.json")
    sup.start()
    try:
        first = sup.worker_pids()["w"]
        assert first is not None and pid_alive(first)
        os.kill(first, signal.SIGKILL)
        _until(lambda: sup.worker_pids()["w"] not in (None, first), sup)
        second = sup.worker_pids()["w"]
        assert second is not None and pid_alive(second)
        row = sup.snapshot()["workers"][0]
        assert row["restarts"] == 1 and row["last_exit_code"] == -signal.SIGKILL
        sup.write_status(force=True)
        status = read_status(tmp_path / "s.json")
        assert status is not None and status["workers"][0]["pid"] == second
    finally:
        sup.shutdown()
    assert _gone(second)


def test_a_worker_whose_revision_changes_is_restarted_gracefully(tmp_path: Path) -> None:
    marker = tmp_path / "revision"
    marker.write_text("1")
    stopped = tmp_path / "stopped"
    # the worker records that it saw its stop signal (a pipeline checkpoints there)
    graceful = _python(
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (open({str(stopped)!r}, 'a').write('x'), "
        "sys.exit(0)))\n"
        "while True: time.sleep(0.05)"
    )
    events: list[str] = []
    spec = WorkerSpec("w", graceful, revision=lambda: f"version {marker.read_text()}")
    sup = Supervisor([spec], policy=FAST, on_event=events.append)
    sup.start()
    try:
        first = sup.worker_pids()["w"]
        time.sleep(1.2)
        sup.step()
        assert sup.worker_pids()["w"] == first  # same revision: left alone
        marker.write_text("2")
        _until(lambda: sup.worker_pids()["w"] not in (None, first), sup)
        row = sup.snapshot()["workers"][0]
        assert row["state"] == "running" and row["restarts"] == 1
        assert row["last_exit_code"] == 0 and stopped.read_text() == "x"
        assert any("now version 2 (was version 1)" in e for e in events)
        assert not any("restarting in" in e for e in events)  # not a crash: no backoff
    finally:
        sup.shutdown()


def test_a_crash_loop_is_given_up_with_growing_backoff(tmp_path: Path) -> None:
    events: list[str] = []
    sup = Supervisor(
        [WorkerSpec("bad", _python("raise SystemExit(3)")), WorkerSpec("good", SLEEPER)],
        policy=FAST,
        on_event=events.append,
    )
    sup.start()
    try:
        _until(lambda: sup.snapshot()["workers"][0]["state"] == "crash_loop", sup)
        bad, good = sup.snapshot()["workers"]
        # crash_loop_restarts=3: three restarts, the fourth exit gives up
        assert bad["restarts"] == 3 and bad["last_exit_code"] == 3
        assert good["state"] == "running" and good["restarts"] == 0
        delays = [
            float(e.split("restarting in ")[1].split(" s")[0])
            for e in events
            if "restarting in" in e
        ]
        assert delays == [0.1, 0.2, 0.4]
    finally:
        sup.shutdown()


def test_graceful_shutdown_leaves_no_orphans(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    # a worker with a grandchild, and a worker that ignores SIGTERM (killed after the grace)
    parent = _python(
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pids_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(600)\n"
    )
    stubborn = _python(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\ntime.sleep(600)"
    )
    graceful = _python(
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGINT, lambda s, f: (open({str(tmp_path / 'bye')!r}, 'w').write('x'), sys.exit(0)))\n"
        "print('ready', flush=True)\ntime.sleep(600)"
    )
    sup = Supervisor(
        [
            WorkerSpec("parent", parent),
            WorkerSpec("stubborn", stubborn),
            WorkerSpec("graceful", graceful, stop_signal=signal.SIGINT),
        ],
        policy=RestartPolicy(grace_seconds=1.5),
        log_dir=tmp_path / "logs",
    )
    sup.start()
    deadline = time.monotonic() + 10
    while not (pids_file.exists() and pids_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    for name in ("stubborn", "graceful"):  # their signal handlers are installed
        log = tmp_path / "logs" / f"{name}.log"
        while not (log.exists() and "ready" in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
    grandchild = int(pids_file.read_text())
    workers = [p for p in sup.worker_pids().values() if p is not None]
    assert len(workers) == 3 and pid_alive(grandchild)
    began = time.monotonic()
    sup.shutdown()
    took = time.monotonic() - began
    assert all(_gone(p) for p in [*workers, grandchild])
    assert (tmp_path / "bye").exists()  # the SIGINT worker got its own stop signal
    assert 1.4 <= took < 15  # the stubborn one was killed after the grace period
    rows = {w["name"]: w for w in sup.snapshot()["workers"]}
    assert rows["stubborn"]["last_exit_code"] == -signal.SIGKILL
    assert rows["graceful"]["last_exit_code"] == 0
    assert {w["state"] for w in rows.values()} == {"stopped"}


def test_a_supervisor_killed_with_sigkill_takes_its_workers_along(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    import subprocess

    status = tmp_path / "status.json"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from fluvial.serve.supervisor import Supervisor, WorkerSpec\n"
        f"sup = Supervisor([WorkerSpec('w', {SLEEPER!r})], status_path=Path({str(status)!r}))\n"
        "sup.run()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 20
        doc = None
        while time.monotonic() < deadline:
            doc = read_status(status)
            if doc and doc["workers"][0]["pid"]:
                break
            time.sleep(0.1)
        assert doc is not None
        worker = doc["workers"][0]["pid"]
        assert pid_alive(worker)
        proc.kill()
        proc.wait()
        assert _gone(worker)
        after = read_status(status)
        assert after is not None and after["state"] == "dead"
        assert after["workers"][0]["state"] == "dead"
    finally:
        proc.kill()


def test_a_scheduled_job_runs_when_triggered_and_records_its_outcome(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    job = WorkerSpec("touch", _python(f"open({str(marker)!r}, 'a').write('x')"), kind=JOB)
    sup = Supervisor([], schedules=[Schedule("touch", "0 0 1 1 *", job)], policy=FAST)
    sup.start()
    try:
        assert sup.trigger("touch")
        assert sup.wait_job("touch", timeout=10) == "succeeded"
        assert marker.read_text() == "x"
        (sched,) = sup.snapshot()["schedules"]
        assert sched["runs"] == 1 and sched["last_status"] == "succeeded"
        now = datetime.now().astimezone()
        new_year = datetime(now.year + 1, 1, 1).astimezone()  # local midnight, as cron means
        assert sched["next_run_at"] == new_year.astimezone(UTC).isoformat(timespec="seconds")
    finally:
        sup.shutdown()
