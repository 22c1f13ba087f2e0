"""The clickstream load generator: a shop's events as a tracker would send them.

:func:`clickstream_batches` simulates the shop window by window
(:mod:`fluvial.generate.simulation`), turns each window's events into JSON lines by
element-wise concatenation of Arrow string columns, and releases them in the order they
are *sent*, which is not the order they happened:

- every event is sent up to ``disorder_seconds`` after it happened (uniformly), so a
  watermark that trails the largest event time seen by ``disorder_seconds`` never finds a
  non-late event behind it;
- a ``late_fraction`` of events is sent later than that bound (late data);
- ``duplicate_fraction`` of the lines are an earlier line again, byte for byte, sent up to
  30 s after the original (a tracker's retry);
- ``invalid_fraction`` of the lines are malformed (:mod:`fluvial.generate.faults`).

Every line comes with its kind (``valid``, ``duplicate`` or ``invalid:<kind>``) so tests
can compute the expected outcome independently. The same configuration gives the same
bytes: every draw comes from one seeded NumPy generator, and the start time is fixed
with ``start_ms`` (otherwise it is now minus ``days``).

>>> events = list(generate_clickstream(ClickstreamConfig(events=50, seed=1, start_ms=0)))
>>> len(events), events[0].kind
(50, 'valid')
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import UsageError
from fluvial.generate import catalog as cat
from fluvial.generate.faults import INVALID_KINDS, corrupt
from fluvial.generate.formatting import concat, iso_millis, join_lines, money, uuid_strings
from fluvial.generate.simulation import (
    ADD,
    CHECKOUT,
    CLICK,
    EVENT_TYPES,
    IDENTIFY,
    PAGE_VIEW,
    PURCHASE,
    REMOVE,
    SEARCH,
    Population,
    SimulatedRows,
)

__all__ = [
    "KINDS",
    "ClickstreamConfig",
    "EventBatch",
    "GeneratedEvent",
    "clickstream_batches",
    "generate_clickstream",
]

#: the kind of each emitted line; EventBatch.kinds holds indices into this tuple
KINDS: tuple[str, ...] = ("valid", "duplicate", *(f"invalid:{k}" for k in INVALID_KINDS))
VALID, DUPLICATE = 0, 1

DAY_MS = 86_400_000
_WINDOW_ROWS = 40_000  # events simulated per window: big enough to vectorize well
_DUPLICATE_DELAY_MS = (200, 30_000)
_LATE_EXTRA_MS = 600_000  # late events arrive up to 10 minutes past the bound
_LATE_MIN_MS = 5_000
_CALIBRATION_SESSIONS = 3_000


@dataclass(frozen=True)
class ClickstreamConfig:
    """What to generate; see ``fluvial generate clickstream --help`` for each option."""

    events: int
    seed: int = 0
    users: int = 1_000
    days: float = 7.0
    start_ms: int | None = None
    disorder_seconds: float = 5.0
    late_fraction: float = 0.01
    duplicate_fraction: float = 0.005
    invalid_fraction: float = 0.005
    app_id: str = "demo"
    site: str = "https://shop.example.com"

    def __post_init__(self) -> None:
        def fraction(name: str, value: float) -> None:
            if not 0.0 <= value < 1.0:
                raise UsageError(f"{name} must be in [0, 1), found {value}")

        if self.events < 0:
            raise UsageError(f"events must be 0 or more, found {self.events}")
        if self.users < 1:
            raise UsageError(f"users must be at least 1, found {self.users}")
        if not self.days > 0:
            raise UsageError(f"days must be more than 0, found {self.days}")
        if self.disorder_seconds < 0:
            raise UsageError(f"disorder must be 0 seconds or more, found {self.disorder_seconds}")
        fraction("late fraction", self.late_fraction)
        fraction("duplicate fraction", self.duplicate_fraction)
        fraction("invalid fraction", self.invalid_fraction)
        if self.duplicate_fraction + self.invalid_fraction >= 0.9:
            raise UsageError(
                "duplicate and invalid fractions must leave room for valid events: their sum "
                f"must be under 0.9, found {self.duplicate_fraction + self.invalid_fraction:g}"
            )

    def resolved_start_ms(self) -> int:
        if self.start_ms is not None:
            return self.start_ms
        now = int(time.time()) * 1000
        return now - round(self.days * DAY_MS)


@dataclass(frozen=True)
class GeneratedEvent:
    """One emitted line and what it is.

    ``event_time_ms`` is when the event really happened (the line's ``event_time`` is
    that plus the device's clock skew); ``send_time_ms`` is when it is sent; ``late`` is
    true for originals sent beyond the disorder bound.
    """

    line: bytes
    kind: str
    event_time_ms: int
    send_time_ms: int
    late: bool


@dataclass(frozen=True)
class EventBatch:
    """Consecutive emitted lines as one NDJSON buffer, with per-line metadata arrays.

    ``data[offsets[i]:offsets[i + 1]]`` is line *i* with its newline, so any run of lines
    is one slice — what the sinks write or POST without copying line by line.
    """

    data: bytes
    offsets: np.ndarray  # int64, len + 1
    kinds: np.ndarray  # int8 indices into KINDS
    event_time_ms: np.ndarray
    send_time_ms: np.ndarray
    late: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.kinds)

    def line(self, i: int) -> bytes:
        return self.data[self.offsets[i] : self.offsets[i + 1] - 1]

    def body(self, start: int, stop: int) -> bytes:
        """Lines ``start`` to ``stop`` (exclusive) as NDJSON, newlines included."""
        return self.data[self.offsets[start] : self.offsets[stop]]

    def lines(self) -> list[bytes]:
        return [self.line(i) for i in range(len(self))]

    def events(self) -> Iterator[GeneratedEvent]:
        for i in range(len(self)):
            yield GeneratedEvent(
                self.line(i),
                KINDS[self.kinds[i]],
                int(self.event_time_ms[i]),
                int(self.send_time_ms[i]),
                bool(self.late[i]),
            )


def generate_clickstream(config: ClickstreamConfig) -> Iterator[GeneratedEvent]:
    """Every emitted line, in send order, with its kind."""
    for batch in clickstream_batches(config):
        yield from batch.events()


def clickstream_batches(config: ClickstreamConfig) -> Iterator[EventBatch]:
    """The emitted lines in send order, in batches of a few tens of thousands."""
    return _Generator(config).run()


class _Generator:
    def __init__(self, config: ClickstreamConfig) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.population = Population(config.users, self.rng, config.site)
        self.shop = self.population.shop
        keep = 1.0 - config.duplicate_fraction - config.invalid_fraction
        # spawned lines per original: Poisson means giving the requested line fractions
        self.dup_per_original = config.duplicate_fraction / keep
        self.invalid_per_original = config.invalid_fraction / keep
        self.rows_per_session = self._calibrate()
        sessions = config.events * keep / self.rows_per_session
        self.session_rate = max(sessions, 1.0) / (config.days * DAY_MS)  # per ms, on average
        self.window_ms = max(60_000.0, _WINDOW_ROWS / self.rows_per_session / self.session_rate)
        self.orders = 0
        self.seq = 0

    def _calibrate(self) -> float:
        """Mean events per session of this population, from a throwaway sample."""
        rng = np.random.default_rng([self.config.seed, 1])
        starts = np.sort(rng.integers(0, DAY_MS * 30, _CALIBRATION_SESSIONS))
        devices = self.population.draw_devices(rng, _CALIBRATION_SESSIONS)
        rows = self.population.simulate(rng, starts, devices, commit=False)
        return max(1.0, len(rows.etype) / max(1, len(rows.session_device)))

    def _arrivals(self, w0: float, w1: float) -> np.ndarray:
        """Session starts in [w0, w1): a Poisson process with a daily cycle (peak 15:00 UTC)."""
        peak = self.session_rate * 1.5
        n = self.rng.poisson(peak * (w1 - w0))
        t = np.sort(self.rng.uniform(w0, w1, n))
        hour = (t / 3_600_000.0) % 24.0
        intensity = 1.0 + 0.5 * np.sin(2 * math.pi * (hour - 9.0) / 24.0)
        return np.floor(t[self.rng.random(n) * 1.5 < intensity]).astype(np.int64)

    def run(self) -> Iterator[EventBatch]:
        total = self.config.events
        emitted = 0
        pending: pa.Table | None = None
        w0 = float(self.config.resolved_start_ms())
        while emitted < total:
            w1 = w0 + self.window_ms
            starts = self._arrivals(w0, w1)
            devices = self.population.draw_devices(self.rng, len(starts))
            rows = self.population.simulate(self.rng, starts, devices)
            fresh = self._emission(rows)
            pending = fresh if pending is None else pa.concat_tables([pending, fresh])
            pending = pending.take(
                np.lexsort((pending["seq"].to_numpy(), pending["send"].to_numpy()))
            )
            # later windows only hold events sent at or after w1: everything before is final
            ready = int(np.searchsorted(pending["send"].to_numpy(), w1, side="left"))
            ready = min(ready, total - emitted)
            if ready:
                yield _batch(pending.slice(0, ready))
                emitted += ready
            pending = pending.slice(ready)
            w0 = w1

    # -- from simulated rows to lines in send order -----------------------------------------

    def _emission(self, rows: SimulatedRows) -> pa.Table:
        cfg = self.config
        rng = self.rng
        n = len(rows.etype)
        bound = round(cfg.disorder_seconds * 1000)
        late = rng.random(n) < cfg.late_fraction
        delay = np.where(
            late,
            bound + max(bound, _LATE_MIN_MS) + rng.integers(0, _LATE_EXTRA_MS, n),
            rng.integers(0, bound + 1, n),
        )
        send = rows.t_ms + delay
        lines = self._lines(rows, send)
        seq = self.seq + np.arange(n, dtype=np.int64)
        self.seq += n
        parts = [
            pa.table(
                {
                    "line": lines,
                    "send": send,
                    "seq": seq,
                    "kind": np.full(n, VALID, np.int8),
                    "event": rows.t_ms,
                    "late": late,
                }
            )
        ]
        # duplicates: the same bytes again, a little later
        dups = rng.poisson(self.dup_per_original, n)
        if dups.any():
            src = np.repeat(np.arange(n), dups)
            lo, hi = _DUPLICATE_DELAY_MS
            parts.append(
                pa.table(
                    {
                        "line": lines.take(pa.array(src)),
                        "send": send[src] + rng.integers(lo, hi, len(src)),
                        "seq": seq[src],
                        "kind": np.full(len(src), DUPLICATE, np.int8),
                        "event": rows.t_ms[src],
                        "late": np.zeros(len(src), dtype=bool),
                    }
                )
            )
        # malformed events, each made from a valid one; one per row at most a few percent,
        # so building them one by one in Python is cheap next to the vectorized rest
        bad = rng.poisson(self.invalid_per_original, n)
        if bad.any():
            src = np.repeat(np.arange(n), bad)
            kinds = rng.integers(0, len(INVALID_KINDS), len(src))
            variants = rng.integers(0, 12, len(src))
            ids = uuid_strings(rng.integers(0, 256, (len(src), 16), dtype=np.uint8)).to_pylist()
            source = lines.take(pa.array(src)).to_pylist()
            broken = [
                corrupt(line.encode(), INVALID_KINDS[k], int(v), i).decode("utf-8")
                for line, k, v, i in zip(source, kinds, variants, ids, strict=True)
            ]
            parts.append(
                pa.table(
                    {
                        "line": pa.array(broken, pa.string()),
                        "send": send[src] + rng.integers(0, 1000, len(src)),
                        "seq": seq[src],
                        "kind": (2 + kinds).astype(np.int8),
                        "event": rows.t_ms[src],
                        "late": np.zeros(len(src), dtype=bool),
                    }
                )
            )
        return pa.concat_tables(parts)

    def _lines(self, rows: SimulatedRows, send_ms: np.ndarray) -> pa.Array:
        """Each row as its JSON line, by concatenating string columns (no per-row Python)."""
        pop = self.population
        rng = self.rng
        n = len(rows.etype)
        device = rows.device
        skew = pop.skew_ms[device]
        dev = pa.array(device)
        user = pop.device_user[device]
        user_id = pc.if_else(
            pa.array(rows.identified & (user >= 0)),
            pop.user_id.take(pa.array(np.maximum(user, 0))),
            pa.nulls(n, pa.string()),
        )
        event_ids = uuid_strings(rng.integers(0, 256, (n, 16), dtype=np.uint8))
        types = pa.array(list(EVENT_TYPES)).take(pa.array(rows.etype))
        session = rows.session_ids.take(pa.array(rows.sess))
        props = self._properties(rows)
        return concat(
            '{"event_id":"', event_ids,
            '","event_type":"', types,
            '","event_time":"', iso_millis(rows.t_ms + skew),
            '","sent_at":"', iso_millis(send_ms + skew),
            '","app_id":', cat.json_str(self.config.app_id), ",",
            concat('"user_id":"', user_id, '",'),
            '"anonymous_id":"', pop.anonymous_id.take(dev),
            '","session_id":"', session,
            '","page":{"url":"', rows.url, '",',
            concat('"referrer":"', rows.referrer, '",'),
            '"title":', self.shop.page_title_json.take(pa.array(rows.page)),
            '},"context":{"user_agent":', pop.user_agent_json.take(dev),
            ',"ip":"', pop.ip.take(dev),
            '","locale":', pop.locale_json.take(dev),
            '},"properties":', props, "}",
            skip_nulls=True,
        )  # fmt: skip

    def _properties(self, rows: SimulatedRows) -> pa.Array:
        """The ``properties`` JSON of every row, built per event type, then put in row order."""
        shop = self.shop
        n = len(rows.etype)
        chunks: list[pa.Array] = []
        order: list[np.ndarray] = []
        carts = uuid_strings(self.rng.integers(0, 256, (len(rows.session_ids), 16), dtype=np.uint8))

        def put(etype: int, build: Callable[[np.ndarray], pa.Array]) -> None:
            idx = np.flatnonzero(rows.etype == etype)
            if len(idx):
                chunks.append(build(idx))
                order.append(idx)

        put(PAGE_VIEW, lambda i: shop.page_view_props.take(pa.array(rows.page[i])))
        put(
            SEARCH,
            lambda i: concat('{"query":', shop.query_json.take(pa.array(rows.query[i])), "}"),
        )

        def cart_line(i: np.ndarray) -> pa.Array:
            price = shop.product_price_cents[rows.product[i]]
            return concat(
                '{"product_id":', shop.product_id_json.take(pa.array(rows.product[i])),
                ',"quantity":', pa.array(rows.quantity[i]).cast(pa.string()),
                ',"price":', money(price),
                ',"currency":"', cat.CURRENCY,
                '","cart_id":"', carts.take(pa.array(rows.sess[i])), '"}',
            )  # fmt: skip

        put(ADD, cart_line)
        put(REMOVE, cart_line)

        def click(i: np.ndarray) -> pa.Array:
            elements = pa.array([cat.json_str(name) for name, _ in cat.CLICK_ELEMENTS])
            anchors = pa.array(["#reviews", "#gallery", "", "#size-guide", ""])
            elem = pa.array(rows.element[i])
            target = rows.target_page[i]
            url = pc.if_else(
                pa.array(target >= 0),
                shop.page_url.take(pa.array(np.maximum(target, 0))),
                concat(rows.url.take(pa.array(i)), anchors.take(elem)),
            )
            return concat('{"element":', elements.take(elem), ',"target_url":"', url, '"}')

        put(CLICK, click)
        put(
            CHECKOUT,
            lambda i: concat(
                '{"cart_id":"', carts.take(pa.array(rows.sess[i])),
                '","step":', pa.array(rows.step[i]).cast(pa.string()),
                ',"value":', money(rows.cart_value_cents[rows.sess[i]]),
                ',"currency":"', cat.CURRENCY, '"}',
            ),
        )  # fmt: skip
        put(
            IDENTIFY,
            lambda i: self.population.traits_json.take(
                pa.array(np.maximum(self.population.device_user[rows.device[i]], 0))
            ),
        )
        put(PURCHASE, lambda i: self._purchases(rows, i, carts))
        strings = (
            pa.concat_arrays([c.cast(pa.string()) for c in chunks])
            if chunks
            else pa.array([], pa.string())
        )
        positions = np.concatenate(order) if order else np.zeros(0, np.int64)
        inverse = np.empty(n, dtype=np.int64)
        inverse[positions] = np.arange(n)
        return strings.take(pa.array(inverse))

    def _purchases(self, rows: SimulatedRows, idx: np.ndarray, carts: pa.Array) -> pa.Array:
        """Purchase properties. Item lists vary in length, so each order is joined in
        Python; orders are well under 1 % of events."""
        shop = self.shop
        # one item per product, its quantities added up (a product may be added twice)
        net = np.flatnonzero(rows.net_in_cart)
        key = rows.sess[net] * len(shop.products) + rows.product[net]
        unique, inverse = np.unique(key, return_inverse=True)
        quantity = np.bincount(inverse, weights=rows.quantity[net]).astype(np.int64)
        items_sess, product = np.divmod(unique, len(shop.products))
        item_json = concat(
            '{"product_id":', shop.product_id_json.take(pa.array(product)),
            ',"quantity":', pa.array(quantity).cast(pa.string()),
            ',"price":', money(shop.product_price_cents[product]), "}",
        ).to_pylist()  # fmt: skip
        bounds = np.searchsorted(items_sess, rows.sess[idx], side="left")
        ends = np.searchsorted(items_sess, rows.sess[idx], side="right")
        cart_ids = carts.take(pa.array(rows.sess[idx])).to_pylist()
        revenue = money(rows.cart_value_cents[rows.sess[idx]]).to_pylist()
        out = []
        for a, b, cart, rev in zip(bounds, ends, cart_ids, revenue, strict=True):
            self.orders += 1
            out.append(
                f'{{"order_id":"ORD-{100000 + self.orders}","revenue":{rev},'
                f'"currency":"{cat.CURRENCY}","cart_id":"{cart}",'
                f'"items":[{",".join(item_json[a:b])}]}}'
            )
        return pa.array(out, pa.string())


def _batch(table: pa.Table) -> EventBatch:
    data, offsets = join_lines(table["line"].combine_chunks())
    return EventBatch(
        data=data,
        offsets=offsets,
        kinds=table["kind"].to_numpy(),
        event_time_ms=table["event"].to_numpy(),
        send_time_ms=table["send"].to_numpy(),
        late=table["late"].to_numpy(zero_copy_only=False),
    )
