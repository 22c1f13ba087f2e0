"""The alert evaluator: read each rule's value, decide its state, notify its channels.

States and their changes::

    OK ──condition──▶ PENDING ──held for `for`──▶ FIRING ──condition gone──▶ RESOLVED ──▶ OK
     │                  └──condition gone──▶ OK      ▲
     └──condition, `for` = 0────────────────────────┘

Entering FIRING notifies the rule's channels unless a notification went out less than
``cooldown`` ago (a flapping rule then stays quiet); entering RESOLVED notifies them when
the FIRING did. Every change is kept in the history with its value, message and what each
channel did. A rule whose value cannot be read keeps its state and shows the error.

Time comes from ``now`` (epoch seconds) or the evaluator's ``clock``, so tests move it
without sleeping. The supervisor runs :meth:`AlertEvaluator.run` in a thread.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from fluvial.errors import FluvialError
from fluvial.serve.alerts.catalog import RuleCatalog, RuleEntry
from fluvial.serve.alerts.channels import Notification, deliver
from fluvial.serve.alerts.rules import AlertRule, compare
from fluvial.serve.alerts.sources import (
    PipelineSampler,
    PipelineStatus,
    metric_value,
    model_ages,
    store_value,
)
from fluvial.serve.alerts.store import AlertStore, RuleState, open_alert_store

if TYPE_CHECKING:
    from fluvial.project import Project
    from fluvial.serve.store import Store

__all__ = ["STATES", "AlertEvaluator", "Verdict", "judge"]

log = logging.getLogger("fluvial.alerts")

STATES = ("OK", "PENDING", "FIRING", "RESOLVED")


@dataclass(frozen=True)
class Verdict:
    """Whether a rule's condition holds now, and why (for messages)."""

    holds: bool
    message: str


def _fmt(value: float | None) -> str:
    if value is None:
        return "none"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:g}" if not float(value).is_integer() else str(int(value))


def judge(
    rule: AlertRule,
    value: float | None,
    now: float,
    samples: list[tuple[float, float]],
    changed_at: float | None,
) -> Verdict:
    """Decide *rule*'s condition for *value* at *now*.

    *samples* are the rule's earlier (time, value) pairs, oldest first; *changed_at* is
    when the value last changed (for ``absence``).

    >>> from fluvial.serve.alerts.rules import AlertRule
    >>> r = AlertRule(name="r", kind="threshold", metric="late_rows", threshold=10)
    >>> judge(r, 12, 0.0, [], None).holds, judge(r, 3, 0.0, [], None).holds
    (True, False)
    """
    desc = rule.describe()
    if rule.source == "freshness" and value is None:
        return Verdict(True, f"{desc}: never built")
    if rule.kind == "absence":
        assert rule.window_seconds is not None
        if value is None:
            return Verdict(True, f"{desc}: no value")
        quiet = now - (changed_at if changed_at is not None else now)
        return Verdict(
            quiet >= rule.window_seconds, f"{desc}: value {_fmt(value)}, unchanged {quiet:g}s"
        )
    if value is None:
        return Verdict(False, f"{desc}: no value")
    if rule.kind == "threshold":
        assert rule.threshold is not None
        return Verdict(compare(value, rule.op, rule.threshold), f"{desc}: value {_fmt(value)}")
    if rule.kind == "change":
        assert rule.threshold is not None and rule.window_seconds is not None
        earlier = [s for s in samples if s[0] < now]
        if not earlier:
            return Verdict(False, f"{desc}: value {_fmt(value)}, no earlier value yet")
        before = [s for s in earlier if s[0] <= now - rule.window_seconds]
        t0, v0 = before[-1] if before else earlier[0]
        if rule.change == "percent":
            change = (value - v0) / abs(v0) * 100 if v0 else (0.0 if value == v0 else math.inf)
            unit = "%"
        else:
            change = (value - v0) / (now - t0)
            unit = "/s"
        return Verdict(
            compare(change, rule.op, rule.threshold),
            f"{desc}: value {_fmt(value)}, change {_fmt(round(change, 6))}{unit} "
            f"since {_fmt(v0)} {now - t0:g}s ago",
        )
    # anomaly: a z-score against the mean and deviation of the last `baseline` values
    base = [v for t, v in samples if t < now][-rule.baseline :]
    if len(base) < rule.min_samples:
        return Verdict(
            False, f"{desc}: value {_fmt(value)}, baseline {len(base)}/{rule.min_samples} values"
        )
    mean = statistics.fmean(base)
    spread = statistics.pstdev(base)
    if spread == 0:
        z = 0.0 if value == mean else math.copysign(math.inf, value - mean)
    else:
        z = (value - mean) / spread
    limit = rule.z_threshold
    holds = {"both": abs(z) >= limit, "above": z >= limit, "below": z <= -limit}[rule.direction]
    return Verdict(
        holds,
        f"{desc}: value {_fmt(value)}, z {_fmt(round(z, 3))} against mean {_fmt(round(mean, 6))} "
        f"sd {_fmt(round(spread, 6))}",
    )


