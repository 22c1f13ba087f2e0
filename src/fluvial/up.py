"""``fluvial up``: the whole platform of a project as one supervised process tree.

:func:`plan` turns a project into worker processes (each ``python -m fluvial …``):

- ``web``: ``fluvial serve`` — the collector (``/v1``), the API (``/api``), the UI (``/``)
  and ``/metrics`` on one port (:mod:`fluvial.serve.app`);
- ``stream-<name>``: ``fluvial stream run pipelines/<name>.sql`` for every pipeline file,
  ``--from checkpoint`` once the job's current version has a checkpoint (decided at every
  restart); stopped with SIGINT, on which a pipeline takes a last checkpoint. After a
  Kappa switch (``fluvial stream replay``, ``switch``, ``rollback``) the worker is
  restarted on the version readers now use, from that version's checkpoint, so the live
  outputs continue from it;
- ``archiver``: ``fluvial lake archive`` (``[up] archive``);
- ``alerts``: the alert evaluator, when :mod:`fluvial.serve.alerts` is installed;

and cron schedules: ``batch`` (``[batch] schedule``: ``fluvial batch run``) and
``maintenance`` (``[up] maintenance_schedule``: ``fluvial maintain``, see
:func:`run_maintenance`). :class:`~fluvial.serve.supervisor.Supervisor` keeps them running
(backoff, crash-loop limit, graceful shutdown) and writes ``<data_dir>/up/status.json``,
which :func:`platform_status` (``fluvial status``) reads together with the pipelines'
own status files. Worker output goes to ``<data_dir>/up/logs/<worker>.log``.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fluvial.errors import ConfigError, FluvialError, UsageError
from fluvial.project import Project
from fluvial.serve.app import status_path
from fluvial.serve.supervisor import (
    JOB,
    RestartPolicy,
    Schedule,
    Supervisor,
    WorkerSpec,
    next_fire,
    read_status,
)

__all__ = [
    "batch_schedules",
    "build_supervisor",
    "plan",
    "platform_status",
    "run_alerts",
    "run_maintenance",
    "run_up",
]

CRON_FIELDS = 5


def _fluvial(*args: str) -> list[str]:
    return [sys.executable, "-m", "fluvial", *args]


def _own(*args: str) -> list[str]:
    """This module's commands (serve, maintain, worker), runnable before the root command
    registers them."""
    return [sys.executable, "-m", "fluvial.up", *args]


def batch_schedules(text: str) -> list[tuple[str, str | None]]:
    """``[batch] schedule`` as (cron, selection) pairs.

    >>> batch_schedules("*/15 * * * * tag:hourly; 0 2 * * *")
    [('*/15 * * * *', 'tag:hourly'), ('0 2 * * *', None)]
    >>> batch_schedules("")
    []
    """
    pairs: list[tuple[str, str | None]] = []
    for entry in text.split(";"):
        words = entry.split()
        if not words:
            continue
        if len(words) < CRON_FIELDS:
            raise ConfigError(
                f"batch.schedule: expected a cron expression of five fields (and an optional "
                f"selection), found {entry.strip()!r}"
            )
        cron = " ".join(words[:CRON_FIELDS])
        next_fire(cron, 0.0)
        selection = " ".join(words[CRON_FIELDS:]) or None
        pairs.append((cron, selection))
    return pairs


def alerts_available() -> bool:
    """Whether the alert evaluator (:mod:`fluvial.serve.alerts`) is installed."""
    try:
        return importlib.util.find_spec("fluvial.serve.alerts") is not None
    except (ImportError, ValueError):
        return False


def _pipeline_argv(project: Project, file: Path) -> Callable[[], list[str]]:
    def argv() -> list[str]:
        from fluvial.stream.checkpoint import CheckpointStore
        from fluvial.stream.runtime import job_dir
        from fluvial.stream.versions import current_version, version_job_name

        args = ["stream", "run", str(file), "--project", str(project.root)]
        job = version_job_name(file.stem, current_version(project, file.stem))
        if CheckpointStore(job_dir(project, job) / "checkpoints").latest() is not None:
            args += ["--from", "checkpoint"]
        return _fluvial(*args)

    return argv


def _pipeline_revision(project: Project, file: Path) -> Callable[[], str]:
    """The version of *file*'s job readers use (its worker restarts when it changes)."""

    def revision() -> str:
        from fluvial.stream.versions import current_version

        return f"version {current_version(project, file.stem)}"

    return revision


