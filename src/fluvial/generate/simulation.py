"""The shop's visitors, simulated: devices, sessions and funnels, as NumPy arrays.

A :class:`Population` holds people (some with an account) and their devices (desktop,
mobile, tablet, plus a share of crawlers), each with its anonymous id, user agent, IP,
locale and clock skew. :meth:`Population.simulate` draws the sessions that start in a
time window and expands them, level by level, into rows — one per event — without a
per-event Python loop:

    session ─▶ landing page ─▶ browse rounds (category page or search)
                                 └─▶ product views ─▶ add_to_cart (+ remove) | click
            ─▶ [cart ─▶ checkout steps 1..3 ─▶ purchase]   when the cart is not empty

Rows are ordered within a session by a sort key, then given times by a cumulative sum of
per-type gaps, each shorter than the 30-minute inactivity timeout. A device's next
session starts at least 30 minutes after its previous one ended (sessions that would not
are dropped), so sessionization by inactivity recovers exactly the generated sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.events.registry import BUILTIN_TYPES
from fluvial.generate import catalog as cat
from fluvial.generate.catalog import json_str
from fluvial.generate.formatting import concat, uuid_strings

__all__ = [
    "EVENT_TYPES",
    "SESSION_TIMEOUT_MS",
    "Population",
    "SimulatedRows",
]

#: the registry's built-in types, in the order of the codes below
EVENT_TYPES = BUILTIN_TYPES
PAGE_VIEW, CLICK, SEARCH, ADD, REMOVE, CHECKOUT, PURCHASE, IDENTIFY = range(8)

SESSION_TIMEOUT_MS = 30 * 60 * 1000
_MAX_GAP_MS = 25 * 60 * 1000  # longest pause inside a session, under the timeout
_CHECKOUT_MAJOR = 1 << 20  # sorts the checkout phase after every browse round
_MAX_ROUNDS = 5_000

DESKTOP, MOBILE, TABLET, BOT = range(4)
_DEVICE_KINDS = ("desktop", "mobile", "tablet", "bot")

# median seconds since the previous event, by what happens (humans; crawlers use 2 s)
_GAP_CATEGORY = 25.0
_GAP_SEARCH = 15.0
_GAP_RESULTS = 0.6
_GAP_PRODUCT = 35.0
_GAP_ADD = 20.0
_GAP_REMOVE = 45.0
_GAP_CLICK = 12.0
_GAP_IDENTIFY = 30.0
_GAP_CART = 10.0
_GAP_STEP_PAGE = 30.0
_GAP_STEP_EVENT = 0.5
_GAP_PURCHASE = 40.0
_GAP_CONFIRMATION = 0.8

# funnel probabilities (humans)
_P_SEARCH_ROUND = 0.3
_P_ADD = 0.055
_P_CLICK = 0.15
_P_REMOVE = 0.15
_P_CHECKOUT = 0.45
_P_STEP2 = 0.82
_P_STEP3 = 0.88
_P_PURCHASE = 0.8
_P_IDENTIFY_BROWSING = 0.15
_P_IDENTIFY_AT_CHECKOUT = 0.6
_INTENT = {"direct": 1.0, "search": 1.0, "social": 0.7, "email": 1.5, "paid": 1.2}
_CHANNELS = tuple(cat.CHANNEL_SHARES)


def _p(values: tuple[float, ...] | list[float]) -> np.ndarray:
    w = np.asarray(values, dtype=np.float64)
    return w / w.sum()


def _ranks(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For children counted per parent: each child's parent index and rank among siblings."""
    parent = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(parent)) - np.repeat(starts, counts)
    return parent, rank


