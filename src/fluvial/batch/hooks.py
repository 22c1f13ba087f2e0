"""Where data quality and lineage plug into batch runs: the :class:`RunHooks` protocol.

The runner calls, for each model: :meth:`~RunHooks.model_started`, then
:meth:`~RunHooks.check_output` on the rows it is about to write (which may drop failing
rows and say the output failed, blocking every model downstream), then
:meth:`~RunHooks.model_completed` or :meth:`~RunHooks.model_failed`. :class:`NoHooks` does
nothing; :class:`QualityHooks` and :class:`LineageHooks` call ``fluvial.quality`` and
``fluvial.lineage`` (imported when first used); :class:`Hooks` chains several.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pyarrow as pa

if TYPE_CHECKING:
    from fluvial.batch.models import Model
    from fluvial.project import Project

__all__ = [
    "Hooks",
    "LineageHooks",
    "NoHooks",
    "QualityHooks",
    "QualityOutcome",
    "RunHooks",
    "model_run_id",
]


@dataclass(frozen=True)
class QualityOutcome:
    """What a quality check says about a model's output."""

    #: the rows to write (failing rows removed, e.g. quarantined)
    data: pa.Table
    passed: bool = True
    #: why downstream models are blocked, e.g. "blocked by not_null(user_id) on refined.x"
    reason: str = ""
    quarantined: int = 0
    report: Any = None


class RunHooks(Protocol):
    """Callbacks around each model of a run."""

    def model_started(self, model: Model, run_id: str) -> None:
        """The model is about to be built."""

    def check_output(self, model: Model, run_id: str, data: pa.Table) -> QualityOutcome:
        """Check the rows about to be written; return those to write and the verdict."""
        ...

    def model_completed(self, model: Model, run_id: str, schema: pa.Schema | None) -> None:
        """The model's output was committed (*schema*: its columns; None for a view)."""

    def model_failed(self, model: Model, run_id: str, error: str) -> None:
        """Building the model failed (after its retries)."""


class NoHooks:
    """Hooks that do nothing: every output passes."""

    def model_started(self, model: Model, run_id: str) -> None:
        """Nothing."""

    def check_output(self, model: Model, run_id: str, data: pa.Table) -> QualityOutcome:
        """Every row passes."""
        return QualityOutcome(data)

    def checks_output(self, model: Model) -> bool:
        """Whether :meth:`check_output` must see the model's whole output (else the build
        may stream it in batches): true when a subclass checks rows."""
        return type(self).check_output is not NoHooks.check_output

    def model_completed(self, model: Model, run_id: str, schema: pa.Schema | None) -> None:
        """Nothing."""

    def model_failed(self, model: Model, run_id: str, error: str) -> None:
        """Nothing."""


class Hooks(NoHooks):
    """Several hooks in order; quality outcomes chain (each sees the rows the last kept)."""

    def __init__(self, *hooks: RunHooks) -> None:
        self.hooks = hooks

    def model_started(self, model: Model, run_id: str) -> None:
        """Tell every hook."""
        for hook in self.hooks:
            hook.model_started(model, run_id)

    def checks_output(self, model: Model) -> bool:
        """Whether any hook must see the whole output."""
        return any(_checks(hook, model) for hook in self.hooks)

    def check_output(self, model: Model, run_id: str, data: pa.Table) -> QualityOutcome:
        """Each hook checks what the previous one kept; the first failure blocks."""
        outcome = QualityOutcome(data)
        for hook in self.hooks:
            step = hook.check_output(model, run_id, outcome.data)
            outcome = QualityOutcome(
                step.data,
                outcome.passed and step.passed,
                outcome.reason or step.reason,
                outcome.quarantined + step.quarantined,
                step.report if step.report is not None else outcome.report,
            )
        return outcome

    def model_completed(self, model: Model, run_id: str, schema: pa.Schema | None) -> None:
        """Tell every hook."""
        for hook in self.hooks:
            hook.model_completed(model, run_id, schema)

    def model_failed(self, model: Model, run_id: str, error: str) -> None:
        """Tell every hook."""
        for hook in self.hooks:
            hook.model_failed(model, run_id, error)


