"""A process supervisor: worker subprocesses kept running, cron jobs, a status file.

:class:`Supervisor` runs each :class:`WorkerSpec` as a real subprocess in its own session
(so a Ctrl-C in the terminal reaches only the supervisor, which then stops the workers in
order). A *service* worker that exits is restarted after an exponential backoff
(``backoff · 2^k``, capped), and given up (state ``crash_loop``) when it exited more than
``crash_loop_restarts`` times within ``crash_loop_window_seconds``. A :class:`Schedule`
runs a *job* worker whenever its cron expression comes due (skipped while the previous
run is still going).

A worker whose spec has a *revision* (a callable saying what it should run, e.g. the
current version of a stream pipeline after a Kappa switch) is restarted gracefully when
that value changes: its stop signal, then — once it has exited, or after
``grace_seconds`` with SIGKILL — a fresh start, which is not counted as a crash.

Shutdown: every worker gets its stop signal (SIGTERM unless the spec says otherwise),
then SIGKILL — to its whole process group — once ``grace_seconds`` have passed. On Linux
each worker also asks the kernel to SIGTERM it should the supervisor die without a
shutdown (``PR_SET_PDEATHSIG``), so a killed supervisor leaves no orphans either.

The status file (JSON, replaced atomically about once a second) is what
``fluvial status`` shows: the supervisor's pid and state and, per worker, pid, state,
restarts, start time, last exit code, and per schedule the next and last runs.

>>> spec = WorkerSpec("sleeper", ("sleep", "30"))
>>> sup = Supervisor([spec], policy=RestartPolicy(grace_seconds=2))
>>> sup.start()
>>> sup.snapshot()["workers"][0]["state"]
'running'
>>> sup.shutdown()
>>> sup.snapshot()["workers"][0]["state"]
'stopped'
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from fluvial.errors import ConfigError, UsageError

__all__ = [
    "RestartPolicy",
    "Schedule",
    "Supervisor",
    "WorkerSpec",
    "next_fire",
    "pid_alive",
    "read_status",
]

#: worker kinds: a service is kept running, a job runs to completion
SERVICE = "service"
JOB = "job"

Argv = Sequence[str] | Callable[[], Sequence[str]]


@dataclass(frozen=True)
class WorkerSpec:
    """One worker process: its name, command line and how it is stopped.

    *argv* may be a callable, evaluated at every (re)start: a stream pipeline resumes
    ``--from checkpoint`` once it has one. *revision*, when given, is polled about once a
    second while the worker runs; a value different from the one at its start restarts
    it (the module docstring says how).
    """

    name: str
    argv: Argv
    kind: str = SERVICE
    stop_signal: int = signal.SIGTERM
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    revision: Callable[[], object] | None = None

    def command(self) -> list[str]:
        """The command line to start now."""
        argv = self.argv() if callable(self.argv) else self.argv
        return [str(a) for a in argv]


@dataclass(frozen=True)
class Schedule:
    """Run *worker* (a job) whenever *cron* (five fields, local time) comes due."""

    name: str
    cron: str
    worker: WorkerSpec

    def __post_init__(self) -> None:
        next_fire(self.cron, time.time())  # a bad expression fails at startup


@dataclass(frozen=True)
class RestartPolicy:
    """How crashed workers come back, and how long shutdown waits."""

    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    crash_loop_restarts: int = 5
    crash_loop_window_seconds: float = 300.0
    #: a worker that ran this long before exiting starts its backoff afresh
    stable_seconds: float = 60.0
    grace_seconds: float = 15.0

    def delay(self, consecutive: int) -> float:
        """Seconds to wait before restart number *consecutive* (0-based) of a streak.

        >>> [RestartPolicy(backoff_seconds=1, backoff_max_seconds=5).delay(k) for k in range(5)]
        [1.0, 2.0, 4.0, 5.0, 5.0]
        """
        return float(min(self.backoff_max_seconds, self.backoff_seconds * 2**consecutive))


def next_fire(cron: str, after: float) -> float:
    """The epoch seconds of *cron*'s next time after *after* (local time zone).

    >>> import datetime as dt
    >>> start = dt.datetime(2024, 1, 1, 10, 7).timestamp()
    >>> dt.datetime.fromtimestamp(next_fire("*/15 * * * *", start)).strftime("%H:%M")
    '10:15'
    """
    from croniter import croniter

    try:
        base = datetime.fromtimestamp(after).astimezone()
        return float(croniter(cron, base).get_next(float))
    except (ValueError, KeyError) as exc:
        raise ConfigError(
            f"expected a cron expression of five fields (e.g. '0 3 * * *'), found {cron!r}"
        ) from exc


def pid_alive(pid: int | None) -> bool:
    """Whether a process with *pid* exists (zombies of other parents included)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="seconds")


def _pdeathsig() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent thread dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return preexec


