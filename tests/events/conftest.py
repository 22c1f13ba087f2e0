"""Event fixtures: realistic events built as dicts, serialized per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from fluvial.events import EventValidator, SchemaRegistry

#: 2026-11-24T10:00:00Z in epoch milliseconds, computed by hand: 20,781 days after 1970
#: (2026-11-24 is day 20781) times 86,400,000 ms, plus 10 hours.
RECEIVED_MS = 20781 * 86_400_000 + 10 * 3_600_000


def make_event(*, drop: tuple[str, ...] = (), **overrides: Any) -> dict[str, Any]:
    """A valid add_to_cart event; keyword arguments replace fields, *drop* removes them."""
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": "add_to_cart",
        "event_time": "2026-11-24T09:59:58.250Z",
        "sent_at": "2026-11-24T09:59:59Z",
        "app_id": "shop",
        "user_id": None,
        "anonymous_id": "anon-1",
        "session_id": "s-1",
        "page": {"url": "https://shop.example/p/1", "referrer": None, "title": "Product 1"},
        "context": {"user_agent": "Mozilla/5.0", "ip": "203.0.113.9", "locale": "en-GB"},
        "properties": {"product_id": "p1", "quantity": 2, "price": 19.99, "currency": "EUR"},
    }
    event.update(overrides)
    for key in drop:
        event.pop(key, None)
    return event


def dumps(event: Any) -> bytes:
    return orjson.dumps(event)


@pytest.fixture
def validator() -> EventValidator:
    return EventValidator(SchemaRegistry(None))


@pytest.fixture
def check(validator: EventValidator) -> Callable[..., tuple[str | None, str | None, str]]:
    """Validate one event; return (reason, path, message) of its rejection, or Nones."""

    def run(event: Any, **kwargs: Any) -> tuple[str | None, str | None, str]:
        payload = event if isinstance(event, bytes) else dumps(event)
        result = validator.validate([payload], received_at_ms=RECEIVED_MS, **kwargs)
        assert result.accepted + result.rejected == 1
        if result.accepted:
            return None, None, ""
        error = result.errors[0]
        assert result.failed["reason"][0].as_py() == error.reason
        assert result.failed["payload"][0].as_py() == payload.decode("utf-8", "replace")
        return error.reason, error.path, error.error

    return run
