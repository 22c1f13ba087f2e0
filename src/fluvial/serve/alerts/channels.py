"""Alert channels: a JSON webhook, a structured log line, an email over SMTP.

Each channel is one function taking a :class:`Notification`; :data:`CHANNELS` maps a
channel type to it (adding a channel adds one entry). A failed delivery raises
:class:`~fluvial.errors.FluvialError` with the channel and the reason; the evaluator
records it in the rule's history and carries on.

The webhook body (and the log line) is the notification as JSON::

    {"rule": "lagging", "state": "FIRING", "severity": "warning", "value": 130.0,
     "message": "lag_seconds of every pipeline (max) > 120: 130", "description": "",
     "at": "2026-01-02T03:04:05.000+00:00", "project": "shop"}
"""

from __future__ import annotations

import json
import logging
import smtplib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx

from fluvial.config import AlertsSettings
from fluvial.errors import FluvialError
from fluvial.serve.alerts.rules import Channel

__all__ = ["CHANNELS", "Notification", "deliver"]

log = logging.getLogger("fluvial.alerts")


@dataclass(frozen=True)
class Notification:
    """What a channel is told: a rule changed state (or ``TEST`` from ``alerts test``)."""

    rule: str
    state: str
    severity: str
    value: float | None
    message: str
    description: str
    at: float
    project: str

    def payload(self) -> dict[str, Any]:
        """The JSON document webhooks receive."""
        doc = asdict(self)
        doc["at"] = datetime.fromtimestamp(self.at, UTC).isoformat(timespec="milliseconds")
        return doc

    @property
    def subject(self) -> str:
        return f"[{self.project}] {self.state} {self.severity}: {self.rule}"


def _webhook(channel: Channel, note: Notification, settings: AlertsSettings) -> None:
    assert channel.url is not None
    try:
        response = httpx.post(
            channel.url,
            json=note.payload(),
            headers=channel.headers,
            timeout=settings.webhook_timeout_seconds,
        )
    except httpx.HTTPError as exc:
        raise FluvialError(f"webhook {channel.url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 300:
        raise FluvialError(
            f"webhook {channel.url}: expected a 2xx answer, found {response.status_code} "
            f"{response.text[:200]!r}"
        )


def _log(channel: Channel, note: Notification, settings: AlertsSettings) -> None:
    level = logging.WARNING if note.state == "FIRING" else logging.INFO
    doc = {"alert": note.payload()}
    log.log(level, json.dumps(doc, sort_keys=True), extra=doc)


def _email(channel: Channel, note: Notification, settings: AlertsSettings) -> None:
    msg = EmailMessage()
    msg["Subject"] = note.subject
    msg["From"] = settings.smtp_from
    msg["To"] = ", ".join(channel.to)
    lines = [note.message]
    if note.description:
        lines += ["", note.description]
    lines += ["", json.dumps(note.payload(), indent=2)]
    msg.set_content("\n".join(lines))
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        with smtplib.SMTP(
            settings.smtp_host, settings.smtp_port, timeout=settings.webhook_timeout_seconds
        ) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password)
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise FluvialError(f"email via {where}: {type(exc).__name__}: {exc}") from exc


#: channel type -> delivery function
CHANNELS: dict[str, Callable[[Channel, Notification, AlertsSettings], None]] = {
    "webhook": _webhook,
    "log": _log,
    "email": _email,
}


def deliver(channel: Channel, note: Notification, settings: AlertsSettings) -> None:
    """Send *note* through *channel*.

    Raises:
        FluvialError: the delivery failed (names the channel and why).
    """
    CHANNELS[channel.type](channel, note, settings)