def _group_cumsum(values: np.ndarray, group_start: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at every row where *group_start* is true."""
    total = np.cumsum(values)
    base = np.where(group_start, total - values, 0)
    return total - np.maximum.accumulate(base)


@dataclass
class SimulatedRows:
    """One window's events, in session order, before they are turned into JSON."""

    session_ids: pa.Array  # string, per session
    session_device: np.ndarray  # per session
    session_start_ms: np.ndarray
    sess: np.ndarray  # per row: session index
    etype: np.ndarray  # int8 event type code
    t_ms: np.ndarray  # true event time
    page: np.ndarray  # page index of the page the row happens on
    url: pa.Array  # string: that page's URL (with UTM parameters on a campaign landing)
    referrer: pa.Array  # string or null
    product: np.ndarray  # -1 if none
    quantity: np.ndarray
    element: np.ndarray  # click element index, -1 if none
    target_page: np.ndarray  # click target page, -1 for an in-page anchor
    step: np.ndarray  # checkout step, 0 if none
    query: np.ndarray  # search query index, -1 if none
    identified: np.ndarray  # bool: the row carries user_id
    net_in_cart: np.ndarray  # bool: an add_to_cart that was not removed again
    cart_value_cents: np.ndarray  # per session

    @property
    def device(self) -> np.ndarray:
        return self.session_device[self.sess]


class Population:
    """People and devices, and what the simulation remembers about each device.

    *users* people own 1-3 devices each; about 3 % more devices are crawlers. Draws use
    *rng*; the state (who has signed in on which device, when each device's last session
    ended) advances with every :meth:`simulate` call, so windows must go forward in time.
    """

    def __init__(self, users: int, rng: np.random.Generator, site: str) -> None:
        self.shop = cat.shop_catalog(site)
        self.site = site
        self.users = users
        per_user = rng.choice([1, 2, 3], size=users, p=[0.6, 0.3, 0.1])
        human_user = np.repeat(np.arange(users), per_user)
        n_bots = round(0.03 * len(human_user))
        self.device_user = np.concatenate([human_user, np.full(n_bots, -1)])
        n = len(self.device_user)
        self.devices = n
        kinds = np.concatenate(
            [
                rng.choice(3, size=len(human_user), p=_p(list(cat.DEVICE_SHARES.values()))),
                np.full(n_bots, BOT),
            ]
        )
        self.device_kind = kinds
        uas: list[str] = []
        ua_index = np.zeros(n, dtype=np.int64)
        for k, name in enumerate(_DEVICE_KINDS):
            agents, weights = cat.USER_AGENTS[name]
            mask = kinds == k
            ua_index[mask] = len(uas) + rng.choice(len(agents), size=int(mask.sum()), p=_p(weights))
            uas.extend(agents)
        self.user_agent_json = pa.array([json_str(u) for u in uas]).take(pa.array(ua_index))
        first_octet = np.array(
            [o for o in range(1, 224) if o not in (10, 100, 127, 169, 172, 192, 198, 203)]
        )
        octets = rng.integers(0, 256, size=(n, 4))
        octets[:, 0] = first_octet[rng.integers(len(first_octet), size=n)]
        octets[:, 3] = np.maximum(octets[:, 3], 1)
        parts = [pa.array(octets[:, i]).cast(pa.string()) for i in range(4)]
        self.ip = concat(parts[0], ".", parts[1], ".", parts[2], ".", parts[3])
        locales = [name for name, _ in cat.LOCALES]
        user_locale = rng.choice(len(locales), size=users, p=_p([w for _, w in cat.LOCALES]))
        locale_index = np.where(
            self.device_user >= 0, user_locale[np.maximum(self.device_user, 0)], 0
        )
        self.locale_json = pa.array([json_str(x) for x in locales]).take(pa.array(locale_index))
        # most clocks are within seconds; a few are minutes off (derived_time corrects them)
        skew = rng.normal(0.0, 1500.0, size=n)
        far = rng.random(n) < 0.04
        skew[far] = rng.choice([-1, 1], size=int(far.sum())) * rng.uniform(
            30e3, 900e3, int(far.sum())
        )
        self.skew_ms = np.round(skew).astype(np.int64)
        self.anonymous_id = uuid_strings(rng.integers(0, 256, size=(n, 16), dtype=np.uint8))
        # how often each device visits: a few loyal visitors, a long tail; crawlers often
        weight = rng.lognormal(0.0, 1.0, size=n) * np.where(kinds == BOT, 1.5, 1.0)
        self._visit_cdf = np.cumsum(weight) / weight.sum()

        self.registered = rng.random(users) < 0.45
        ids = pa.array(np.arange(users) + 100_000).cast(pa.string())
        self.user_id = concat("u", ids)
        names = pa.array(list(cat.FIRST_NAMES)).take(
            pa.array(rng.integers(len(cat.FIRST_NAMES), size=users))
        )
        domains = pa.array(list(cat.EMAIL_DOMAINS)).take(
            pa.array(rng.integers(len(cat.EMAIL_DOMAINS), size=users))
        )
        plans = [name for name, _ in cat.PLANS]
        plan = pa.array([json_str(p) for p in plans]).take(
            pa.array(rng.choice(len(plans), size=users, p=_p([w for _, w in cat.PLANS])))
        )
        self.traits_json = concat(
            '{"traits":{"email":"', names, ".", ids, "@", domains, '","plan":', plan, "}}"
        )
        self.identified = np.zeros(n, dtype=bool)
        self.last_end_ms = np.full(n, np.iinfo(np.int64).min // 2, dtype=np.int64)

    # -- sessions -------------------------------------------------------------------------

    def draw_devices(self, rng: np.random.Generator, count: int) -> np.ndarray:
        idx = np.searchsorted(self._visit_cdf, rng.random(count), side="right")
        return np.minimum(idx, self.devices - 1)

    def simulate(
        self,
        rng: np.random.Generator,
        start_ms: np.ndarray,
        device: np.ndarray,
        *,
        commit: bool = True,
    ) -> SimulatedRows:
        """Expand sessions starting at *start_ms* (sorted) on *device* into event rows.

        With ``commit=False`` the population's state is left untouched (for calibration).
        """
        shop = self.shop
        s_count = len(start_ms)
        bot = self.device_kind[device] == BOT
        user = self.device_user[device]
        registered = (user >= 0) & self.registered[np.maximum(user, 0)]

        # landing channel and campaign
        channel = rng.choice(len(_CHANNELS), size=s_count, p=_p(list(cat.CHANNEL_SHARES.values())))
        channel[bot] = _CHANNELS.index("direct")
        campaign = np.full(s_count, -1)
        for c_idx, name in enumerate(_CHANNELS):
            options = [i for i, c in enumerate(cat.CAMPAIGNS) if c.channel == name]
            if not options:
                continue
            share = 0.5 if name == "social" else 1.0
            mask = (channel == c_idx) & (rng.random(s_count) < share)
            campaign[mask] = np.asarray(options)[rng.integers(len(options), size=int(mask.sum()))]
        intent = np.asarray([_INTENT[c] for c in _CHANNELS])[channel]
        category_landing = (campaign >= 0) | (channel == _CHANNELS.index("search"))

        # browse rounds
        rounds = np.where(bot, rng.geometric(0.15, s_count), rng.geometric(0.5, s_count))
        rounds = np.minimum(rounds, _MAX_ROUNDS)
        r_sess, r_rank = _ranks(rounds)
        r_bot = bot[r_sess]
        r_cat = rng.choice(len(shop.categories), size=len(r_sess), p=shop.category_weights)
        r_search = (~r_bot) & (rng.random(len(r_sess)) < _P_SEARCH_ROUND)
        first_is_landing = (r_rank == 0) & category_landing[r_sess]
        r_search &= ~first_is_landing
        r_query = shop.category_first_query[r_cat] + (
            rng.random(len(r_sess)) * shop.category_query_count[r_cat]
        ).astype(np.int64)

        cols: dict[str, list[np.ndarray]] = {
            k: []
            for k in (
                "sess",
                "major",
                "minor",
                "sub",
                "etype",
                "page",
                "product",
                "qty",
                "elem",
                "target",
                "step",
                "query",
                "gap",
            )
        }

        def add(
            sess: np.ndarray,
            major: np.ndarray | int,
            minor: np.ndarray | int,
            sub: int,
            etype: int,
            gap: np.ndarray | float,
            **extra: np.ndarray | int,
        ) -> None:
            n = len(sess)
            cols["sess"].append(sess)
            cols["major"].append(np.broadcast_to(major, n))
            cols["minor"].append(np.broadcast_to(minor, n))
            cols["sub"].append(np.full(n, sub))
            cols["etype"].append(np.full(n, etype))
            cols["gap"].append(np.broadcast_to(np.asarray(gap, dtype=np.float64), n))
            defaults = {
                "page": -1,
                "product": -1,
                "qty": 0,
                "elem": -1,
                "target": -1,
                "step": 0,
                "query": -1,
            }
            for key, default in defaults.items():
                cols[key].append(np.broadcast_to(extra.get(key, default), n))

        # landing page: home, or the first round's category page for campaigns and search
        landing_cat = r_cat[np.cumsum(rounds) - rounds]
        landing_page = np.where(category_landing, shop.category_page(landing_cat), shop.home_page)
        add(np.arange(s_count), 0, 0, 0, PAGE_VIEW, 0.0, page=landing_page)

        # round entries: a category page, or a search then its results page
        cat_entry = ~r_search & ~first_is_landing
        idx = np.flatnonzero(cat_entry)
        add(
            r_sess[idx],
            1 + r_rank[idx],
            1,
            0,
            PAGE_VIEW,
            _GAP_CATEGORY,
            page=shop.category_page(r_cat[idx]),
        )
        idx = np.flatnonzero(r_search)
        add(r_sess[idx], 1 + r_rank[idx], 1, 0, SEARCH, _GAP_SEARCH, query=r_query[idx])
        add(
            r_sess[idx],
            1 + r_rank[idx],
            1,
            1,
            PAGE_VIEW,
            _GAP_RESULTS,
            page=shop.search_page(r_query[idx]),
        )

        # product views: popular products first within a category
        views = (
            np.where(r_bot, rng.geometric(0.3, len(r_sess)), rng.geometric(0.42, len(r_sess))) - 1
        )
        v_round, v_rank = _ranks(views)
        v_sess = r_sess[v_round]
        v_cat = r_cat[v_round]
        v_product = shop.category_first_product[v_cat] + (
            rng.random(len(v_round)) ** 2 * shop.category_product_count[v_cat]
        ).astype(np.int64)
        v_major = 1 + r_rank[v_round]
        v_minor = 2 + v_rank
        add(v_sess, v_major, v_minor, 0, PAGE_VIEW, _GAP_PRODUCT, page=shop.product_page(v_product))

        # what follows a product view: add to cart (sometimes removed again), or a click
        u = rng.random(len(v_round))
        v_bot = bot[v_sess]
        p_add = _P_ADD * intent[v_sess]
        is_add = ~v_bot & (u < p_add)
        is_click = ~v_bot & ~is_add & (u < p_add + _P_CLICK)
        qty = rng.choice([1, 2, 3], size=len(v_round), p=[0.82, 0.13, 0.05])
        idx = np.flatnonzero(is_add)
        add(
            v_sess[idx],
            v_major[idx],
            v_minor[idx],
            1,
            ADD,
            _GAP_ADD,
            product=v_product[idx],
            qty=qty[idx],
        )
        removed = is_add & (rng.random(len(v_round)) < _P_REMOVE)
        idx = np.flatnonzero(removed)
        add(
            v_sess[idx],
            v_major[idx],
            v_minor[idx],
            2,
            REMOVE,
            _GAP_REMOVE,
            product=v_product[idx],
            qty=qty[idx],
        )
        idx = np.flatnonzero(is_click)
        elements = [name for name, _ in cat.CLICK_ELEMENTS]
        elem = rng.choice(len(elements), size=len(idx), p=_p([w for _, w in cat.CLICK_ELEMENTS]))
        target = np.full(len(idx), -1)
        rec = elem == elements.index("recommendation")
        c = v_cat[idx][rec]
        target[rec] = shop.product_page(
            shop.category_first_product[c]
            + (rng.random(len(c)) * shop.category_product_count[c]).astype(np.int64)
        )
        banner = elem == elements.index("banner")
        target[banner] = shop.category_page(
            rng.integers(len(shop.categories), size=int(banner.sum()))
        )
        add(
            v_sess[idx],
            v_major[idx],
            v_minor[idx],
            1,
            CLICK,
            _GAP_CLICK,
            product=v_product[idx],
            elem=elem,
            target=target,
        )

        # the cart: what was added and not removed
        net = is_add & ~removed
        price = shop.product_price_cents[v_product]
        cart_value = np.bincount(v_sess[net], weights=(price * qty)[net], minlength=s_count).astype(
            np.int64
        )
        has_cart = np.bincount(v_sess[net], minlength=s_count) > 0

        # checkout funnel
        checkout = has_cart & (rng.random(s_count) < np.minimum(_P_CHECKOUT * intent, 0.9))
        step2 = checkout & (rng.random(s_count) < _P_STEP2)
        step3 = step2 & (rng.random(s_count) < _P_STEP3)
        purchase = step3 & (rng.random(s_count) < _P_PURCHASE)
        idx = np.flatnonzero(checkout)
        add(idx, _CHECKOUT_MAJOR, 1, 0, PAGE_VIEW, _GAP_CART, page=shop.cart_page)
        for s, reached in enumerate((checkout, step2, step3), start=1):
            idx = np.flatnonzero(reached)
            add(
                idx,
                _CHECKOUT_MAJOR,
                2 * s,
                0,
                PAGE_VIEW,
                _GAP_STEP_PAGE,
                page=shop.checkout_pages[s - 1],
            )
            add(idx, _CHECKOUT_MAJOR, 2 * s + 1, 0, CHECKOUT, _GAP_STEP_EVENT, step=s)
        idx = np.flatnonzero(purchase)
        add(idx, _CHECKOUT_MAJOR, 8, 0, PURCHASE, _GAP_PURCHASE)
        add(idx, _CHECKOUT_MAJOR, 9, 0, PAGE_VIEW, _GAP_CONFIRMATION, page=shop.confirmation_page)

        # signing in: during browsing, or to check out
        wants = registered & ~bot & (rng.random(s_count) < _P_IDENTIFY_BROWSING)
        at_checkout = (
            registered & ~wants & checkout & (rng.random(s_count) < _P_IDENTIFY_AT_CHECKOUT)
        )
        idx = np.flatnonzero(wants)
        at_round = (rng.random(len(idx)) * rounds[idx]).astype(np.int64)
        add(idx, 1 + at_round, 0, 0, IDENTIFY, _GAP_IDENTIFY)
        idx = np.flatnonzero(at_checkout)
        add(idx, _CHECKOUT_MAJOR, 0, 0, IDENTIFY, _GAP_IDENTIFY)

        row = {k: np.concatenate(v) for k, v in cols.items()}
        order = np.lexsort((row["sub"], row["minor"], row["major"], row["sess"]))
        row = {k: v[order] for k, v in row.items()}
        sess = row["sess"]
        n = len(sess)
        first = np.ones(n, dtype=bool)
        first[1:] = sess[1:] != sess[:-1]

        # times: per-type median gaps, log-normal spread, always under the timeout
        gap = row["gap"] * rng.lognormal(0.0, 0.8, n)
        gap = np.where(bot[sess], 2.0 * rng.lognormal(0.0, 0.4, n), gap)
        gap_ms = np.clip(np.round(gap * 1000.0), 50, _MAX_GAP_MS).astype(np.int64)
        gap_ms[first] = 0
        t_ms = start_ms[sess] + _group_cumsum(gap_ms, first)

        # a device's sessions must be 30 minutes apart: drop those that would not be
        last = np.ones(n, dtype=bool)
        last[:-1] = sess[:-1] != sess[1:]
        end_ms = np.empty(s_count, dtype=np.int64)
        end_ms[sess[last]] = t_ms[last]
        keep = self._spaced(device, start_ms, end_ms)

        # who is signed in: after an identify, on that device, from then on
        has_identify = np.bincount(sess[row["etype"] == IDENTIFY], minlength=s_count) > 0
        by_device = np.lexsort((start_ms, device))
        dev_sorted = device[by_device]
        wants_sorted = (has_identify & keep)[by_device].astype(np.int64)
        new_device = np.ones(s_count, dtype=bool)
        new_device[1:] = dev_sorted[1:] != dev_sorted[:-1]
        before = _group_cumsum(wants_sorted, new_device) - wants_sorted
        signed_in_before = np.empty(s_count, dtype=bool)
        signed_in_before[by_device] = (before > 0) | self.identified[dev_sorted]
        signs_in = has_identify & keep & ~signed_in_before
        row_keep = keep[sess] & ((row["etype"] != IDENTIFY) | signs_in[sess])
        is_identify = (row["etype"] == IDENTIFY) & row_keep
        after_identify = _group_cumsum(is_identify.astype(np.int64), first) > 0
        identified = signed_in_before[sess] | after_identify

        if commit:
            self.identified[device[signs_in]] = True
            np.maximum.at(self.last_end_ms, device[keep], end_ms[keep])

        # pages: each row happens on the latest page view of its session
        is_pv = row["etype"] == PAGE_VIEW
        pv_row = np.maximum.accumulate(np.where(is_pv, np.arange(n), 0))
        page = row["page"][pv_row]
        pv_url = shop.page_url.take(pa.array(np.where(is_pv, row["page"], 0)))
        # a campaign's landing page carries its UTM parameters
        row_campaign = np.where(first, campaign[sess], -1)
        utm = pa.array([c.query for c in cat.CAMPAIGNS]).take(pa.array(np.maximum(row_campaign, 0)))
        pv_url = pc.if_else(pa.array(row_campaign >= 0), concat(pv_url, "?", utm), pv_url)
        # the referrer: the previous page in the session, or where the visitor came from
        prev_pv = np.where(first, 0, np.roll(pv_row, 1))
        external = self._external_referrers(rng, channel).take(pa.array(sess))
        ref_pv = pc.if_else(pa.array(first), external, pv_url.take(pa.array(prev_pv)))
        url = pv_url.take(pa.array(pv_row))
        referrer = ref_pv.take(pa.array(pv_row))

        sel = np.flatnonzero(row_keep)
        kept_sessions = np.flatnonzero(keep)
        remap = np.full(s_count, -1)
        remap[kept_sessions] = np.arange(len(kept_sessions))
        take = pa.array(sel)
        # an add is net when its product view was not followed by a remove (always the next row)
        removed_add = np.zeros(n, dtype=bool)
        rm_idx = np.flatnonzero(row["etype"] == REMOVE)
        removed_add[rm_idx - 1] = True
        net_rows = (row["etype"] == ADD) & ~removed_add
        session_ids = uuid_strings(rng.integers(0, 256, size=(s_count, 16), dtype=np.uint8))
        return SimulatedRows(
            session_ids=session_ids.take(pa.array(kept_sessions)),
            session_device=device[kept_sessions],
            session_start_ms=start_ms[kept_sessions],
            sess=remap[sess[sel]],
            etype=row["etype"][sel].astype(np.int8),
            t_ms=t_ms[sel],
            page=page[sel],
            url=url.take(take),
            referrer=referrer.take(take),
            product=row["product"][sel],
            quantity=row["qty"][sel],
            element=row["elem"][sel],
            target_page=row["target"][sel],
            step=row["step"][sel],
            query=row["query"][sel],
            identified=identified[sel],
            net_in_cart=net_rows[sel],
            cart_value_cents=cart_value[kept_sessions],
        )

    def _spaced(self, device: np.ndarray, start_ms: np.ndarray, end_ms: np.ndarray) -> np.ndarray:
        """Which sessions start 30 minutes after every earlier session of their device ended."""
        order = np.lexsort((start_ms, device))
        dev = device[order]
        new_device = np.ones(len(dev), dtype=bool)
        new_device[1:] = dev[1:] != dev[:-1]
        # running max of end times within each device; offsetting by device keeps groups apart
        span = np.int64(1) << np.int64(42)
        base = int(min(end_ms.min(initial=0), start_ms.min(initial=0)))
        keyed = dev.astype(np.int64) * span + (end_ms[order] - base)
        running = np.maximum.accumulate(keyed) - dev.astype(np.int64) * span + base
        prev_end = np.empty(len(dev), dtype=np.int64)
        prev_end[1:] = running[:-1]
        prev_end = np.where(new_device, np.iinfo(np.int64).min // 2, prev_end)
        prev_end = np.maximum(prev_end, self.last_end_ms[dev])
        ok = start_ms[order] >= prev_end + SESSION_TIMEOUT_MS
        keep = np.empty(len(dev), dtype=bool)
        keep[order] = ok
        return keep

    def _external_referrers(self, rng: np.random.Generator, channel: np.ndarray) -> pa.Array:
        """A referrer URL per session from its landing channel (null for direct traffic)."""
        out = np.full(len(channel), None, dtype=object)
        for c_idx, name in enumerate(_CHANNELS):
            if name not in cat.REFERRERS:
                continue
            urls, weights = cat.REFERRERS[name]
            mask = np.flatnonzero(channel == c_idx)
            out[mask] = np.asarray(urls, dtype=object)[
                rng.choice(len(urls), size=len(mask), p=_p(weights))
            ]
        return pa.array(out, pa.string())
