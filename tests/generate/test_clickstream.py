"""The clickstream generator: determinism, send order, faults, and a believable shop.

Each property is checked by recomputing it from the emitted lines (parsed with orjson)
and the generator's per-line kinds, independently of how the generator built them.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import orjson
import pytest

from fluvial.generate import (
    EVENT_TYPES,
    EXPECTED_REASON,
    INVALID_KINDS,
    SESSION_TIMEOUT_MS,
    ClickstreamConfig,
    GeneratedEvent,
    clickstream_batches,
    generate_clickstream,
)
from fluvial.generate.catalog import shop_catalog

START = 1_780_000_000_000  # a fixed start: outputs are reproducible
N = 30_000


def _digest(config: ClickstreamConfig) -> str:
    h = hashlib.sha256()
    for batch in clickstream_batches(config):
        h.update(batch.data)
    return h.hexdigest()


@pytest.fixture(scope="module")
def faulty() -> list[GeneratedEvent]:
    config = ClickstreamConfig(
        events=N, seed=7, users=800, days=3, start_ms=START, disorder_seconds=10,
        late_fraction=0.05, duplicate_fraction=0.04, invalid_fraction=0.05,
    )  # fmt: skip
    return list(generate_clickstream(config))


@pytest.fixture(scope="module")
def clean() -> list[tuple[GeneratedEvent, dict[str, Any]]]:
    config = ClickstreamConfig(
        events=N, seed=11, users=1500, days=7, start_ms=START,
        late_fraction=0.0, duplicate_fraction=0.0, invalid_fraction=0.0,
    )  # fmt: skip
    return [(e, orjson.loads(e.line)) for e in generate_clickstream(config)]


def _sessions(
    clean: list[tuple[GeneratedEvent, dict[str, Any]]],
) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    sessions: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for event, doc in clean:
        sessions[doc["session_id"]].append((event.event_time_ms, doc))
    for rows in sessions.values():
        rows.sort(key=lambda r: r[0])
    return sessions


def test_same_seed_same_bytes_and_another_seed_differs() -> None:
    config = ClickstreamConfig(
        events=5_000, seed=3, users=300, start_ms=START, invalid_fraction=0.02
    )
    assert _digest(config) == _digest(config)
    other = ClickstreamConfig(
        events=5_000, seed=4, users=300, start_ms=START, invalid_fraction=0.02
    )
    assert _digest(config) != _digest(other)


def test_emits_exactly_the_requested_number_of_lines() -> None:
    for n in (0, 1, 777):
        assert (
            sum(len(b) for b in clickstream_batches(ClickstreamConfig(events=n, start_ms=START)))
            == n
        )


def test_fault_fractions_are_near_the_requested_ones(faulty: list[GeneratedEvent]) -> None:
    kinds = Counter(e.kind.split(":")[0] for e in faulty)
    assert len(faulty) == N
    assert kinds["duplicate"] == pytest.approx(0.04 * N, rel=0.15)
    assert kinds["invalid"] == pytest.approx(0.05 * N, rel=0.15)
    originals = [e for e in faulty if e.kind == "valid"]
    late = sum(e.late for e in originals)
    assert late == pytest.approx(0.05 * len(originals), rel=0.15)


def test_every_invalid_kind_appears_and_is_really_broken(faulty: list[GeneratedEvent]) -> None:
    seen = Counter(e.kind.removeprefix("invalid:") for e in faulty if e.kind.startswith("invalid:"))
    assert set(seen) == set(INVALID_KINDS)
    for event in faulty:
        if not event.kind.startswith("invalid:"):
            continue
        kind = event.kind.removeprefix("invalid:")
        if kind == "oversized":
            assert len(event.line) > 64 * 1024
            continue
        try:
            doc = orjson.loads(event.line)
        except orjson.JSONDecodeError:
            assert kind == "not_json"
            continue
        assert kind != "not_json", event.line
        if kind == "not_object":
            assert not isinstance(doc, dict)
        elif kind == "missing_event_id":
            assert "event_id" not in doc
        elif kind == "missing_event_time":
            assert "event_time" not in doc
        elif kind == "no_identity":
            assert "user_id" not in doc and "anonymous_id" not in doc
        elif kind == "unknown_event_type":
            assert doc["event_type"] not in set(EVENT_TYPES)


def test_duplicates_repeat_an_earlier_line_byte_for_byte(faulty: list[GeneratedEvent]) -> None:
    seen: set[bytes] = set()
    ids: Counter[str] = Counter()
    for event in faulty:
        if event.kind == "duplicate":
            assert event.line in seen
        elif event.kind == "valid":
            assert event.line not in seen
            seen.add(event.line)
            ids[orjson.loads(event.line)["event_id"]] += 1
    assert max(ids.values()) == 1  # every original has its own event_id


def test_disorder_is_bounded_for_events_that_are_not_late(faulty: list[GeneratedEvent]) -> None:
    bound = 10_000
    newest = -(2**62)
    behind = 0
    late_behind = 0
    for event in faulty:
        if event.kind != "valid":
            continue
        if event.late:
            assert event.send_time_ms - event.event_time_ms > bound
            late_behind += event.event_time_ms < newest - bound
            continue
        assert event.event_time_ms >= newest - bound
        assert 0 <= event.send_time_ms - event.event_time_ms <= bound
        behind += event.event_time_ms < newest
        newest = max(newest, event.event_time_ms)
    assert behind > 0  # there is disorder within the bound
    late = sum(e.late for e in faulty)
    assert late_behind > 0.8 * late  # late events really arrive behind the watermark
    sends = [e.send_time_ms for e in faulty]
    assert sends == sorted(sends)


def test_envelope_fields_and_times(clean: list[tuple[GeneratedEvent, dict[str, Any]]]) -> None:
    for event, doc in clean[:2000]:
        assert set(doc) <= {
            "event_id", "event_type", "event_time", "sent_at", "app_id", "user_id",
            "anonymous_id", "session_id", "page", "context", "properties",
        }  # fmt: skip
        assert doc["event_time"].endswith("Z") and len(doc["event_time"]) == 24
        device_ms = np.datetime64(doc["event_time"][:-1], "ms").astype(np.int64)
        sent_ms = np.datetime64(doc["sent_at"][:-1], "ms").astype(np.int64)
        # both carry the same device clock skew: their difference is the true send delay
        assert sent_ms - device_ms == event.send_time_ms - event.event_time_ms
        assert doc["anonymous_id"] and doc["app_id"] == "demo"
        assert {"url", "title"} <= set(doc["page"]) and set(doc["context"]) == {
            "user_agent",
            "ip",
            "locale",
        }


def test_funnels_happen_in_order(clean: list[tuple[GeneratedEvent, dict[str, Any]]]) -> None:
    shop = shop_catalog()
    price = dict(zip(shop.products, shop.product_price_cents.tolist(), strict=True))
    purchases = checkouts = 0
    for rows in _sessions(clean).values():
        viewed: set[str] = set()
        cart: dict[str, int] = {}
        checked_out = False
        for _, doc in rows:
            kind, props = doc["event_type"], doc["properties"]
            if kind == "page_view" and "product_id" in props:
                viewed.add(props["product_id"])
            elif kind == "add_to_cart":
                assert props["product_id"] in viewed, "add_to_cart before viewing the product"
                assert round(props["price"] * 100) == price[props["product_id"]]
                cart[props["product_id"]] = cart.get(props["product_id"], 0) + props["quantity"]
            elif kind == "remove_from_cart":
                assert cart.get(props["product_id"], 0) >= props["quantity"]
                cart[props["product_id"]] -= props["quantity"]
            elif kind == "checkout":
                assert any(cart.values()), "checkout with an empty cart"
                value = sum(price[p] * q for p, q in cart.items())
                assert round(props["value"] * 100) == value
                checked_out = True
                checkouts += 1
            elif kind == "purchase":
                assert checked_out, "purchase before checkout"
                items = {i["product_id"]: i["quantity"] for i in props["items"]}
                assert items == {p: q for p, q in cart.items() if q}
                assert round(props["revenue"] * 100) == sum(
                    round(i["price"] * 100) * i["quantity"] for i in props["items"]
                )
                purchases += 1
    assert purchases > 0 and checkouts > purchases


def test_sessions_end_after_thirty_minutes_of_inactivity(
    clean: list[tuple[GeneratedEvent, dict[str, Any]]],
) -> None:
    # sessionize by device and a 30-minute gap, independently, and compare
    by_device: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for event, doc in clean:
        by_device[doc["anonymous_id"]].append((event.event_time_ms, doc["session_id"]))
    repeat_visitors = 0
    for rows in by_device.values():
        rows.sort()
        found: list[set[str]] = [set()]
        for (t0, _), (t1, sid) in zip([(rows[0][0], ""), *rows[:-1]], rows, strict=True):
            if t1 - t0 >= SESSION_TIMEOUT_MS:
                found.append(set())
            found[-1].add(sid)
        assert all(len(s) == 1 for s in found), "a session spans a 30-minute gap, or two overlap"
        assert len({next(iter(s)) for s in found}) == len(found)
        repeat_visitors += len(found) > 1
    assert repeat_visitors > 0.2 * len(by_device)


def test_people_sign_in_and_stay_identified(
    clean: list[tuple[GeneratedEvent, dict[str, Any]]],
) -> None:
    by_device: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for event, doc in clean:
        by_device[doc["anonymous_id"]].append((event.event_time_ms, doc))
    identified_devices = 0
    for rows in by_device.values():
        rows.sort(key=lambda r: r[0])
        identify = [i for i, (_, d) in enumerate(rows) if d["event_type"] == "identify"]
        assert len(identify) <= 1
        users = {d.get("user_id") for _, d in rows} - {None}
        assert len(users) <= 1  # one person per device
        if identify:
            identified_devices += 1
            first = identify[0]
            assert all("user_id" not in d for _, d in rows[:first])
            assert all("user_id" in d for _, d in rows[first:])
            assert "@" in rows[first][1]["properties"]["traits"]["email"]
        elif users:  # signed in before this run's window, which cannot happen here
            pytest.fail("user_id without an identify")
    assert identified_devices > 0


def test_traffic_looks_like_a_shop(clean: list[tuple[GeneratedEvent, dict[str, Any]]]) -> None:
    docs = [doc for _, doc in clean]
    types = Counter(d["event_type"] for d in docs)
    assert set(types) == {
        "page_view",
        "click",
        "search",
        "add_to_cart",
        "remove_from_cart",
        "checkout",
        "purchase",
        "identify",
    }
    assert types["page_view"] > 0.6 * len(docs)
    bots = [
        d
        for d in docs
        if "bot" in d["context"]["user_agent"].lower()
        or "python-requests" in d["context"]["user_agent"]
    ]
    assert 0.02 * len(docs) < len(bots) < 0.3 * len(docs)
    assert all(d["event_type"] == "page_view" for d in bots)
    assert any("utm_source=" in d["page"]["url"] for d in docs)
    referrers = {
        d["page"].get("referrer", "").split("/")[2] for d in docs if d["page"].get("referrer")
    }
    assert {"www.google.com", "shop.example.com"} <= referrers
    sessions = _sessions(clean)
    human = [s for s in sessions.values() if s[0][1] not in bots]
    converted = sum(any(d["event_type"] == "purchase" for _, d in s) for s in human)
    assert 0.015 < converted / len(human) < 0.05
    span = max(e.event_time_ms for e, _ in clean) - START
    assert 5 * 86_400_000 < span < 9 * 86_400_000  # about --days 7


def test_lines_validate_as_the_collector_expects(project: Any) -> None:
    validate = pytest.importorskip("fluvial.events.validate")
    validator = validate.EventValidator.for_project(project)
    config = ClickstreamConfig(
        events=8_000, seed=5, users=400, start_ms=START, duplicate_fraction=0.02, invalid_fraction=0.1,
    )  # fmt: skip
    events = list(generate_clickstream(config))
    result = validator.validate([e.line for e in events], received_at_ms=START + 8 * 86_400_000)
    failed = {error.index: error for error in result.errors}
    for i, event in enumerate(events):
        if event.kind in ("valid", "duplicate"):
            assert i not in failed, (event.line[:300], failed.get(i))
        else:
            kind = event.kind.removeprefix("invalid:")
            assert i in failed, event.line[:300]
            assert failed[i].reason == EXPECTED_REASON[kind], (kind, failed[i])
    assert result.rejected == sum(e.kind.startswith("invalid:") for e in events)
    assert result.accepted == len(events) - result.rejected