def plan(project: Project, *, host: str, port: int) -> tuple[list[WorkerSpec], list[Schedule]]:
    """The workers and schedules ``fluvial up`` runs for *project*."""
    root = str(project.root)
    settings = project.settings
    env = {"PYTHONUNBUFFERED": "1"}
    # The collector's retention pass takes the writer role of every topic it finds, also
    # those a pipeline writes (active_users): under `up` it would lock them out. Until it
    # trims only the topics it writes, the web worker leaves retention alone.
    web_env = {**env, "FLUVIAL_LOG__RETENTION_CHECK_SECONDS": "0"}
    workers = [
        WorkerSpec(
            "web",
            _own("serve", "--project", root, "--host", host, "--port", str(port)),
            env=web_env,
            cwd=project.root,
        )
    ]
    pipelines = sorted((project.root / "pipelines").glob("*.sql"))
    for file in pipelines:
        workers.append(
            WorkerSpec(
                f"stream-{file.stem}",
                _pipeline_argv(project, file),
                stop_signal=signal.SIGINT,  # `stream run` checkpoints and commits on SIGINT
                env=env,
                cwd=project.root,
                revision=_pipeline_revision(project, file),
            )
        )
    if settings.up.archive:
        workers.append(
            WorkerSpec(
                "archiver",
                _fluvial("lake", "archive", "--json", "--project", root),
                env=env,
                cwd=project.root,
            )
        )
    if alerts_available():
        workers.append(
            WorkerSpec(
                "alerts", _own("worker", "alerts", "--project", root), env=env, cwd=project.root
            )
        )
    schedules: list[Schedule] = []
    for k, (cron, selection) in enumerate(batch_schedules(settings.batch.schedule)):
        args = ["batch", "run", "--json", "--project", root]
        if selection:
            args += ["--select", selection]
        name = "batch" if k == 0 else f"batch-{k + 1}"
        schedules.append(
            Schedule(
                name, cron, WorkerSpec(name, _fluvial(*args), kind=JOB, env=env, cwd=project.root)
            )
        )
    if settings.up.maintenance_schedule.strip():
        schedules.append(
            Schedule(
                "maintenance",
                settings.up.maintenance_schedule.strip(),
                WorkerSpec(
                    "maintenance",
                    _own("maintain", "--json", "--project", root),
                    kind=JOB,
                    env=env,
                    cwd=project.root,
                ),
            )
        )
    return workers, schedules


def policy_of(project: Project) -> RestartPolicy:
    """The restart policy ``[up]`` configures."""
    up = project.settings.up
    return RestartPolicy(
        backoff_seconds=up.restart_backoff_seconds,
        backoff_max_seconds=up.restart_backoff_max_seconds,
        crash_loop_restarts=up.crash_loop_restarts,
        crash_loop_window_seconds=up.crash_loop_window_seconds,
        grace_seconds=up.grace_seconds,
    )


def _ensure_topics(project: Project) -> None:
    """Create the events topics before the pipelines read them (then let go of them)."""
    from fluvial.events.envelope import EVENT_SCHEMA, FAILED_SCHEMA

    names = project.settings.log
    try:
        with project.open_log() as log:
            for topic, schema in (
                (names.events_topic, EVENT_SCHEMA),
                (names.failed_topic, FAILED_SCHEMA),
            ):
                log.create_topic(topic, names.partitions, schema=schema, exist_ok=True)
    except FluvialError:
        pass  # another process writes them: they exist


