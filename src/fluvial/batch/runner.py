"""Running models: in dependency order, one lock per model, retries, history, hooks.

:func:`run` builds the selected models in topological order. A model whose upstream
failed, or whose upstream's output failed a quality check, is skipped ("blocked by …").
Transient errors (a lost commit race, an I/O error, a locked file) are retried with
exponential backoff; everything else fails the model at once. :func:`backfill` rebuilds
the day partitions of a date range. :func:`check_freshness` compares each model's last
successful build with its ``freshness`` SLA.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fluvial.batch.dag import Dag
from fluvial.batch.engines import create_engine
from fluvial.batch.history import History, ModelRecord
from fluvial.batch.hooks import NoHooks, RunHooks
from fluvial.batch.locks import model_lock
from fluvial.batch.materialize import BuildContext, BuildResult, backfill_day, build
from fluvial.batch.models import Model, load_models
from fluvial.batch.warehouse import Warehouse
from fluvial.errors import CommitConflictError, FluvialError, UsageError
from fluvial.lake import open_lake
from fluvial.project import Project

__all__ = [
    "FreshnessStatus",
    "RunResult",
    "backfill",
    "check_freshness",
    "history",
    "is_transient",
    "run",
]

#: called with (model, status) as models start ("running") and finish
Progress = Callable[[str, str], None]


def history(project: Project) -> History:
    """The project's run history."""
    return History(project.data_dir / "batch" / "history.db")


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may help: commit races, I/O errors, locked files (not bad SQL)."""
    import duckdb
    from pyiceberg.exceptions import CommitFailedException

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(
            seen,
            CommitFailedException
            | CommitConflictError
            | duckdb.IOException
            | duckdb.TransactionException
            | sqlite3.OperationalError
            | TimeoutError
            | ConnectionError,
        ):
            return True
        if isinstance(seen, OSError) and not isinstance(
            seen, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError
        ):
            return True
        seen = seen.__cause__
    return False


@dataclass
class RunResult:
    """What a run (or backfill) did: its id, status and every model's record."""

    run_id: str
    status: str  # success | error
    models: list[ModelRecord] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""

    @property
    def ok(self) -> bool:
        """Whether no model failed."""
        return self.status == "success"

    def model(self, name: str) -> ModelRecord:
        """The record of model *name*."""
        return next(m for m in self.models if m.model == name)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "models": [m.as_dict() for m in self.models],
        }


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


class _Session:
    """One run's resources: lake, models, engine, warehouse, history."""

    def __init__(
        self,
        project: Project,
        select: str | Iterable[str] | None,
        engine: str | None,
        hooks: RunHooks | None,
        full_refresh: bool,
        now: datetime | None,
    ) -> None:
        self.project = project
        self.settings = project.settings.batch
        self.engine_name = engine or self.settings.engine
        self.lake = open_lake(project)
        try:
            from fluvial.batch.models import existing_tables

            self.models = load_models(project, existing_tables(project))
            self.dag = Dag(
                {n: m.depends_on for n, m in self.models.items()},
                {n: m.config.tags for n, m in self.models.items()},
            )
            self.selected = self.dag.select(select)
        except BaseException:
            self.lake.close()
            raise
        self.selection = select if isinstance(select, str) else " ".join(select or [])
        needs_marts = any(
            self.models[n].zone == "marts"
            or any(d.startswith("marts.") for d in self.models[n].depends_on)
            for n in self.selected
        )
        self.warehouse = Warehouse(project, self.lake) if needs_marts else None
        self.run_id = str(uuid.uuid4())
        self.history = history(project)
        self.hooks: RunHooks = hooks or NoHooks()
        self.ctx = BuildContext(
            project=project,
            lake=self.lake,
            engine=create_engine(self.engine_name, project, self.lake, self.warehouse),
            warehouse=self.warehouse,
            models=self.models,
            hooks=self.hooks,
            run_id=self.run_id,
            now=now or datetime.now(UTC),
            full_refresh=full_refresh,
        )

    def close(self) -> None:
        self.ctx.engine.close()
        if self.warehouse is not None:
            self.warehouse.close()
        self.lake.close()

    def attempt(
        self, model: Model, step: Callable[[], BuildResult], rec: ModelRecord
    ) -> BuildResult:
        """Run *step* under the model's lock, retrying transient errors with backoff."""
        retries = max(0, self.settings.retries)
        delay = self.settings.retry_backoff_seconds
        locks = self.project.data_dir / "batch" / "locks"
        while True:
            rec.attempts += 1
            try:
                with model_lock(
                    locks,
                    model.name,
                    timeout=self.settings.lock_timeout_seconds,
                    run_id=self.run_id,
                ):
                    return step()
            except Exception as exc:
                if rec.attempts > retries or not is_transient(exc):
                    raise
                rec.log.append(f"attempt {rec.attempts} failed ({exc}); retrying in {delay:g} s")
                time.sleep(delay)
                delay *= 2


def _execute(
    session: _Session,
    kind: str,
    steps: Callable[[Model], list[Callable[[], BuildResult]]],
    progress: Progress | None,
    full_refresh: bool,
) -> RunResult:
    started = datetime.now(UTC)
    session.history.start_run(
        session.run_id,
        kind=kind,
        selection=session.selection,
        engine=session.engine_name,
        full_refresh=full_refresh,
    )
    result = RunResult(session.run_id, "success", started_at=_iso(started))
    blocked: dict[str, str] = {}  # model -> why its descendants must not run
    try:
        for name in session.selected:
            model = session.models[name]
            rec = ModelRecord(name, "running", started_at=_iso(datetime.now(UTC)))
            reason = next((blocked[p] for p in session.dag.ancestors(name) if p in blocked), None)
            if reason is not None:
                rec.status, rec.message = "skipped", reason
                blocked[name] = reason
            else:
                _build_one(session, model, rec, steps(model), progress, blocked)
            rec.finished_at = _iso(datetime.now(UTC))
            session.history.record_model(session.run_id, rec)
            result.models.append(rec)
            if progress is not None:
                progress(name, rec.status)
            if rec.status == "error":
                result.status = "error"
    finally:
        session.history.finish_run(session.run_id, result.status)
        session.close()
    result.finished_at = _iso(datetime.now(UTC))
    return result