def _checks(hooks: object, model: Model) -> bool:
    """Whether *hooks* need a model's whole output (hooks that do not say: they do)."""
    checks = getattr(hooks, "checks_output", None)
    return True if checks is None else bool(checks(model))


def without_rows(data: pa.Table, failing: pa.Table) -> pa.Table:
    """*data* minus every row equal (nulls equal too) to a row of *failing* (vectorized)."""
    import duckdb

    from fluvial.lake.query import quote

    cols = [c for c in data.schema.names if c in failing.schema.names]
    if failing.num_rows == 0 or not cols:
        return data
    on = " AND ".join(f"d.{quote(c)} IS NOT DISTINCT FROM f.{quote(c)}" for c in cols)
    con = duckdb.connect()
    try:
        con.register("d_in", data)
        con.register("f_in", failing.select(cols))
        return con.sql(
            f"SELECT d.* FROM d_in d ANTI JOIN (SELECT DISTINCT * FROM f_in) f ON {on}"
        ).to_arrow_table()
    finally:
        con.close()


class QualityHooks(NoHooks):
    """Evaluate a model's quality rules, record the report, quarantine failing rows."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def check_output(self, model: Model, run_id: str, data: pa.Table) -> QualityOutcome:
        """``fluvial.quality.evaluate`` → ``record`` → ``quarantine``; write the rest."""
        import fluvial.quality as quality  # type: ignore[import-not-found,unused-ignore]

        # the rules beside the model (front matter, sidecar or .quality.yml), found by name
        report = quality.evaluate(self.project, model.name, data)
        quality.record(self.project, report)
        failing = report.failing_rows
        quarantined = 0
        if failing is not None and failing.num_rows:
            quarantined = quality.quarantine(self.project, model.name, failing)
            data = without_rows(data, failing)
        reason = ""
        if not report.passed:
            names = [
                str(_get(r, "name"))
                for r in report.results
                if not _get(r, "passed") and _get(r, "severity") == "error"
            ]
            reason = f"blocked by {', '.join(names) or 'a quality rule'} on {model.name}"
        return QualityOutcome(data, bool(report.passed), reason, quarantined, report)


def model_run_id(run_id: str, model: str) -> str:
    """A UUID for one model within a run (OpenLineage runs are UUIDs), stable per pair."""
    try:
        namespace = uuid.UUID(run_id)
    except ValueError:
        namespace = uuid.uuid5(uuid.NAMESPACE_URL, run_id)
    return str(uuid.uuid5(namespace, model))


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


class LineageHooks(NoHooks):
    """Emit OpenLineage START / COMPLETE / FAIL events for each model."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def _emit(
        self,
        model: Model,
        run_id: str,
        event_type: Literal["START", "COMPLETE", "FAIL"],
        **extra: Any,
    ) -> None:
        import fluvial.lineage as lineage  # type: ignore[import-not-found,unused-ignore]

        event = lineage.run_event(
            event_type,
            job=model.name,
            run_id=model_run_id(run_id, model.name),
            inputs=list(model.depends_on),
            outputs=[model.name],
            sql=model.sql,
            **extra,
        )
        lineage.emit(self.project, event)

    def model_started(self, model: Model, run_id: str) -> None:
        """A START event."""
        self._emit(model, run_id, "START")

    def model_completed(self, model: Model, run_id: str, schema: pa.Schema | None) -> None:
        """A COMPLETE event with the output's schema."""
        self._emit(model, run_id, "COMPLETE", schemas={model.name: schema} if schema else None)

    def model_failed(self, model: Model, run_id: str, error: str) -> None:
        """A FAIL event with the error."""
        self._emit(model, run_id, "FAIL", error=error)
