"""Malformed events, of every kind a collector must reject, made from valid ones.

Each kind names what is wrong and the reason the collector should give
(:data:`EXPECTED_REASON`, one of :data:`fluvial.events.envelope.FAILED_REASONS`).

>>> line = b'{"event_id":"5f0c6a1e-8d2b-4c3a-9e7f-0a1b2c3d4e5f","event_type":"page_view",' \\
...        b'"event_time":"2026-11-24T10:00:00.000Z","anonymous_id":"a1","properties":{}}'
>>> corrupt(line, "no_identity", 0, "6f0c6a1e-8d2b-4c3a-9e7f-0a1b2c3d4e5f")
b'{"event_id":"6f0c6a1e-8d2b-4c3a-9e7f-0a1b2c3d4e5f","event_type":"page_view","event_time":"2026-11-24T10:00:00.000Z","properties":{}}'
>>> len(corrupt(line, "oversized", 0, "6f0c6a1e-8d2b-4c3a-9e7f-0a1b2c3d4e5f")) > 64 * 1024
True
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["EXPECTED_REASON", "INVALID_KINDS", "OVERSIZED_BYTES", "corrupt"]

#: what is wrong -> the reason the collector gives
EXPECTED_REASON: dict[str, str] = {
    "not_json": "payload_format",
    "not_object": "payload_format",
    "missing_event_id": "schema_violation",
    "bad_uuid": "schema_violation",
    "missing_event_time": "schema_violation",
    "bad_timestamp": "schema_violation",
    "no_identity": "schema_violation",
    "unknown_event_type": "schema_violation",
    "schema_violation": "schema_violation",
    "oversized": "size_violation",
}
INVALID_KINDS: tuple[str, ...] = tuple(EXPECTED_REASON)

#: an oversized event is larger than the collector's default 64 KiB per-event limit
OVERSIZED_BYTES = 64 * 1024 + 4096

_NOT_OBJECT = (b'"page_view"', b"42", b"null", b"true")
_BAD_UUIDS = ("not-a-uuid", "12345", "{id}z", "{hex}")
_BAD_TIMES = ("2026-13-45T25:61:00Z", "yesterday", "2026/05/01 10:00:00", "")
_UNKNOWN_TYPES = ("page_veiw", "add_to_basket", "video_play", "PageView")


def _broken_cart(doc: dict[str, Any], variant: int) -> dict[str, Any]:
    product = "P10000"
    props = doc.get("properties")
    if isinstance(props, dict) and isinstance(props.get("product_id"), str):
        product = props["product_id"]
    if variant % 3 == 0:
        return {"product_id": product, "quantity": 1, "price": -19.99, "currency": "USD"}
    if variant % 3 == 1:
        return {"product_id": product, "quantity": "2", "price": 19.99, "currency": "USD"}
    return {"quantity": 1, "price": 19.99, "currency": "USD"}  # no product_id


def corrupt(line: bytes, kind: str, variant: int, event_id: str) -> bytes:
    """A malformed copy of the valid event *line*, with a fresh *event_id* where it has one.

    *variant* picks among several forms of the same fault. The result never contains a
    newline, so it stays one NDJSON line.
    """
    doc: dict[str, Any] = orjson.loads(line)
    doc["event_id"] = event_id
    if kind == "not_json":
        text = orjson.dumps(doc)
        forms = (
            text[: len(text) // 2],  # cut off
            text.replace(b'"', b"'"),  # single quotes
            b"event_type=" + str(doc.get("event_type")).encode() + b"&id=" + event_id.encode(),
            text[:-1] + b",}",  # trailing comma
        )
        return forms[variant % len(forms)]
    if kind == "not_object":
        return _NOT_OBJECT[variant % len(_NOT_OBJECT)]
    if kind == "missing_event_id":
        del doc["event_id"]
    elif kind == "bad_uuid":
        bad = _BAD_UUIDS[variant % len(_BAD_UUIDS)]
        doc["event_id"] = bad.format(id=event_id[:-1], hex=event_id.replace("-", "") + "00")
    elif kind == "missing_event_time":
        del doc["event_time"]
    elif kind == "bad_timestamp":
        doc["event_time"] = _BAD_TIMES[variant % len(_BAD_TIMES)]
    elif kind == "no_identity":
        doc.pop("user_id", None)
        doc.pop("anonymous_id", None)
    elif kind == "unknown_event_type":
        doc["event_type"] = _UNKNOWN_TYPES[variant % len(_UNKNOWN_TYPES)]
    elif kind == "schema_violation":
        doc["properties"] = _broken_cart(doc, variant)
        doc["event_type"] = "add_to_cart"
    elif kind == "oversized":
        page: dict[str, Any] = doc["page"] if isinstance(doc.get("page"), dict) else {}
        page["title"] = "x" * OVERSIZED_BYTES
        doc["page"] = page
    else:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(INVALID_KINDS)}")
    return orjson.dumps(doc)
