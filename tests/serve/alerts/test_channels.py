"""Channels against real receivers on loopback: a webhook under uvicorn, an SMTP server."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from fluvial.project import Project
from fluvial.serve.alerts import AlertEvaluator, open_alert_store
from fluvial.serve.store import open_store

from .conftest import Clock, Mailbox, Receiver, write_rules


def put(project: Project, value: int) -> None:
    with open_store(project) as store:
        store.upsert("lag", pa.table({"k": [1], "seconds": [value]}), ["k"])


RULE = """
[[rule]]
name = "slow"
kind = "threshold"
table = "lag"
column = "seconds"
op = ">"
threshold = 60
severity = "critical"
description = "results are late"
channels = [{channels}]
"""


@pytest.fixture
def project(tmp_path: Any) -> Project:
    return Project.init(tmp_path / "p")


def test_webhook_gets_firing_and_resolved(
    project: Project, clock: Clock, webhook: Receiver
) -> None:
    write_rules(
        project,
        RULE.format(
            channels=f'{{type = "webhook", url = "{webhook.url}", headers = {{X-Token = "s3"}}}}'
        ),
    )
    put(project, 90)
    with AlertEvaluator(project, clock=clock) as ev:
        ev.evaluate_once()
        put(project, 10)
        ev.evaluate_once(clock.tick(15))
    fired, resolved = webhook.bodies
    assert (fired["rule"], fired["state"], fired["value"]) == ("slow", "FIRING", 90.0)
    assert fired["severity"] == "critical" and fired["description"] == "results are late"
    assert fired["project"] == "fluvial" and fired["at"].startswith("2027-01-15T08:00:00")
    assert (resolved["state"], resolved["value"]) == ("RESOLVED", 10.0)
    assert webhook.headers[0]["x-token"] == "s3"


def test_a_failing_webhook_is_recorded_not_fatal(
    project: Project, clock: Clock, webhook: Receiver
) -> None:
    write_rules(
        project,
        RULE.format(channels=f'{{type = "webhook", url = "{webhook.url}"}}, {{type = "log"}}'),
    )
    webhook.status = 500
    put(project, 90)
    with AlertEvaluator(project, clock=clock) as ev:
        (state,) = ev.evaluate_once()
    assert state.state == "FIRING"
    (entry,) = open_alert_store(project).history("slow")
    web, log = entry.deliveries
    assert web["ok"] is False and "found 500" in web["error"]
    assert log == {"channel": "log", "ok": True}


def test_email_through_smtp(project: Project, clock: Clock, smtp: Mailbox) -> None:
    write_rules(project, RULE.format(channels='{type = "email", to = ["ops@example.com"]}'))
    env = {"FLUVIAL_ALERTS__SMTP_PORT": str(smtp.port), "FLUVIAL_ALERTS__SMTP_FROM": "a@b.c"}
    put(project, 75)
    with AlertEvaluator(Project(project.root, env=env), clock=clock) as ev:
        ev.evaluate_once()
    ((sender, recipients, msg),) = smtp.messages
    assert sender == "a@b.c" and recipients == ["ops@example.com"]
    assert msg["Subject"] == "[fluvial] FIRING critical: slow"
    body = msg.get_payload()
    assert "value 75" in body and "results are late" in body


def test_test_command_sends_through_every_channel(
    project: Project, clock: Clock, webhook: Receiver, smtp: Mailbox
) -> None:
    channels = f'{{type = "webhook", url = "{webhook.url}"}}, {{type = "email", to = ["x@y.z"]}}'
    write_rules(project, RULE.format(channels=channels))
    env = {"FLUVIAL_ALERTS__SMTP_PORT": str(smtp.port)}
    put(project, 5)
    with AlertEvaluator(Project(project.root, env=env), clock=clock) as ev:
        results = ev.test("slow")
    assert results == [{"channel": "webhook", "ok": True}, {"channel": "email", "ok": True}]
    assert webhook.bodies[0]["state"] == "TEST" and webhook.bodies[0]["value"] == 5.0
    assert "TEST" in smtp.messages[0][2]["Subject"]
    assert open_alert_store(project).history() == []  # a test changes no state