def build_supervisor(
    project: Project,
    *,
    host: str | None = None,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    on_event: Callable[[str], None] | None = None,
) -> Supervisor:
    """A supervisor of *project*'s workers (not started), refusing a second ``up``."""
    host = project.settings.collector.host if host is None else host
    port = project.settings.collector.port if port is None else port
    if not 1 <= port <= 65535:
        raise UsageError(f"port must be between 1 and 65535, found {port}")
    path = status_path(project)
    current = read_status(path)
    if current is not None and current.get("state") in ("running", "stopping"):
        raise UsageError(
            f"fluvial up already runs for {project.root} (pid {current.get('pid')}); "
            "stop it first (Ctrl-C or kill -TERM that pid)"
        )
    workers, schedules = plan(project, host=host, port=port)
    _ensure_topics(project)
    url = f"http://{host}:{port}"
    return Supervisor(
        workers,
        schedules=schedules,
        policy=policy_of(project),
        status_path=path,
        log_dir=path.parent / "logs",
        env=env,
        info={"project": str(project.root), "url": url, "host": host, "port": port},
        on_event=on_event,
    )


def run_up(
    project: Project,
    *,
    host: str | None = None,
    port: int | None = None,
    on_event: Callable[[str], None] | None = None,
) -> None:
    """Run the platform until SIGINT or SIGTERM, then stop every worker gracefully."""
    build_supervisor(project, host=host, port=port, on_event=on_event).run()


def platform_status(project: Project) -> dict[str, Any]:
    """``fluvial up``'s status file (liveness checked) and every stream job's pipelines."""
    from fluvial.stream.status import job_status, list_jobs

    doc = read_status(status_path(project))
    stream_dir = project.data_dir / "stream"
    pipelines = [row for job in list_jobs(stream_dir) for row in job_status(stream_dir / job)]
    if doc is None:
        doc = {"state": "not running", "workers": [], "schedules": []}
    return {**doc, "project": str(project.root), "pipelines": pipelines}


# -- the workers that are functions of this module -----------------------------------------


def run_alerts(project: Project, stop: threading.Event | None = None) -> None:
    """The alert evaluator's loop, until *stop* (or SIGTERM/SIGINT in the main thread)."""
    from fluvial.serve.alerts import AlertEvaluator

    stop = stop or threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda s, f: stop.set())
    try:
        with AlertEvaluator(project) as evaluator:
            evaluator.run(stop)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _count(call: Callable[[], list[str]]) -> int:
    return len(call())


def run_maintenance(
    project: Project,
    *,
    target_file_mb: float = 128.0,
    min_files: int = 5,
    orphan_age_days: float = 3.0,
) -> list[dict[str, Any]]:
    """Routine lake maintenance on every table; one row per table and operation.

    Compaction (bins of at least *min_files* small files), snapshot expiry (the table's
    ``history.expire.*`` properties, else 5 days keeping 1), retention where the table
    sets ``fluvial.retention-days``, and removal of orphan files older than
    *orphan_age_days*. A failing table is reported and the others still run.
    """
    from datetime import timedelta
    from functools import partial

    from fluvial.lake.catalog import open_lake
    from fluvial.lake.maintenance import MiB, compact, expire_snapshots, remove_orphans, retain

    rows: list[dict[str, Any]] = []

    def step(name: str, operation: str, call: Callable[[], Any]) -> None:
        try:
            result = call()
        except FluvialError as exc:
            rows.append({"table": name, "operation": operation, "error": str(exc)})
            return
        detail = result.to_dict() if hasattr(result, "to_dict") else {"orphans": result}
        rows.append({"table": name, "operation": operation, **detail})

    with open_lake(project) as lake:
        for name in lake.tables():
            props = lake.table(name).properties
            age = timedelta(
                milliseconds=int(props.get("history.expire.max-snapshot-age-ms", 432e6))
            )
            keep = int(props.get("history.expire.min-snapshots-to-keep", 1))
            days = float(props.get("fluvial.retention-days", 0) or 0)
            step(
                name,
                "compact",
                partial(
                    compact,
                    lake.table(name),
                    target_file_size=int(target_file_mb * MiB),
                    min_input_files=min_files,
                ),
            )
            # each operation commits: the next one starts from the table as it is now
            step(
                name,
                "expire",
                partial(expire_snapshots, lake.table(name), older_than=age, retain_last=keep),
            )
            if days > 0:
                step(name, "retain", partial(retain, lake.table(name), days=days))
            orphans = partial(
                remove_orphans, lake.table(name), older_than=timedelta(days=orphan_age_days)
            )
            step(name, "orphans", partial(_count, orphans))
    return rows


if __name__ == "__main__":
    from fluvial.cli.up import main

    sys.exit(main())
