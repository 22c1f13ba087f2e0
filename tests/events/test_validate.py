"""EventValidator: every failure reason with its path, the envelope rules, time arithmetic."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from fluvial.events import EVENT_SCHEMA, FAILED_SCHEMA, EventValidator, SchemaRegistry
from fluvial.events import validate as validate_module
from fluvial.project import Project

from .conftest import RECEIVED_MS, dumps, make_event

Check = Callable[..., tuple[str | None, str | None, str]]


def ms(text: str) -> int:
    """Epoch milliseconds of an ISO-8601 time, computed with the standard library."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_a_valid_event_becomes_one_row(validator: EventValidator) -> None:
    event = make_event(user_id="u-7")
    result = validator.validate([dumps(event)], received_at_ms=RECEIVED_MS, source="load")
    assert (result.accepted, result.rejected, result.errors) == (1, 0, [])
    assert result.valid.schema == EVENT_SCHEMA and result.failed.schema == FAILED_SCHEMA
    row = result.valid.to_pylist()[0]
    assert row["event_id"] == event["event_id"]
    assert row["event_time"] == datetime(2026, 11, 24, 9, 59, 58, 250000, tzinfo=UTC)
    assert row["received_at"] == datetime.fromtimestamp(RECEIVED_MS / 1000, UTC)
    assert (row["app_id"], row["user_id"], row["anonymous_id"], row["session_id"]) == (
        "shop",
        "u-7",
        "anon-1",
        "s-1",
    )
    assert row["page"] == event["page"] and row["context"] == event["context"]
    assert json.loads(row["properties"]) == event["properties"]
    assert (row["schema_version"], row["flags"]) == (1, [])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "expected a JSON object, found an array"),
        (b'"text"', "found a string"),
        (b'{"event_type": "\xff"}', "not valid UTF-8"),
    ],
)
def test_payload_format(check: Check, payload: bytes, message: str) -> None:
    reason, path, error = check(payload)
    assert (reason, path) == ("payload_format", None)
    assert message in error


def test_size_violation_is_not_parsed(validator: EventValidator) -> None:
    small = EventValidator(validator.registry, max_event_bytes=200)
    big = dumps(make_event(properties={"product_id": "x" * 300, "quantity": 1, "price": 1}))
    result = small.validate([big, b"{" + b" " * 300], received_at_ms=RECEIVED_MS)
    assert [e.reason for e in result.errors] == ["size_violation", "size_violation"]
    assert f"event is {len(big)} bytes; the limit is 200 bytes" == result.errors[0].error
    # not parsed: its event_id is unknown even though the JSON has one
    assert result.errors[0].event_id is None


@pytest.mark.parametrize(
    ("event", "path", "message"),
    [
        (make_event(drop=("event_id",)), "event_id", "event_id is required"),
        (make_event(event_id="12345"), "event_id", "expected a UUID"),
        (make_event(drop=("event_time",)), "event_time", "event_time is required"),
        (make_event(event_time="24/11/2026"), "event_time", "expected an ISO-8601"),
        (make_event(event_time="2026-11-24T10:00:00"), "event_time", "time zone"),
        (make_event(event_time=-5), "event_time", "epoch"),
        (make_event(event_time=1.5), "event_time", "epoch"),
        (make_event(event_time="2026-02-30T10:00:00Z"), "event_time", "not a valid date"),
        (make_event(sent_at="2026-11-24T25:00:00Z"), "sent_at", "not a valid date"),
        (make_event(drop=("event_type",)), "event_type", "event_type is required"),
        (make_event(event_type=7), "event_type", "expected a string, found a number"),
        (make_event(event_type="add_to_crt"), "event_type", "did you mean 'add_to_cart'?"),
        (make_event(drop=("anonymous_id",)), "user_id", "at least one of user_id or anonymous_id"),
        (make_event(anonymous_id=""), "user_id", "at least one of user_id or anonymous_id"),
        (make_event(userId="u1"), "userId", "did you mean 'user_id'?"),
        (make_event(page={"url": "x", "titel": "y"}), "page.titel", "unexpected field 'titel'"),
        (make_event(context={"ip": 5}), "context.ip", "context.ip"),
        (make_event(drop=("properties",)), "properties", "it needs product_id, quantity, price"),
        (
            make_event(properties={"product_id": "p", "quantity": 1}),
            "properties.price",
            "properties.price is required",
        ),
        (
            make_event(properties={"product_id": "p", "quantity": 1, "price": "9.99"}),
            "properties.price",
            'is not of type "number"',
        ),
        (
            make_event(properties={"product_id": "p", "quantity": 0, "price": 1}),
            "properties.quantity",
            "less than the minimum of 1",
        ),
        (
            make_event(
                event_type="purchase",
                properties={
                    "order_id": "o1",
                    "revenue": 10,
                    "currency": "EUR",
                    "items": [{"product_id": "p", "quantity": 1, "price": -1}],
                },
            ),
            "properties.items[0].price",
            "minimum",
        ),
    ],
)
def test_schema_violations_name_the_path(
    check: Check, event: dict[str, Any], path: str, message: str
) -> None:
    reason, got_path, error = check(event)
    assert (reason, got_path) == ("schema_violation", path), error
    assert message in error