def _build_one(
    session: _Session,
    model: Model,
    rec: ModelRecord,
    steps: list[Callable[[], BuildResult]],
    progress: Progress | None,
    blocked: dict[str, str],
) -> None:
    if progress is not None:
        progress(model.name, "running")
    clock = time.perf_counter()
    session.hooks.model_started(model, session.run_id)
    try:
        outcomes = [session.attempt(model, step, rec) for step in steps]
    except Exception as exc:
        rec.status = "error"
        rec.error = str(exc) if isinstance(exc, FluvialError) else f"{type(exc).__name__}: {exc}"
        rec.seconds = time.perf_counter() - clock
        blocked[model.name] = f"upstream {model.name} failed"
        session.hooks.model_failed(model, session.run_id, rec.error)
        return
    rec.seconds = time.perf_counter() - clock
    rec.rows_in = sum(o.rows_in for o in outcomes)
    rec.rows_written = sum(o.rows_written for o in outcomes)
    rec.status = "success" if any(o.status == "success" for o in outcomes) else "up_to_date"
    rec.message = "; ".join(o.message for o in outcomes if o.message)
    for outcome in outcomes:
        quality = outcome.quality
        if quality is None:
            continue
        rec.quarantined += quality.quarantined
        if not quality.passed:
            reason = quality.reason or f"blocked by a quality rule on {model.name}"
            blocked[model.name] = reason
            rec.message = reason
    schema = next((o.schema for o in reversed(outcomes) if o.schema is not None), None)
    session.hooks.model_completed(model, session.run_id, schema)


def run(
    project: Project,
    select: str | Iterable[str] | None = None,
    full_refresh: bool = False,
    engine: str | None = None,
    *,
    hooks: RunHooks | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> RunResult:
    """Build the selected models (all by default) in dependency order.

    Args:
        project: the project.
        select: selectors such as ``"clicks+"``, ``"+marts.daily"``, ``"tag:pii"``.
        full_refresh: rebuild incremental models from all their input.
        engine: ``duckdb`` or ``spark`` (default: ``[batch] engine``).
        hooks: quality and lineage callbacks (default: none).
        progress: called with (model, status) as models start and finish.
        now: the run's time (snapshots' ``valid_from``); default: the clock.

    Raises:
        ConfigError, SqlError, NotFoundError: the models are invalid or unknown.
    """
    session = _Session(project, select, engine, hooks, full_refresh, now)
    return _execute(
        session, "run", lambda m: [lambda: build(m, session.ctx)], progress, full_refresh
    )


def _days(start: date, end: date) -> list[date]:
    if end < start:
        raise UsageError(f"backfill: the end ({end}) is before the start ({start})")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def backfill(
    project: Project,
    start: date,
    end: date,
    select: str | Iterable[str] | None = None,
    *,
    engine: str | None = None,
    hooks: RunHooks | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> RunResult:
    """Rebuild each day in [start, end] of the selected models, one commit per day.

    A model partitioned by time first catches up (an ordinary build), then each day's
    rows are recomputed from its full input and replace that day's rows
    (``insert_overwrite``): running a backfill twice leaves the same tables. Models not
    partitioned by time are built as :func:`run` would (tables and views re-read
    everything; incremental and snapshot models take their new data).
    """
    days = _days(start, end)
    session = _Session(project, select, engine, hooks, False, now)

    def steps(model: Model) -> list[Callable[[], BuildResult]]:
        catch_up: list[Callable[[], BuildResult]] = [lambda: build(model, session.ctx)]
        by = model.config.partition_by
        if by is None or not by.is_time or model.config.materialized in ("view", "snapshot"):
            return catch_up
        return catch_up + [lambda d=day: backfill_day(model, session.ctx, d) for day in days]

    return _execute(session, "backfill", steps, progress, False)


@dataclass(frozen=True)
class FreshnessStatus:
    """A model's freshness against its SLA."""

    model: str
    status: str  # ok | warn | error | never
    last_success: datetime | None
    age_seconds: float | None
    warn_after: float | None
    error_after: float | None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "model": self.model,
            "status": self.status,
            "last_success": self.last_success.isoformat() if self.last_success else None,
            "age_seconds": self.age_seconds,
            "warn_after": self.warn_after,
            "error_after": self.error_after,
        }


def check_freshness(project: Project, now: datetime | None = None) -> list[FreshnessStatus]:
    """Every model with a ``freshness`` SLA, and whether its last build is too old."""
    from fluvial.batch.models import discover

    now = now or datetime.now(UTC)
    runs = history(project)
    out: list[FreshnessStatus] = []
    for model in discover(project.root / project.settings.batch.models_dir):
        sla = model.config.freshness
        if sla is None:
            continue
        last = runs.last_success(model.name)
        age = (now - last).total_seconds() if last is not None else None
        if age is None:
            status = "never" if sla.error_after is None else "error"
        elif sla.error_after is not None and age > sla.error_after:
            status = "error"
        elif sla.warn_after is not None and age > sla.warn_after:
            status = "warn"
        else:
            status = "ok"
        out.append(FreshnessStatus(model.name, status, last, age, sla.warn_after, sla.error_after))
    return out