class _Metrics:
    """The evaluator's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.evaluations = Counter(
            "fluvial_alerts_evaluations", "Evaluation rounds done", registry=self.registry
        )
        self.errors = Counter(
            "fluvial_alerts_rule_errors",
            "Rule values that could not be read",
            registry=self.registry,
        )
        self.state = Gauge(
            "fluvial_alerts_rule_state",
            "1 for each rule's current state",
            ["rule", "state"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "fluvial_alerts_notifications",
            "Notifications by channel type and outcome (sent, failed)",
            ["channel", "outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class AlertEvaluator:
    """Evaluates a project's alert rules: :meth:`evaluate_once` or the :meth:`run` loop.

    *clock* gives epoch seconds when ``now`` is not passed; *store* (the operational
    store) and *alerts* (the alert database) default to the project's.
    """

    def __init__(
        self,
        project: Project,
        *,
        clock: Callable[[], float] = time.time,
        store: Store | None = None,
        alerts: AlertStore | None = None,
        sampler: PipelineSampler | None = None,
    ) -> None:
        self.project = project
        self.settings = project.settings.alerts
        self.clock = clock
        self.alerts = alerts if alerts is not None else open_alert_store(project)
        self.catalog = RuleCatalog(project, self.alerts)
        self.sampler = sampler or PipelineSampler(project, clock=clock)
        self.metrics = _Metrics()
        self._store = store
        self._own_store = store is None

    @property
    def store(self) -> Store:
        """The operational store (opened on first use)."""
        if self._store is None:
            from fluvial.serve.store import open_store

            self._store = open_store(self.project)
        return self._store

    def close(self) -> None:
        """Close the operational store if the evaluator opened it."""
        if self._own_store and self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> AlertEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- values ---------------------------------------------------------------------------

    def value(
        self,
        rule: AlertRule,
        statuses: list[PipelineStatus] | None = None,
        now: float | None = None,
    ) -> float | None:
        """*rule*'s value now (None: no data)."""
        if rule.source == "freshness":
            assert rule.freshness is not None
            at = self.clock() if now is None else now
            return model_ages(self.project, [rule.freshness], at)[rule.freshness]
        if rule.source == "metric":
            return metric_value(statuses if statuses is not None else self.sampler.sample(), rule)
        return store_value(self.store, rule)

    # -- one round ------------------------------------------------------------------------

    def evaluate_once(self, now: float | None = None) -> list[RuleState]:
        """Evaluate every rule once at *now* (default: the clock); return their states.

        Raises:
            ConfigError: the rules file or a stored rule is invalid.
        """
        now = self.clock() if now is None else now
        entries = self.catalog.entries()
        statuses: list[PipelineStatus] | None = None
        if any(e.rule.source == "metric" for e in entries):
            statuses = self.sampler.sample(now)
        known = self.alerts.states()
        out = []
        for entry in entries:
            prev = known.get(entry.rule.name) or RuleState(entry.rule.name, since=now)
            out.append(self._evaluate(entry, prev, now, statuses))
        self.metrics.evaluations.inc()
        self.metrics.state.clear()
        for st in out:
            self.metrics.state.labels(st.rule, st.state).set(1)
        return out

    def _evaluate(
        self, entry: RuleEntry, prev: RuleState, now: float, statuses: list[PipelineStatus] | None
    ) -> RuleState:
        rule = entry.rule
        try:
            value = self.value(rule, statuses, now)
        except FluvialError as exc:
            self.metrics.errors.inc()
            state = prev.evolve(evaluated_at=now, error=str(exc))
            self.alerts.save_state(state)
            return state
        changed_at = prev.changed_at
        if value is None:
            changed_at = None
        elif prev.value is None or value != prev.value or changed_at is None:
            changed_at = now
        samples = self.alerts.samples(rule.name) if rule.kind in ("change", "anomaly") else []
        verdict = judge(rule, value, now, samples, changed_at)
        if value is not None and rule.kind in ("change", "anomaly"):
            horizon = 2 * (rule.window_seconds or 0) + 2 * self.settings.interval_seconds
            self.alerts.add_sample(rule.name, now, value, keep=rule.baseline + 1, horizon=horizon)
        state = prev.evolve(
            value=value,
            changed_at=changed_at,
            evaluated_at=now,
            message=verdict.message,
            error=None,
        )
        return self._transition(rule, prev, state, verdict, now)

    def _transition(
        self, rule: AlertRule, prev: RuleState, state: RuleState, verdict: Verdict, now: float
    ) -> RuleState:
        was = prev.state
        if verdict.holds:
            if was in ("OK", "RESOLVED"):
                to = "FIRING" if rule.for_seconds <= 0 else "PENDING"
                state = state.evolve(pending_since=now)
            elif was == "PENDING":
                started = prev.pending_since if prev.pending_since is not None else now
                to = "FIRING" if now - started >= rule.for_seconds else "PENDING"
            else:
                to = "FIRING"
        else:
            to = {"FIRING": "RESOLVED"}.get(was, "OK")
            state = state.evolve(pending_since=None)
        if to == was:
            self.alerts.save_state(state)
            return state
        state = state.evolve(state=to, since=now)
        notify = False
        if to == "FIRING":
            last = prev.last_notified
            notify = last is None or now - last >= rule.cooldown_seconds
            state = state.evolve(notified_firing=notify)
        elif to == "RESOLVED":
            notify = prev.notified_firing
            state = state.evolve(notified_firing=False)
        deliveries: list[dict[str, Any]] = []
        if notify:
            state = state.evolve(last_notified=now)
            deliveries = self._notify(rule, to, state.value, verdict.message, now)
        self.alerts.save_state(state)
        self.alerts.add_history(
            rule.name, now, was, to, state.value, verdict.message, notify, deliveries
        )
        return state

    def _notify(
        self, rule: AlertRule, state: str, value: float | None, message: str, now: float
    ) -> list[dict[str, Any]]:
        note = Notification(
            rule=rule.name,
            state=state,
            severity=rule.severity,
            value=value,
            message=message,
            description=rule.description,
            at=now,
            project=self.project.settings.project.name,
        )
        results = []
        for channel in rule.channels:
            try:
                deliver(channel, note, self.settings)
            except Exception as exc:  # a broken channel must not stop the others
                log.warning("alert %s: delivery failed: %s", rule.name, exc)
                self.metrics.notifications.labels(channel.type, "failed").inc()
                results.append({"channel": channel.type, "ok": False, "error": str(exc)})
            else:
                self.metrics.notifications.labels(channel.type, "sent").inc()
                results.append({"channel": channel.type, "ok": True})
        return results

    def test(self, name: str, now: float | None = None) -> list[dict[str, Any]]:
        """Send a ``TEST`` notification of rule *name* through its channels, with its
        current value; return what each channel did (nothing is recorded)."""
        rule = self.catalog.get(name).rule
        now = self.clock() if now is None else now
        try:
            value = self.value(rule, now=now)
            message = f"test of {rule.describe()}: value {_fmt(value)}"
        except FluvialError as exc:
            value, message = None, f"test of {rule.describe()}: the value is unreadable ({exc})"
        return self._notify(rule, "TEST", value, message, now)

    # -- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event, interval: float | None = None) -> None:
        """Evaluate every *interval* seconds (``[alerts] interval_seconds``) until *stop*.

        An invalid rules file is logged and retried next round, never fatal: fixing the
        file fixes the loop.
        """
        every = self.settings.interval_seconds if interval is None else interval
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.evaluate_once()
            except FluvialError as exc:
                log.error("alert evaluation failed: %s", exc)
            except Exception:  # keep evaluating: the next round may succeed
                log.exception("alert evaluation failed")
            stop.wait(max(0.0, every - (time.monotonic() - started)))