_PREEXEC = _pdeathsig()


class _Worker:
    """A spec and its current process."""

    def __init__(self, spec: WorkerSpec, log_dir: Path | None) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log" if log_dir is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.state = "new"
        self.restarts = 0
        self.started_wall: float | None = None
        self.started_mono = 0.0
        self.argv: list[str] = []
        self.exits: deque[float] = deque()
        self.streak = 0
        self.next_start: float | None = None
        self.last_exit_code: int | None = None
        self.last_exit_wall: float | None = None
        self.stop_sent: float | None = None
        self.revision: object = None

    def current_revision(self) -> object:
        """The spec's revision now (the last one known when it cannot be read)."""
        if self.spec.revision is None:
            return None
        try:
            return self.spec.revision()
        except Exception:  # a half-written or unreadable source: keep what runs
            return self.revision

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def spawn(self, env: Mapping[str, str]) -> None:
        self.revision = self.current_revision()
        self.argv = self.spec.command()
        out: IO[bytes] | int = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it; closed below
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.spec.cwd,
                env={**os.environ, **env, **self.spec.env},
                start_new_session=True,
                preexec_fn=_PREEXEC,  # only a prctl call: safe between fork and exec
            )
        except OSError as exc:
            self.proc = None
            raise UsageError(f"cannot start worker {self.spec.name}: {exc}") from exc
        finally:
            if not isinstance(out, int):
                out.close()
        self.state = "running"
        self.started_wall = time.time()
        self.started_mono = time.monotonic()
        self.next_start = None
        self.stop_sent = None

    def signal_group(self, signum: int) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:  # not our group after all: signal the process alone
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    def row(self) -> dict[str, Any]:
        running = self.proc is not None and self.proc.returncode is None
        return {
            "name": self.spec.name,
            "kind": self.spec.kind,
            "state": self.state,
            "pid": self.pid if running else None,
            "restarts": self.restarts,
            "started_at": _iso(self.started_wall) if running else None,
            "started_epoch": self.started_wall if running else None,
            "last_exit_code": self.last_exit_code,
            "last_exit_at": _iso(self.last_exit_wall),
            "next_restart_in_s": (
                round(max(0.0, self.next_start - time.monotonic()), 1)
                if self.next_start is not None
                else None
            ),
            "argv": self.argv,
            "log": str(self.log_path) if self.log_path is not None else None,
        }


class _Scheduled:
    def __init__(self, schedule: Schedule, worker: _Worker) -> None:
        self.schedule = schedule
        self.worker = worker
        self.next_run = next_fire(schedule.cron, time.time())
        self.last_run: float | None = None
        self.last_status: str | None = None
        self.runs = 0
        self.skipped = 0