def test_unknown_type_lists_the_registered_ones(check: Check) -> None:
    _, _, error = check(make_event(event_type="video_play"))
    assert "unknown event type 'video_play'" in error
    assert "registered: add_to_cart, checkout, click" in error


def test_times_in_every_accepted_form(validator: EventValidator) -> None:
    times = [
        "2026-11-24T10:00:00Z",
        "2026-11-24T11:00:00+01:00",
        "2026-11-24T04:30:00.5-05:30",
        "2026-11-24T10:00:00.123456789Z",
        ms("2026-11-24T09:00:00Z"),
    ]
    payloads = [dumps(make_event(event_time=t, sent_at=None)) for t in times]
    result = validator.validate(payloads, received_at_ms=RECEIVED_MS)
    assert result.rejected == 0, result.errors
    got = [int(t.timestamp() * 1000) for t in result.valid["event_time"].to_pylist()]
    # -05:30 is 5.5 h behind UTC; fractions finer than ms are truncated
    expected = [
        ms("2026-11-24T10:00:00Z"),
        ms("2026-11-24T10:00:00Z"),
        ms("2026-11-24T10:00:00.500Z"),
        ms("2026-11-24T10:00:00.123Z"),
        ms("2026-11-24T09:00:00Z"),
    ]
    assert got == expected


def test_derived_time_corrects_device_clock_skew(validator: EventValidator) -> None:
    received = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
    # the device clock is 1 h 2.5 s fast: it stamped the event 3 s before sending
    sent = received + timedelta(hours=1, seconds=2.5)
    event_time = sent - timedelta(seconds=3)
    epoch_sent = int(sent.timestamp() * 1000)
    events = [
        make_event(event_time=event_time.isoformat(), sent_at=epoch_sent),
        make_event(event_time=event_time.isoformat(), sent_at=None),  # no skew info
    ]
    result = validator.validate(
        [dumps(e) for e in events], received_at_ms=int(received.timestamp() * 1000)
    )
    rows = result.valid.to_pylist()
    assert rows[0]["derived_time"] == received - timedelta(seconds=3)
    assert rows[0]["flags"] == []  # skew-corrected, it is not in the future
    assert rows[1]["derived_time"] == event_time
    assert rows[1]["flags"] == ["future_time"]  # 1 h ahead of received_at, kept all the same
    assert rows[1]["sent_at"] is None


@pytest.mark.parametrize("ahead_s", [299.999, 300.0, 300.001, -3600])
def test_future_flag_threshold(validator: EventValidator, ahead_s: float) -> None:
    received = datetime(2026, 11, 24, 10, tzinfo=UTC)
    event_time = received + timedelta(seconds=ahead_s)
    result = validator.validate(
        [dumps(make_event(event_time=event_time.isoformat(), sent_at=None))],
        received_at_ms=int(received.timestamp() * 1000),
    )
    # the tolerance is 300 s (the default); beyond it the event is flagged
    assert result.valid["flags"][0].as_py() == (["future_time"] if ahead_s > 300 else [])


def test_app_id_from_the_write_key(validator: EventValidator) -> None:
    events = [make_event(), make_event(drop=("app_id",)), make_event(app_id="blog")]
    result = validator.validate(
        [dumps(e) for e in events], received_at_ms=RECEIVED_MS, app_id="shop"
    )
    assert result.valid["app_id"].to_pylist() == ["shop", "shop"]
    [error] = result.errors
    assert (error.index, error.path, error.reason) == (2, "app_id", "schema_violation")
    assert "'blog' does not match the write key's app_id 'shop'" in error.error
    assert result.failed["app_id"].to_pylist() == ["shop"]
    # without a write key, the event's own app_id stands
    alone = validator.validate([dumps(events[2])], received_at_ms=RECEIVED_MS)
    assert alone.valid["app_id"].to_pylist() == ["blog"]


def test_event_id_is_normalised_to_lower_case(validator: EventValidator) -> None:
    upper = str(uuid.uuid4()).upper()
    result = validator.validate([dumps(make_event(event_id=upper))], received_at_ms=RECEIVED_MS)
    assert result.valid["event_id"].to_pylist() == [upper.lower()]


def test_a_mixed_batch_keeps_order_and_indexes(validator: EventValidator) -> None:
    events: list[Any] = [make_event(anonymous_id=f"a{i}") for i in range(6)]
    events[1] = b"nope"
    events[3] = make_event(event_time="2026-13-01T00:00:00Z")
    events[4] = make_event(event_type="purchase")
    payloads = [e if isinstance(e, bytes) else dumps(e) for e in events]
    result = validator.validate(payloads, received_at_ms=RECEIVED_MS, source="test")
    assert result.valid["anonymous_id"].to_pylist() == ["a0", "a2", "a5"]
    assert [(e.index, e.reason) for e in result.errors] == [
        (1, "payload_format"),
        (3, "schema_violation"),
        (4, "schema_violation"),
    ]
    failed = result.failed.to_pylist()
    assert [f["payload"] for f in failed] == [payloads[i].decode() for i in (1, 3, 4)]
    assert [f["event_type"] for f in failed] == [None, "add_to_cart", "purchase"]
    assert {f["source"] for f in failed} == {"test"}
    assert all(f["received_at"] == datetime.fromtimestamp(RECEIVED_MS / 1000, UTC) for f in failed)


