"""The clickstream star schema against expectations computed here, in plain Python, from
the generated lines and the generator's own truth (true event times, its catalogue of
user agents, referrers and campaigns): nothing below reuses the models' SQL."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import duckdb
import orjson
import pytest

from fluvial.batch import connect_warehouse
from fluvial.generate import catalog as cat
from fluvial.lake import open_lake

from .conftest import FIRST_RUN, PRICE_CHANGES, SECOND_RUN, Built

TIMEOUT_MS = 30 * 60 * 1000
SITE = "https://shop.example.com"
BOT_AGENTS = set(cat.USER_AGENTS["bot"][0])
#: the device class of each user agent, from the generator's own table
DEVICE_OF = {ua: kind for kind, (agents, _) in cat.USER_AGENTS.items() for ua in agents}
#: browser and OS of each human user agent, in the order of the generator's lists
AGENTS = {
    "desktop": [
        ("Chrome", "Windows"),
        ("Safari", "macOS"),
        ("Firefox", "Windows"),
        ("Edge", "Windows"),
        ("Chrome", "Linux"),
    ],
    "mobile": [("Safari", "iOS"), ("Chrome", "Android"), ("Chrome", "Android"), ("Chrome", "iOS")],
    "tablet": [("Safari", "iOS"), ("Chrome", "Android")],
}
CAMPAIGN_CHANNEL = {c.name: c.channel for c in cat.CAMPAIGNS}
REFERRER_CHANNEL = {
    url: channel
    for channel, (urls, _) in cat.REFERRERS.items()
    if channel != "paid"  # paid traffic always carries its campaign's UTM parameters
    for url in urls
}


def _ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


@dataclass
class Event:
    event_id: str
    doc: dict[str, Any]
    received_ms: int
    time_ms: int  # the generator's true event time

    @property
    def type(self) -> str:
        return str(self.doc["event_type"])

    @property
    def visitor(self) -> str:
        return str(self.doc.get("anonymous_id") or self.doc["user_id"])

    @property
    def path(self) -> str:
        return urlsplit(self.doc["page"]["url"]).path or "/"

    @property
    def is_bot(self) -> bool:
        return self.doc["context"]["user_agent"] in BOT_AGENTS


@dataclass
class Session:
    events: list[Event] = field(default_factory=list)

    @property
    def start(self) -> int:
        return self.events[0].time_ms

    @property
    def page_views(self) -> int:
        return sum(e.type == "page_view" for e in self.events)

    def has(self, event_type: str) -> bool:
        return any(e.type == event_type for e in self.events)

    @property
    def channel(self) -> str:
        page = self.events[0].doc["page"]
        campaign = parse_qs(urlsplit(page["url"]).query).get("utm_campaign")
        if campaign:
            return CAMPAIGN_CHANNEL[campaign[0]]
        referrer = page.get("referrer")
        if referrer is None or referrer.startswith(SITE):
            return "direct"
        return REFERRER_CHANNEL[referrer]


@dataclass
class Expected:
    """What the warehouse must say, computed from the lines alone."""

    accepted: int
    events: dict[str, Event]
    sessions: list[Session]
    user_of_device: dict[str, str]

    def user_key(self, visitor: str) -> str:
        return self.user_of_device.get(visitor, visitor)

    @property
    def orders(self) -> list[Event]:
        return [e for e in self.events.values() if e.type == "purchase" and not e.is_bot]


@pytest.fixture(scope="module")
def expected(built: Built) -> Expected:
    events: dict[str, Event] = {}
    accepted = 0
    for x in built.lines:
        if x.kind.startswith("invalid"):
            continue
        accepted += 1
        doc = orjson.loads(x.line)
        event_id = doc["event_id"].lower()
        seen = events.get(event_id)
        if seen is None or x.received_ms < seen.received_ms:
            events[event_id] = Event(event_id, doc, x.received_ms, x.true_time_ms)
    humans = sorted(
        (e for e in events.values() if not e.is_bot), key=lambda e: (e.visitor, e.time_ms)
    )
    sessions: list[Session] = []
    previous: Event | None = None
    for event in humans:
        if (
            previous is None
            or previous.visitor != event.visitor
            or event.time_ms - previous.time_ms > TIMEOUT_MS
        ):
            sessions.append(Session())
        sessions[-1].events.append(event)
        previous = event
    user_of_device: dict[str, str] = {}
    for event in sorted(humans, key=lambda e: e.time_ms):
        anonymous, user = event.doc.get("anonymous_id"), event.doc.get("user_id")
        if anonymous and user:
            user_of_device.setdefault(anonymous, user)
    return Expected(accepted, events, sessions, user_of_device)


@pytest.fixture(scope="module")
def db(built: Built) -> Iterator[duckdb.DuckDBPyConnection]:
    with open_lake(built.project) as lake:
        con = connect_warehouse(built.project, lake)
        try:
            yield con
        finally:
            con.close()


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return con.sql(sql).fetchall()


# -- the runs ---------------------------------------------------------------------------


def test_both_runs_build_every_model_and_pass_quality(built: Built) -> None:
    for result in (built.first, built.second):
        assert result.ok, result.as_dict()
        statuses = {m.model: (m.status, m.message, m.quarantined) for m in result.models}
        assert len(statuses) == 17
        assert all(s == "success" and q == 0 for s, _, q in statuses.values()), statuses
    # the second run reads only the raw events appended since the first
    events = built.second.model("refined.events")
    assert 0 < events.rows_in < len(built.lines) - built.first_part + 1_000


def test_raw_events_hold_every_valid_line(
    db: duckdb.DuckDBPyConnection, expected: Expected
) -> None:
    assert _rows(db, "SELECT count(*) FROM raw.events") == [(expected.accepted,)]


# -- refined.events ---------------------------------------------------------------------


def test_events_are_deduplicated_keeping_the_earliest_copy(
    db: duckdb.DuckDBPyConnection, expected: Expected
) -> None:
    got = {
        event_id: (received, skewed)
        for event_id, received, skewed in _rows(
            db,
            "SELECT event_id, epoch_ms(received_at), epoch_ms(event_time) FROM refined.events",
        )
    }
    assert len(got) == len(expected.events)
    want = {e.event_id: (e.received_ms, e.time_ms) for e in expected.events.values()}
    # the skew-corrected time of the earliest copy is the event's true time
    assert got == want


def test_user_agents_referrers_and_utm(db: duckdb.DuckDBPyConnection, expected: Expected) -> None:
    parsed = {
        ua: (device, browser, os)
        for ua, device, browser, os in _rows(
            db, "SELECT DISTINCT user_agent, device_class, browser, os FROM refined.events"
        )
    }
    for ua, (device, browser, os) in parsed.items():
        kind = DEVICE_OF[ua]
        assert device == kind, ua
        if kind == "bot":
            continue
        agents = cat.USER_AGENTS[kind][0]
        assert (browser, os) == AGENTS[kind][agents.index(ua)], ua
    bots = {
        event_id for (event_id,) in _rows(db, "SELECT event_id FROM refined.events WHERE is_bot")
    }
    assert bots == {e.event_id for e in expected.events.values() if e.is_bot}
    assert bots  # the generator's crawlers are there, and flagged
    utm = {
        event_id: (source, medium, campaign)
        for event_id, source, medium, campaign in _rows(
            db,
            "SELECT event_id, utm_source, utm_medium, utm_campaign FROM refined.events "
            "WHERE utm_source IS NOT NULL",
        )
    }
    want = {}
    for event in expected.events.values():
        query = parse_qs(urlsplit(event.doc["page"]["url"]).query)
        if "utm_source" in query:
            want[event.event_id] = tuple(
                query[k][0] for k in ("utm_source", "utm_medium", "utm_campaign")
            )
    assert utm == want and want
    internal = _rows(
        db,
        "SELECT count(*) FILTER (WHERE channel <> 'internal'), count(*) FROM refined.events "
        f"WHERE referrer LIKE '{SITE}/%'",
    )
    assert internal[0][0] == 0 and internal[0][1] > 0


# -- sessions ----------------------------------------------------------------------------


def test_sessions_have_the_expected_boundaries(
    db: duckdb.DuckDBPyConnection, expected: Expected
) -> None:
    got = Counter(
        _rows(
            db,
            "SELECT visitor_id, epoch_ms(started_at), epoch_ms(ended_at), events, page_views, "
            "entry_page, exit_page, channel, user_key FROM refined.sessions",
        )
    )
    want: Counter[tuple[Any, ...]] = Counter()
    for s in expected.sessions:
        views = [e for e in s.events if e.type == "page_view"]
        want[
            (
                s.events[0].visitor,
                s.start,
                s.events[-1].time_ms,
                len(s.events),
                len(views),
                views[0].path if views else None,
                views[-1].path if views else None,
                s.channel,
                expected.user_key(s.events[0].visitor),
            )
        ] += 1
    assert got == want
    # inactivity recovers the visits the generator simulated (its client session ids)
    assert all(len({e.doc["session_id"] for e in s.events}) == 1 for s in expected.sessions)


def test_revenue_and_orders(db: duckdb.DuckDBPyConnection, expected: Expected) -> None:
    got = {
        order_id: (revenue, items)
        for order_id, revenue, items in _rows(
            db, "SELECT order_id, revenue, items FROM curated.fact_orders"
        )
    }
    want = {
        e.doc["properties"]["order_id"]: (
            Decimal(str(e.doc["properties"]["revenue"])).quantize(Decimal("0.01")),
            len(e.doc["properties"]["items"]),
        )
        for e in expected.orders
    }
    assert got == want and want
    # the lines of an order add up to its revenue
    mismatched = _rows(
        db,
        "SELECT o.order_id FROM curated.fact_orders o JOIN curated.fact_order_items i "
        "USING (order_id) GROUP BY o.order_id, o.revenue HAVING sum(i.line_total) <> o.revenue",
    )
    assert mismatched == []
    converted = _rows(db, "SELECT sum(revenue), sum(orders) FROM refined.sessions")
    total = sum((r for r, _ in want.values()), Decimal(0))
    assert converted == [(total, len(want))]


def test_daily_kpis(db: duckdb.DuckDBPyConnection, expected: Expected) -> None:
    by_day: dict[date, list[Session]] = defaultdict(list)
    for s in expected.sessions:
        by_day[_day(s.start)].append(s)
    orders: dict[date, list[Event]] = defaultdict(list)
    for e in expected.orders:
        orders[_day(e.time_ms)].append(e)
    got = {
        row[0]: row[1:]
        for row in _rows(
            db,
            "SELECT date, visitors, sessions, page_views, round(bounce_rate, 9), orders, revenue, "
            "round(conversion_rate, 9) FROM marts.daily_kpis",
        )
    }
    days = set(by_day) | set(orders)
    assert days <= set(got)
    for day, row in got.items():
        sessions = by_day.get(day, [])
        if not sessions and not orders.get(day):
            assert row[1] == 0 and row[4] == 0
            continue
        revenue = sum(
            (Decimal(str(e.doc["properties"]["revenue"])) for e in orders.get(day, [])),
            Decimal(0),
        )
        n = len(sessions)
        assert row == (
            len({expected.user_key(s.events[0].visitor) for s in sessions}),
            n,
            sum(s.page_views for s in sessions),
            round(sum(s.page_views == 1 for s in sessions) / n, 9) if n else None,
            len(orders.get(day, [])),
            revenue,
            round(sum(s.has("purchase") for s in sessions) / n, 9) if n else None,
        ), day


def test_funnel_by_day_and_channel(db: duckdb.DuckDBPyConnection, expected: Expected) -> None:
    want: Counter[tuple[Any, ...]] = Counter()
    for s in expected.sessions:
        key = (_day(s.start), s.channel)
        want[(*key, "sessions")] += 1
        want[(*key, "viewed_product")] += any(
            e.type == "page_view" and e.path.startswith("/p/") for e in s.events
        )
        want[(*key, "added_to_cart")] += s.has("add_to_cart")
        want[(*key, "reached_checkout")] += any(
            e.type == "checkout"
            or (e.path.startswith("/checkout/") and e.path != "/checkout/confirmation")
            for e in s.events
        )
        want[(*key, "purchased")] += s.has("purchase")
    got: Counter[tuple[Any, ...]] = Counter()
    steps = ("sessions", "viewed_product", "added_to_cart", "reached_checkout", "purchased")
    for row in _rows(db, f"SELECT date, channel, {', '.join(steps)} FROM marts.funnel_daily"):
        for step, value in zip(steps, row[2:], strict=True):
            got[(row[0], row[1], step)] += value
    assert +got == +want
    assert {k[1] for k in want} == {"direct", "search", "social", "email", "paid"}


def test_retention_cohorts(db: duckdb.DuckDBPyConnection, expected: Expected) -> None:
    weeks: dict[str, set[date]] = defaultdict(set)
    for s in expected.sessions:
        day = _day(s.start)
        weeks[expected.user_key(s.events[0].visitor)].add(day - timedelta(days=day.weekday()))
    cohort_size: Counter[date] = Counter(min(w) for w in weeks.values())
    active: Counter[tuple[date, int]] = Counter()
    for seen in weeks.values():
        first = min(seen)
        for week in seen:
            active[(first, (week - first).days // 7)] += 1
    got = {
        (cohort, n): (size, users)
        for cohort, n, size, users in _rows(
            db,
            "SELECT cohort_week, week_number, cohort_users, active_users "
            "FROM marts.retention_cohorts",
        )
    }
    assert got == {k: (cohort_size[k[0]], v) for k, v in active.items()}
    assert len(cohort_size) >= 2 and any(n > 0 for _, n in got)


# -- dimensions --------------------------------------------------------------------------


def test_dim_users_stitches_devices_and_keeps_history(
    db: duckdb.DuckDBPyConnection, expected: Expected
) -> None:
    first_seen: dict[str, int] = {}
    identified: dict[str, int] = {}
    traits: dict[str, tuple[str, str]] = {}
    for e in sorted(expected.events.values(), key=lambda e: e.time_ms):
        if e.is_bot:
            continue
        key = expected.user_key(e.visitor)
        first_seen.setdefault(key, e.time_ms)
        user = e.doc.get("user_id")
        if user:
            identified.setdefault(user, e.time_ms)
        if user and e.type == "identify":
            t = e.doc["properties"]["traits"]
            traits[user] = (t["email"], t["plan"])
    got: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in _rows(
        db,
        "SELECT user_key, version, is_identified, email, plan, epoch_ms(valid_from), "
        "epoch_ms(valid_to), is_current FROM curated.dim_users ORDER BY user_key, version",
    ):
        got[row[0]].append(row[1:])
    assert set(got) == set(first_seen)
    for key, versions in got.items():
        assert versions[-1][-1] is True and all(v[-1] is False for v in versions[:-1])
        assert [v[0] for v in versions] == list(range(1, len(versions) + 1))
        if key not in identified:
            assert versions == [(1, False, None, None, first_seen[key], None, True)]
            continue
        current = versions[-1]
        assert current[1] is True and (current[2], current[3]) == traits.get(key, (None, None))
        if first_seen[key] < identified[key]:
            assert versions[0][1:5] == (False, None, None, first_seen[key])
            assert versions[0][5] == identified[key] == versions[1][4]
        else:
            assert versions[0][4] == identified[key]
    assert sum(len(v) > 1 for v in got.values()) > 10
    # every session of a device that signed in belongs to its user
    stitched = _rows(
        db,
        "SELECT count(*) FROM curated.fact_sessions f JOIN curated.dim_users u USING (user_sk) "
        "WHERE u.user_key <> f.user_key OR f.started_at < u.valid_from "
        "OR f.started_at >= coalesce(u.valid_to, 'infinity'::TIMESTAMPTZ)",
    )
    assert stitched == [(0,)]


def test_dim_products_scd2_after_a_price_change(db: duckdb.DuckDBPyConnection) -> None:
    shop = cat.shop_catalog()
    list_price = {
        pid: Decimal(int(c)).scaleb(-2)
        for pid, c in zip(shop.products, shop.product_price_cents, strict=True)
    }
    rows = _rows(
        db,
        "SELECT product_id, price, epoch_ms(valid_from), epoch_ms(valid_to), is_current "
        "FROM curated.dim_products ORDER BY product_id, valid_from",
    )
    versions: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for pid, *rest in rows:
        versions[pid].append(tuple(rest))
    assert set(versions) == set(shop.products)
    one, two = _ms(FIRST_RUN), _ms(SECOND_RUN)
    for pid, history in versions.items():
        if pid in PRICE_CHANGES:
            assert history == [
                (list_price[pid], one, two, False),
                (Decimal(PRICE_CHANGES[pid]), two, None, True),
            ]
        else:
            assert history == [(list_price[pid], one, None, True)]


def test_order_lines_carry_the_list_price_valid_at_order_time(
    db: duckdb.DuckDBPyConnection, expected: Expected
) -> None:
    shop = cat.shop_catalog()
    first_export = {
        pid: Decimal(int(c)).scaleb(-2)
        for pid, c in zip(shop.products, shop.product_price_cents, strict=True)
    }
    second_export = {**first_export, **{p: Decimal(v) for p, v in PRICE_CHANGES.items()}}

    def price_at(pid: str, ms: int) -> Decimal:
        # the export seen by the latest run at or before the order; before the first
        # run, the first export (the earliest price known)
        return (second_export if ms >= _ms(SECOND_RUN) else first_export)[pid]

    want = {
        (e.doc["properties"]["order_id"], line): price_at(item["product_id"], e.time_ms)
        for e in expected.orders
        for line, item in enumerate(e.doc["properties"]["items"], start=1)
    }
    got = {
        (order_id, line): price
        for order_id, line, price in _rows(
            db, "SELECT order_id, line, list_price FROM curated.fact_order_items"
        )
    }
    assert got == want
    # the catalogue's current price differs on some lines (before and after the change)
    changed = [k for k, price in want.items() if price != second_export[_product(expected, k)]]
    after = [k for k in want if _product(expected, k) in PRICE_CHANGES and k not in changed]
    assert changed and after


def _product(expected: Expected, key: tuple[str, int]) -> str:
    order_id, line = key
    for e in expected.orders:
        if e.doc["properties"]["order_id"] == order_id:
            return str(e.doc["properties"]["items"][line - 1]["product_id"])
    raise KeyError(order_id)


def test_dimensions_cover_the_facts(db: duckdb.DuckDBPyConnection, expected: Expected) -> None:
    orphans = _rows(
        db,
        """
        SELECT
            (SELECT count(*) FROM curated.fact_page_views f ANTI JOIN curated.dim_pages p
                USING (page_key)),
            (SELECT count(*) FROM curated.fact_page_views f ANTI JOIN curated.dim_date d
                USING (date_key)),
            (SELECT count(*) FROM curated.fact_sessions f JOIN refined.sessions s
                USING (session_id)
                WHERE (f.campaign_key IS NULL) <> (s.utm_campaign IS NULL)),
            (SELECT count(*) FROM curated.fact_order_items i ANTI JOIN curated.dim_products p
                USING (product_id))
        """,
    )
    assert orphans == [(0, 0, 0, 0)]
    views = _rows(db, "SELECT count(*) FROM curated.fact_page_views")
    assert views == [(sum(s.page_views for s in expected.sessions),)]
    campaigns = {
        (source, medium, name)
        for source, medium, name in _rows(
            db, "SELECT utm_source, utm_medium, utm_campaign FROM curated.dim_campaigns"
        )
    }
    assert campaigns <= {(c.source, c.medium, c.name) for c in cat.CAMPAIGNS}
    assert len(campaigns) >= 5


def _doc_queries() -> list[str]:
    """The SQL blocks of docs/warehouse.md's "OLAP on the star schema" section."""
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "warehouse.md").read_text(encoding="utf-8")
    section = text.split("## OLAP on the star schema", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```sql\n")[1:]]


def test_the_olap_queries_of_the_docs_run(db: duckdb.DuckDBPyConnection) -> None:
    queries = _doc_queries()
    assert sum("ROLLUP" in q or "CUBE" in q or "GROUPING SETS" in q for q in queries) >= 3
    for sql in queries:
        assert db.sql(sql).to_arrow_table().num_rows, sql
    (rollup,) = [q for q in queries if "GROUP BY ROLLUP (channel, device_class)" in q]
    total = [r for r in _rows(db, rollup) if r[0] is None and r[1] is None]
    direct = _rows(
        db,
        "SELECT count(*), sum(orders), sum(revenue) FROM curated.fact_sessions "
        "WHERE channel IN ('search', 'paid')",
    )
    assert [r[2:5] for r in total] == direct