class Supervisor:
    """Keeps *workers* running and runs *schedules*; see the module docstring.

    Args:
        workers: the service workers, started by :meth:`start`.
        schedules: cron jobs, started when due (or by :meth:`trigger`).
        policy: restart backoff, crash-loop limit and shutdown grace.
        status_path: the JSON status file (none if ``None``).
        log_dir: each worker's stdout and stderr go to ``<log_dir>/<name>.log``.
        env: extra environment variables of every worker.
        info: extra fields of the status file (the URL being served, the project).
    """

    def __init__(
        self,
        workers: Iterable[WorkerSpec],
        *,
        schedules: Iterable[Schedule] = (),
        policy: RestartPolicy | None = None,
        status_path: Path | None = None,
        log_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        info: Mapping[str, Any] | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self.status_path = status_path
        self.env = dict(env or {})
        self.info = dict(info or {})
        self._on_event = on_event
        self._workers: dict[str, _Worker] = {}
        for spec in workers:
            self._add(_Worker(spec, log_dir))
        self._schedules: dict[str, _Scheduled] = {}
        for sched in schedules:
            if sched.worker.kind != JOB:
                raise UsageError(f"schedule {sched.name}: its worker must be a job")
            worker = _Worker(sched.worker, log_dir)
            worker.state = "scheduled"
            self._add(worker)
            self._schedules[sched.name] = _Scheduled(sched, worker)
        self.state = "new"
        self.started_wall: float | None = None
        self._last_status = 0.0
        self._last_revisions = 0.0
        self._lock = threading.RLock()
        self._hurry = False
        self.stop_event = threading.Event()

    def _add(self, worker: _Worker) -> None:
        if worker.spec.name in self._workers:
            raise UsageError(f"two workers are named {worker.spec.name!r}")
        self._workers[worker.spec.name] = worker

    def _say(self, message: str) -> None:
        if self._on_event is not None:
            self._on_event(message)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start every service worker."""
        with self._lock:
            self.state = "running"
            self.started_wall = time.time()
            for worker in self._workers.values():
                if worker.spec.kind == SERVICE:
                    worker.spawn(self.env)
                    self._say(f"started {worker.spec.name} (pid {worker.pid})")
            self.write_status(force=True)

    def step(self) -> None:
        """Reap exited workers, restart those due, run due schedules, write the status."""
        with self._lock:
            now = time.monotonic()
            for worker in self._workers.values():
                if worker.proc is not None and worker.state == "running":
                    code = worker.proc.poll()
                    if code is not None:
                        self._exited(worker, code, now)
                due = worker.next_start is not None and now >= worker.next_start
                if worker.state == "backoff" and due and self.state == "running":
                    worker.restarts += 1
                    worker.spawn(self.env)
                    self._say(
                        f"restarted {worker.spec.name} (pid {worker.pid}, "
                        f"restart {worker.restarts})"
                    )
            if now - self._last_revisions >= 1.0 and self.state == "running":
                self._last_revisions = now
                for worker in self._workers.values():
                    self._check_revision(worker, now)
            for worker in self._workers.values():
                if worker.state == "restarting":
                    self._restart_revised(worker, now)
            wall = time.time()
            for sched in self._schedules.values():
                if wall >= sched.next_run and self.state == "running":
                    self._run_scheduled(sched)
                    sched.next_run = next_fire(sched.schedule.cron, wall)
            self.write_status()

    def _check_revision(self, worker: _Worker, now: float) -> None:
        """Stop a running worker whose revision changed; :meth:`_restart_revised` starts
        it again once it has exited."""
        if worker.spec.revision is None or worker.state != "running" or worker.proc is None:
            return
        revision = worker.current_revision()
        if revision == worker.revision:
            return
        self._say(
            f"{worker.spec.name}: now {revision} (was {worker.revision}); restarting it "
            f"(pid {worker.pid})"
        )
        worker.state = "restarting"
        worker.stop_sent = now
        worker.signal_group(worker.spec.stop_signal)

    def _restart_revised(self, worker: _Worker, now: float) -> None:
        assert worker.proc is not None
        code = worker.proc.poll()
        if code is None:
            if worker.stop_sent is not None and now - worker.stop_sent > self.policy.grace_seconds:
                self._say(f"{worker.spec.name} did not stop in time: killing it")
                worker.signal_group(signal.SIGKILL)
                worker.stop_sent = None
            return
        worker.signal_group(signal.SIGKILL)  # grandchildren left in its group
        worker.last_exit_code = code
        worker.last_exit_wall = time.time()
        if self.state != "running":
            worker.state = "stopped"
            return
        worker.restarts += 1
        worker.spawn(self.env)
        self._say(
            f"restarted {worker.spec.name} on {worker.revision} (pid {worker.pid}, "
            f"restart {worker.restarts})"
        )

    def _exited(self, worker: _Worker, code: int, now: float) -> None:
        worker.last_exit_code = code
        worker.last_exit_wall = time.time()
        if worker.spec.kind == JOB:
            worker.state = "succeeded" if code == 0 else "failed"
            for sched in self._schedules.values():
                if sched.worker is worker:
                    sched.last_status = worker.state
            self._say(f"job {worker.spec.name} {worker.state} (exit {code})")
            return
        if self.state != "running":
            worker.state = "stopped"
            return
        policy = self.policy
        if now - worker.started_mono >= policy.stable_seconds:
            worker.streak = 0
        worker.exits.append(now)
        while worker.exits and now - worker.exits[0] > policy.crash_loop_window_seconds:
            worker.exits.popleft()
        if len(worker.exits) > policy.crash_loop_restarts:
            worker.state = "crash_loop"
            worker.next_start = None
            self._say(
                f"{worker.spec.name} exited {len(worker.exits)} times within "
                f"{policy.crash_loop_window_seconds:g} s (last exit {code}): not restarting it; "
                f"see {worker.log_path}"
            )
            return
        delay = policy.delay(worker.streak)
        worker.streak += 1
        worker.state = "backoff"
        worker.next_start = now + delay
        self._say(f"{worker.spec.name} exited with {code}; restarting in {delay:g} s")

    def _run_scheduled(self, sched: _Scheduled) -> bool:
        worker = sched.worker
        if worker.proc is not None and worker.proc.returncode is None:
            sched.skipped += 1
            self._say(f"job {worker.spec.name} is still running: this run is skipped")
            return False
        if worker.proc is not None:
            worker.restarts += 1
        worker.spawn(self.env)
        sched.runs += 1
        sched.last_run = time.time()
        sched.last_status = "running"
        self._say(f"job {worker.spec.name} started (pid {worker.pid})")
        return True

    def trigger(self, name: str) -> bool:
        """Run the scheduled job *name* now (False if it is still running)."""
        with self._lock:
            if name not in self._schedules:
                raise UsageError(f"no schedule named {name!r}")
            return self._run_scheduled(self._schedules[name])

    def wait_job(self, name: str, timeout: float) -> str | None:
        """Wait for scheduled job *name* to finish; its final state (None on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.step()
            state = self._workers[name].state
            if state in ("succeeded", "failed"):
                return state
            time.sleep(0.1)
        return None

    def shutdown(self) -> None:
        """Stop every worker: its stop signal, then SIGKILL after the grace period."""
        with self._lock:
            if self.state in ("stopping", "stopped"):
                return
            self.state = "stopping"
            self.write_status(force=True)
            live = [
                w for w in self._workers.values() if w.proc is not None and w.proc.poll() is None
            ]
            for worker in live:
                worker.state = "stopping"
                worker.stop_sent = time.monotonic()
                worker.signal_group(worker.spec.stop_signal)
            deadline = time.monotonic() + self.policy.grace_seconds
            while time.monotonic() < deadline and any(w.proc.poll() is None for w in live):  # type: ignore[union-attr]
                if self._hurry:
                    break
                time.sleep(0.05)
            for worker in live:
                assert worker.proc is not None
                if worker.proc.poll() is None:
                    self._say(f"{worker.spec.name} did not stop in time: killing it")
                    worker.signal_group(signal.SIGKILL)
                    worker.proc.wait()
                else:
                    # the group may still hold grandchildren (a JVM, a pool): end them too
                    worker.signal_group(signal.SIGKILL)
                worker.last_exit_code = worker.proc.returncode
                worker.last_exit_wall = time.time()
            for worker in self._workers.values():
                if worker.state in ("running", "stopping", "backoff", "new", "restarting"):
                    worker.state = "stopped"
                    worker.next_start = None
            self.state = "stopped"
            self.write_status(force=True)

    def run(self, *, until: Callable[[], bool] | None = None, tick: float = 0.2) -> None:
        """Start, supervise until SIGINT/SIGTERM (or *until* returns True), then shut down.

        Signal handlers are installed only when called from the main thread; a second
        signal cuts the grace period short.
        """
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, self._on_signal)
        try:
            if self.state == "new":
                self.start()
            while not self.stop_event.is_set():
                self.step()
                if until is not None and until():
                    break
                self.stop_event.wait(tick)
        finally:
            try:
                self.shutdown()
            finally:
                for number, handler in previous.items():
                    signal.signal(number, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stop_event.is_set():
            self._hurry = True
        self.stop_event.set()

    # -- status ---------------------------------------------------------------------------

    def worker_pids(self) -> dict[str, int | None]:
        """The live pid of every worker (None when not running)."""
        with self._lock:
            return {
                name: (w.pid if w.proc is not None and w.proc.poll() is None else None)
                for name, w in self._workers.items()
            }

    def snapshot(self) -> dict[str, Any]:
        """The status document (what the status file holds)."""
        with self._lock:
            return {
                **self.info,
                "pid": os.getpid(),
                "state": self.state,
                "started_at": _iso(self.started_wall),
                "started_epoch": self.started_wall,
                "updated_epoch": time.time(),
                "workers": [w.row() for w in self._workers.values()],
                "schedules": [
                    {
                        "name": s.schedule.name,
                        "cron": s.schedule.cron,
                        "worker": s.worker.spec.name,
                        "next_run_at": _iso(s.next_run),
                        "last_run_at": _iso(s.last_run),
                        "last_status": s.last_status,
                        "runs": s.runs,
                        "skipped": s.skipped,
                    }
                    for s in self._schedules.values()
                ],
            }

    def write_status(self, *, force: bool = False) -> None:
        """Rewrite the status file (atomically), at most about once a second."""
        if self.status_path is None:
            return
        now = time.monotonic()
        if not force and now - self._last_status < 1.0:
            return
        self._last_status = now
        path = self.status_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.snapshot(), indent=1), encoding="utf-8")
        os.replace(tmp, path)


def read_status(path: Path) -> dict[str, Any] | None:
    """The status file at *path*, with liveness checked and uptimes computed.

    A supervisor whose process is gone while its file says it runs is ``dead``; so is
    each of its workers whose process is gone (``orphaned`` if it still runs).
    """
    try:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    now = time.time()
    alive = pid_alive(doc.get("pid"))
    if doc.get("state") in ("running", "stopping") and not alive:
        doc["state"] = "dead"
    for worker in doc.get("workers", []):
        pid = worker.get("pid")
        if doc["state"] == "dead" and worker.get("state") in ("running", "stopping"):
            worker["state"] = "orphaned" if pid_alive(pid) else "dead"
        started = worker.get("started_epoch")
        worker["uptime_s"] = (
            round(now - started, 1)
            if started is not None and worker.get("state") == "running"
            else None
        )
    started = doc.get("started_epoch")
    doc["uptime_s"] = (
        round(now - started, 1) if started is not None and doc["state"] == "running" else None
    )
    return doc