def test_epoch_and_iso_mixed_in_one_batch(validator: EventValidator) -> None:
    times: list[Any] = ["2026-11-24T10:00:00Z", ms("2026-11-24T09:00:00Z"), "2026-11-24T08:00:00Z"]
    result = validator.validate(
        [dumps(make_event(event_time=t, sent_at=None)) for t in times], received_at_ms=RECEIVED_MS
    )
    got = [int(t.timestamp() * 1000) for t in result.valid["event_time"].to_pylist()]
    assert got == [
        ms("2026-11-24T10:00:00Z"),
        ms("2026-11-24T09:00:00Z"),
        ms("2026-11-24T08:00:00Z"),
    ]


def test_custom_types_and_new_versions(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    validator = EventValidator.for_project(project)
    event = make_event(event_type="video_play", properties={"video_id": "v1"})
    assert validator.validate([dumps(event)]).errors[0].path == "event_type"
    # another process registers the type: the validator notices
    other = SchemaRegistry.for_project(project)
    other.register(
        "video_play",
        {
            "type": "object",
            "required": ["video_id"],
            "properties": {"video_id": {"type": "string"}},
        },
    )
    monkeypatch.setattr(validate_module, "_REFRESH_SECONDS", 0.0)
    result = validator.validate([dumps(event)])
    assert result.accepted == 1 and result.valid["schema_version"].to_pylist() == [1]
    other.register(
        "video_play",
        {
            "type": "object",
            "required": ["video_id"],
            "properties": {"video_id": {"type": "string"}, "seconds": {"type": "number"}},
        },
    )
    bad = make_event(event_type="video_play", properties={"video_id": "v1", "seconds": "x"})
    result = validator.validate([dumps(event), dumps(bad)])
    assert result.valid["schema_version"].to_pylist() == [2]
    assert result.errors[0].path == "properties.seconds"


def test_local_refs_in_a_registered_schema(tmp_path: Path) -> None:
    registry = SchemaRegistry(tmp_path)
    registry.register(
        "basket",
        {
            "type": "object",
            "$defs": {"line": {"type": "object", "required": ["sku"]}},
            "properties": {"lines": {"type": "array", "items": {"$ref": "#/$defs/line"}}},
        },
    )
    validator = EventValidator(registry)
    good = make_event(event_type="basket", properties={"lines": [{"sku": "a"}]})
    bad = make_event(event_type="basket", properties={"lines": [{"sku": "a"}, {}]})
    result = validator.validate([dumps(good), dumps(bad)], received_at_ms=RECEIVED_MS)
    assert result.accepted == 1
    assert result.errors[0].path == "properties.lines[1].sku"


def test_for_project_reads_the_collector_limits(project: Project) -> None:
    (project.root / "fluvial.toml").write_text(
        "[collector]\nmax_event_bytes = 1234\nfuture_tolerance_seconds = 2.5\n"
    )
    validator = EventValidator.for_project(Project(project.root))
    assert (validator.max_event_bytes, validator.future_tolerance_ms) == (1234, 2500)


def test_properties_keep_their_json(validator: EventValidator) -> None:
    props = {"product_id": "p", "quantity": 3, "price": 0, "extra": {"nested": [1, "é", None]}}
    result = validator.validate([dumps(make_event(properties=props))], received_at_ms=RECEIVED_MS)
    assert orjson.loads(result.valid["properties"][0].as_py()) == props


def test_impossible_dates_in_a_large_batch_are_found_exactly() -> None:
    """Bad times (30 February, 25:00) among many good ones: each flagged, the rest kept."""
    from datetime import UTC, datetime

    from fluvial.events.timestamps import to_epoch_ms

    values: list[object] = [f"2026-11-24T10:{i % 60:02d}:00Z" for i in range(5000)]
    bad_at = {3, 2500, 4999}
    values[3] = "2026-02-30T10:00:00Z"
    values[2500] = "2026-11-24T25:00:00Z"
    values[4999] = "2026-13-01T00:00:00Z"
    values[10] = None
    ms, bad = to_epoch_ms(values)
    assert set(bad.nonzero()[0].tolist()) == bad_at
    got = ms.to_pylist()
    for i, v in enumerate(values):
        if i in bad_at or v is None:
            assert got[i] is None
        else:
            expected = datetime.fromisoformat(str(v).replace("Z", "+00:00"))
            assert got[i] == int(expected.astimezone(UTC).timestamp() * 1000)
