"""Batch models' freshness SLAs as alerts: the rules each SLA adds, evaluated against the
real run history, delivered to a webhook on loopback and to the log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fluvial.batch import history, run
from fluvial.errors import ConfigError, UsageError
from fluvial.project import Project
from fluvial.serve.alerts import AlertEvaluator, RuleCatalog, open_alert_store

from .conftest import Receiver, write_rules


def _model(project: Project, name: str, front: str, sql: str = "SELECT 1 AS x") -> None:
    zone, table = name.split(".")
    path = project.root / "models" / zone / f"{table}.sql"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"/*---\n{front}\n---*/\n{sql}\n", encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = Project.init(tmp_path / "p")
    _model(project, "refined.daily", "freshness: {warn_after: 1h, error_after: 2h}")
    _model(project, "refined.plain", "materialized: table")  # no SLA: no rule
    return project


def _states(evaluator: AlertEvaluator, now: float) -> dict[str, str]:
    return {s.rule: s.state for s in evaluator.evaluate_once(now)}


def test_every_sla_becomes_rules_and_fires_through_its_channels(
    project: Project, webhook: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fluvial.alerts")
    write_rules(
        project,
        f"""
        [freshness]
        channels = [{{type = "webhook", url = "{webhook.url}"}}, {{type = "log"}}]
        """,
    )
    with AlertEvaluator(project) as evaluator:
        entries = {e.rule.name: e for e in evaluator.catalog.entries()}
        assert set(entries) == {"freshness.refined.daily.warn", "freshness.refined.daily.error"}
        assert {e.origin for e in entries.values()} == {"sla"}
        # never built: both SLAs are broken
        assert set(_states(evaluator, 1_000.0).values()) == {"FIRING"}
        assert sorted((b["rule"], b["severity"]) for b in webhook.bodies) == [
            ("freshness.refined.daily.error", "critical"),
            ("freshness.refined.daily.warn", "warning"),
        ]
        assert all("never built" in b["message"] for b in webhook.bodies)

        assert run(project).ok
        last = history(project).last_success("refined.daily")
        assert last is not None
        built = last.timestamp()
        webhook.bodies.clear()
        assert set(_states(evaluator, built + 60).values()) == {"RESOLVED"}
        assert set(_states(evaluator, built + 120).values()) == {"OK"}
        # past warn_after only, then past error_after too
        assert _states(evaluator, built + 3_601) == {
            "freshness.refined.daily.warn": "FIRING",
            "freshness.refined.daily.error": "OK",
        }
        assert _states(evaluator, built + 7_201)["freshness.refined.daily.error"] == "FIRING"
        states = [(b["rule"], b["state"]) for b in webhook.bodies]
        assert states == [
            ("freshness.refined.daily.error", "RESOLVED"),
            ("freshness.refined.daily.warn", "RESOLVED"),
            ("freshness.refined.daily.warn", "FIRING"),
            ("freshness.refined.daily.error", "FIRING"),
        ]
        firing = webhook.bodies[-1]
        assert firing["value"] == pytest.approx(7_201, abs=1)
        assert "seconds since refined.daily was last built > 7200" in firing["message"]
        logged = [r for r in caplog.records if r.name == "fluvial.alerts"]
        assert len(logged) == 2 + len(webhook.bodies)  # the log channel got each one too


def test_a_rule_of_the_same_name_replaces_the_sla_rule_and_sla_rules_are_read_only(
    project: Project,
) -> None:
    write_rules(
        project,
        """
        [freshness]
        for = "5 min"

        [[rule]]
        name = "freshness.refined.daily.error"
        kind = "threshold"
        freshness = "refined.daily"
        threshold = 60
        severity = "info"
        """,
    )
    with AlertEvaluator(project) as evaluator:
        entries = {e.rule.name: e for e in evaluator.catalog.entries()}
        assert entries["freshness.refined.daily.error"].origin == "file"
        assert entries["freshness.refined.daily.error"].rule.threshold == 60
        assert entries["freshness.refined.daily.warn"].rule.for_seconds == 300
        catalog = RuleCatalog(project, open_alert_store(project))
        with pytest.raises(UsageError, match="freshness SLA"):
            catalog.delete("freshness.refined.daily.warn")


def test_freshness_rules_fail_clearly(project: Project) -> None:
    write_rules(project, "[freshness]\nchannel = []\n")
    with (
        AlertEvaluator(project) as evaluator,
        pytest.raises(ConfigError, match=r"\[freshness\]: channel"),
    ):
        evaluator.catalog.entries()
    write_rules(
        project,
        """
        [freshness]
        enabled = false

        [[rule]]
        name = "typo"
        kind = "threshold"
        freshness = "refined.daly"
        threshold = 60
        """,
    )
    with AlertEvaluator(project) as evaluator:
        (state,) = evaluator.evaluate_once(1_000.0)
        assert state.rule == "typo" and state.error is not None
        assert "did you mean 'refined.daily'" in state.error
    write_rules(
        project,
        """
        [[rule]]
        name = "bad"
        kind = "change"
        freshness = "refined.daily"
        threshold = 60
        window = 60
        """,
    )
    with AlertEvaluator(project) as evaluator, pytest.raises(ConfigError, match="threshold on"):
        evaluator.catalog.entries()
