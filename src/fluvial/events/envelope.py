"""The clickstream event envelope and its columnar form in the log.

An event arrives as JSON::

    {"event_id": "5f0c…", "event_type": "page_view", "event_time": "2026-11-24T10:00:00Z",
     "sent_at": 1795000000123, "app_id": "shop", "user_id": "u1", "anonymous_id": "a1",
     "session_id": "s1", "page": {"url": …, "referrer": …, "title": …},
     "context": {"user_agent": …, "ip": …, "locale": …}, "properties": {…}}

and is stored in the ``events`` topic as one row of :data:`EVENT_SCHEMA`: the envelope as
typed columns (times as UTC milliseconds), ``properties`` kept as JSON text (its shape
depends on the event type), plus what the collector adds: ``received_at``, the
skew-corrected ``derived_time`` and ``flags``. Invalid input goes to ``events_failed`` as
a row of :data:`FAILED_SCHEMA`, with the original payload and a structured reason.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "EVENT_KEY",
    "EVENT_SCHEMA",
    "FAILED_REASONS",
    "FAILED_SCHEMA",
]

TS = pa.timestamp("ms", tz="UTC")

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("event_time", TS, nullable=False),  # device time
        pa.field("sent_at", TS),  # device time when the batch was sent
        pa.field("received_at", TS, nullable=False),  # collector time
        pa.field("derived_time", TS, nullable=False),  # received_at - (sent_at - event_time)
        pa.field("app_id", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("anonymous_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field(
            "page",
            pa.struct([("url", pa.string()), ("referrer", pa.string()), ("title", pa.string())]),
        ),
        pa.field(
            "context",
            pa.struct([("user_agent", pa.string()), ("ip", pa.string()), ("locale", pa.string())]),
        ),
        pa.field("properties", pa.string()),  # JSON text, shape per event type
        pa.field("schema_version", pa.int32()),  # the registered version it was validated against
        pa.field("flags", pa.list_(pa.string())),  # e.g. ["future_time"]
    ]
)

#: events are routed by this key: a device's events stay in order across sign-in
EVENT_KEY = ("anonymous_id", "user_id")  # the first non-null

#: reason codes in ``events_failed.reason``
FAILED_REASONS = (
    "payload_format",  # not JSON, not an object, bad encoding
    "schema_violation",  # envelope or event-type schema not satisfied (see ``path``)
    "size_violation",  # event larger than the per-event limit
)

FAILED_SCHEMA = pa.schema(
    [
        pa.field(
            "payload", pa.string(), nullable=False
        ),  # the original bytes, decoded (errors replaced)
        pa.field("reason", pa.string(), nullable=False),  # one of FAILED_REASONS
        pa.field("error", pa.string(), nullable=False),  # a human-readable message
        pa.field("path", pa.string()),  # JSON path of the offending field, if any
        pa.field("event_id", pa.string()),  # when it could be read
        pa.field("event_type", pa.string()),  # when it could be read
        pa.field("app_id", pa.string()),  # from the write key
        pa.field("received_at", TS, nullable=False),
        pa.field("source", pa.string(), nullable=False),  # collector | load | generate
    ]
)
