"""The envelope as a JSON Schema, combined with each event type's properties schema.

One compiled validator per (event type, version) checks a whole event in a single call
(envelope fields, ``properties``, the user_id/anonymous_id rule), which keeps the
collector's per-event work to one call into Rust. When it fails, :func:`explain` turns
jsonschema-rs's errors into one clear message and the JSON path of the field.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jsonschema_rs

from fluvial.errors import did_you_mean

__all__ = [
    "ENVELOPE_FIELDS",
    "ISO_PATTERN",
    "MAX_EPOCH_MS",
    "UUID_PATTERN",
    "compile_event_validator",
    "event_json_schema",
    "explain",
    "format_path",
]

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# RFC 3339 shape; calendar validity (no 30 February) is checked when the times are parsed
ISO_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z

_TIME = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_MS},
        {"type": "string", "pattern": ISO_PATTERN},
    ]
}
_TEXT = {"type": ["string", "null"]}
_ID = {"type": ["string", "null"], "maxLength": 256}


def _struct(*names: str) -> dict[str, Any]:
    return {
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {name: _TEXT for name in names},
    }


_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["event_id", "event_type", "event_time"],
    "properties": {
        "event_id": {"type": "string", "pattern": UUID_PATTERN},
        "event_type": {"type": "string"},
        "event_time": _TIME,
        "sent_at": {"anyOf": [*_TIME["anyOf"], {"type": "null"}]},
        "app_id": _ID,
        "user_id": _ID,
        "anonymous_id": _ID,
        "session_id": _ID,
        "page": _struct("url", "referrer", "title"),
        "context": _struct("user_agent", "ip", "locale"),
        "properties": {"type": "object"},
    },
    # at least one identity, as a non-empty string
    "anyOf": [
        {"required": ["user_id"], "properties": {"user_id": {"type": "string", "minLength": 1}}},
        {
            "required": ["anonymous_id"],
            "properties": {"anonymous_id": {"type": "string", "minLength": 1}},
        },
    ],
}

#: the fields an event may carry, in EVENT_SCHEMA order
ENVELOPE_FIELDS = tuple(_ENVELOPE["properties"])


def event_json_schema(event_type: str, version: int, properties: Mapping[str, Any]) -> dict:
    """The whole event's schema: the envelope with *properties* as its properties' schema."""
    schema = copy.deepcopy(_ENVELOPE)
    props = dict(copy.deepcopy(properties))
    props.pop("$schema", None)
    # an $id makes the embedded schema its own resource, so its "#/$defs/..." refs resolve
    props.setdefault("$id", f"urn:fluvial:schemas:{event_type}:v{version}")
    schema["properties"]["event_type"] = {"const": event_type}
    schema["properties"]["properties"] = props
    if props.get("required"):
        schema["required"] = [*schema["required"], "properties"]
    return schema


def compile_event_validator(
    event_type: str, version: int, properties: Mapping[str, Any]
) -> jsonschema_rs.Validator:
    return jsonschema_rs.Draft202012Validator(event_json_schema(event_type, version, properties))


def format_path(parts: Iterable[str | int]) -> str:
    """``["properties", "items", 0, "price"]`` → ``properties.items[0].price``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rank(error: jsonschema_rs.ValidationError) -> tuple[int, int]:
    # prefer a precise error on a field over the envelope-level identity rule
    kind = type(error.kind).__name__
    is_identity_rule = kind == "AnyOf" and not error.instance_path
    return (1 if is_identity_rule else 0, -len(error.instance_path))


def explain(
    validator: jsonschema_rs.Validator,
    doc: Mapping[str, Any],
    event_type: str,
    required: Sequence[str] = (),
) -> tuple[str, str]:
    """``(path, message)`` for the most useful of *doc*'s validation errors.

    *required* lists the type's required properties, named when ``properties`` is missing.
    """
    errors = list(validator.iter_errors(doc))
    if not errors:  # cannot happen for a document is_valid rejected; be safe anyway
        return "", f"event does not satisfy the {event_type} schema"
    error = min(errors, key=_rank)
    parts: list[str | int] = list(error.instance_path)
    kind = error.kind
    name = type(kind).__name__
    path = format_path(parts)
    if name == "Required":
        missing = str(kind.property)  # type: ignore[attr-defined]
        path = format_path([*parts, missing])
        if path == "properties":
            needs = f" (it needs {', '.join(required)})" if required else ""
            return path, f"properties is required for {event_type}{needs}"
        return path, f"{path} is required"
    if name == "AdditionalProperties":
        unexpected = [str(u) for u in kind.unexpected]  # type: ignore[attr-defined]
        path = format_path([*parts, unexpected[0]])
        if not parts:
            return path, (
                f"unexpected field {unexpected[0]!r} in the envelope"
                f"{did_you_mean(unexpected[0], ENVELOPE_FIELDS)} "
                f"(allowed: {', '.join(ENVELOPE_FIELDS)})"
            )
        return path, f"unexpected field {unexpected[0]!r} in {format_path(parts)}"
    if path in ("event_time", "sent_at"):
        return path, (
            f"{path}: expected an ISO-8601 timestamp with a time zone "
            f"(e.g. 2026-11-24T10:00:00Z or 2026-11-24T11:00:00.250+01:00) or epoch "
            f"milliseconds (an integer from 0 to {MAX_EPOCH_MS}), found {_shown(error.instance)}"
        )
    if path == "event_id":
        return path, (
            "event_id: expected a UUID (e.g. 5f0c6a1e-8d2b-4c3a-9e7f-0a1b2c3d4e5f), "
            f"found {_shown(error.instance)}"
        )
    if name == "AnyOf" and not parts:
        return "user_id", (
            "at least one of user_id or anonymous_id is required, as a non-empty string"
        )
    return path, f"{path or 'event'}: {error.message}"
