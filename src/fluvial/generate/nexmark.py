"""The Nexmark benchmark's event generator (persons, auctions, bids), vectorized with NumPy.

It follows the generator of Apache Beam's and Flink's Nexmark (``GeneratorConfig``,
``PersonGenerator``, ``AuctionGenerator``, ``BidGenerator``): event *k* is a person,
auction or bid by ``k % 50`` (1 : 3 : 46), ids start at 1000, categories at 10, event
time advances by ``1e6 / rate`` microseconds per event, half of the bids go to the
latest "hot" auction of each block of 100 and three quarters of sellers and bidders are
hot people, the rest are drawn from the active people and in-flight auctions (plus a
few ids "from the future", as Nexmark does). Prices are ``10 ** U(0, 6) * 100`` and the
``extra`` filler pads each record to Nexmark's average sizes (200 / 500 / 100 bytes).
The values are drawn by NumPy, not Java's ``Random``: distributions match, numbers don't.

Rows have Flink's Nexmark source layout: ``event_type`` (0 person, 1 auction, 2 bid)
and three nullable structs, ``person``, ``auction``, ``bid`` (:data:`NEXMARK_SCHEMA`).

>>> table = next(nexmark_tables(NexmarkConfig(events=50, start_ms=0)))
>>> table["event_type"].to_pylist().count(2), table["person"][0]["id"].as_py()
(46, 1000)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import UsageError
from fluvial.generate.formatting import concat, join_lines, sql_millis

if TYPE_CHECKING:
    from fluvial.log import EventLog

__all__ = [
    "FIRST_AUCTION_ID",
    "FIRST_CATEGORY_ID",
    "FIRST_PERSON_ID",
    "NEXMARK_SCHEMA",
    "NexmarkConfig",
    "append_nexmark",
    "nexmark_lines",
    "nexmark_tables",
]

FIRST_PERSON_ID = 1000
FIRST_AUCTION_ID = 1000
FIRST_CATEGORY_ID = 10
NUM_CATEGORIES = 5
PERSON_PROPORTION, AUCTION_PROPORTION, BID_PROPORTION = 1, 3, 46
PROPORTION_DENOMINATOR = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION
PERSON_ID_LEAD = 10
AUCTION_ID_LEAD = 10
HOT_SELLER_RATIO = 100
HOT_AUCTION_RATIO = 100
HOT_BIDDER_RATIO = 100
HOT_CHANNELS = ("Google", "Facebook", "Baidu", "Apple")
CHANNELS_NUMBER = 10_000
US_STATES = ("AZ", "CA", "ID", "OR", "WA", "WY")
US_CITIES = ("Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne")  # fmt: skip
FIRST_NAMES = ("Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter")  # fmt: skip
LAST_NAMES = ("Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris")  # fmt: skip

_TS = pa.timestamp("ms")
PERSON_TYPE = pa.struct(
    [("id", pa.int64()), ("name", pa.string()), ("emailAddress", pa.string()),
     ("creditCard", pa.string()), ("city", pa.string()), ("state", pa.string()),
     ("dateTime", _TS), ("extra", pa.string())]
)  # fmt: skip
AUCTION_TYPE = pa.struct(
    [("id", pa.int64()), ("itemName", pa.string()), ("description", pa.string()),
     ("initialBid", pa.int64()), ("reserve", pa.int64()), ("dateTime", _TS), ("expires", _TS),
     ("seller", pa.int64()), ("category", pa.int64()), ("extra", pa.string())]
)  # fmt: skip
BID_TYPE = pa.struct(
    [("auction", pa.int64()), ("bidder", pa.int64()), ("price", pa.int64()),
     ("channel", pa.string()), ("url", pa.string()), ("dateTime", _TS), ("extra", pa.string())]
)  # fmt: skip
NEXMARK_SCHEMA = pa.schema(
    [
        pa.field("event_type", pa.int32(), nullable=False),
        pa.field("person", PERSON_TYPE),
        pa.field("auction", AUCTION_TYPE),
        pa.field("bid", BID_TYPE),
    ]
)
_POOL_BYTES = 1 << 22
_CHUNK = 100_000


@dataclass(frozen=True)
class NexmarkConfig:
    """Nexmark's generator settings (names as in its ``NexmarkConfiguration``)."""

    events: int
    seed: int = 0
    rate: float = 10_000.0  # first event rate: events per second of event time
    start_ms: int | None = None
    num_active_people: int = 1_000
    num_in_flight_auctions: int = 100
    hot_auction_ratio: int = 2
    hot_sellers_ratio: int = 4
    hot_bidders_ratio: int = 4
    avg_person_bytes: int = 200
    avg_auction_bytes: int = 500
    avg_bid_bytes: int = 100
    chunk: int = _CHUNK

    def __post_init__(self) -> None:
        if self.events < 0:
            raise UsageError(f"events must be 0 or more, found {self.events}")
        if not 0 < self.rate <= 1_000_000:
            raise UsageError(f"rate must be in (0, 1000000] events/s, found {self.rate}")
        if self.chunk < 1:
            raise UsageError(f"chunk must be at least 1, found {self.chunk}")

    @property
    def inter_event_delay_us(self) -> int:
        return max(1, round(1_000_000 / self.rate))


def last_base0_person_id(event: np.ndarray) -> np.ndarray:
    epoch, offset = np.divmod(event, PROPORTION_DENOMINATOR)
    offset = np.minimum(offset, PERSON_PROPORTION - 1)
    return epoch * PERSON_PROPORTION + offset


def last_base0_auction_id(event: np.ndarray) -> np.ndarray:
    epoch, offset = np.divmod(event, PROPORTION_DENOMINATOR)
    person = offset < PERSON_PROPORTION
    bid = offset >= PERSON_PROPORTION + AUCTION_PROPORTION
    epoch = np.where(person, epoch - 1, epoch)
    offset = np.where(person | bid, AUCTION_PROPORTION - 1, offset - PERSON_PROPORTION)
    return epoch * AUCTION_PROPORTION + offset


class _Nexmark:
    def __init__(self, config: NexmarkConfig) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        start = config.start_ms
        self.base_ms = int(time.time() * 1000) if start is None else start
        rng = self.rng
        letters = rng.integers(ord("a"), ord("z") + 1, _POOL_BYTES, dtype=np.uint8)
        self.pool = np.concatenate([letters, letters])  # a wrap-around read is one slice
        urls = [self._base_url() for _ in HOT_CHANNELS]
        self.hot_url = pa.array(urls)
        # Nexmark's cache of 10,000 channels: "channel-i", most with a channel_id in the URL
        idx = np.arange(CHANNELS_NUMBER, dtype=np.int64)
        self.channel = concat("channel-", pa.array(idx).cast(pa.string()))
        reversed_ids = np.abs(_reverse_bits32(idx))
        base = self._strings(rng.integers(3, 5, (CHANNELS_NUMBER, 3)).ravel(), underscore=True)
        parts = base.to_numpy(zero_copy_only=False).reshape(-1, 3)
        url = concat(
            "https://www.nexmark.com/", pa.array(parts[:, 0]), "/", pa.array(parts[:, 1]), "/",
            pa.array(parts[:, 2]), "/item.htm?query=1",
        )  # fmt: skip
        with_id = concat(url, "&channel_id=", pa.array(reversed_ids).cast(pa.string()))
        self.channel_url = pc.if_else(
            pa.array(rng.integers(0, 10, CHANNELS_NUMBER) > 0), with_id, url
        )

    def _base_url(self) -> str:
        parts = self._strings(self.rng.integers(3, 5, 3), underscore=True).to_pylist()
        return f"https://www.nexmark.com/{parts[0]}/{parts[1]}/{parts[2]}/item.htm?query=1"

    def _strings(self, lengths: np.ndarray, *, underscore: bool = False) -> pa.StringArray:
        """Nexmark's ``nextString``: letters with a 1-in-13 chance of a space (or ``_``);
        the first and last characters are letters (Nexmark trims the spaces off)."""
        lengths = np.asarray(lengths, dtype=np.int64)
        total = int(lengths.sum())
        draw = self.rng.integers(0, 13 * 26, total, dtype=np.int32)
        chars = np.where(draw < 26, ord("_") if underscore else ord(" "), ord("a") + draw % 26)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ends = offsets[1:][lengths > 0]
        chars[offsets[:-1][lengths > 0]] = ord("a") + draw[offsets[:-1][lengths > 0]] % 26
        chars[ends - 1] = ord("a") + draw[ends - 1] % 26
        return pa.LargeStringArray.from_buffers(
            len(lengths), pa.py_buffer(offsets), pa.py_buffer(chars.astype(np.uint8))
        ).cast(pa.string())

    def _extra(self, current: np.ndarray, average: int) -> pa.StringArray:
        """Nexmark's ``nextExtra``: filler letters so records average *average* bytes.

        It only pads, so its letters are consecutive slices of a random pool: one copy
        per batch instead of one random draw per byte.
        """
        desired = np.maximum(average - current, 0)
        delta = np.round(desired * 0.2).astype(np.int64)
        spread = (self.rng.random(len(desired)) * 2 * delta).astype(np.int64)
        lengths = np.where(current > average, 0, desired - delta + spread)
        total = int(lengths.sum())
        if total > _POOL_BYTES:  # only for huge chunks: fall back to fresh letters
            data = self.rng.integers(ord("a"), ord("z") + 1, total, dtype=np.uint8)
        else:
            start = int(self.rng.integers(0, _POOL_BYTES))
            data = self.pool[start : start + total]
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return pa.LargeStringArray.from_buffers(
            len(lengths), pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))
        ).cast(pa.string())

    def _price(self, n: int) -> np.ndarray:
        return np.round(10.0 ** (self.rng.random(n) * 6.0) * 100.0).astype(np.int64)

    def _next_person(self, event: np.ndarray) -> np.ndarray:
        """A base-0 person among the active ones, plus a few not yet created."""
        people = last_base0_person_id(event) + 1
        active = np.minimum(people, self.config.num_active_people)
        pick = (self.rng.random(len(event)) * (active + PERSON_ID_LEAD)).astype(np.int64)
        return people - active + pick

    def _next_auction(self, event: np.ndarray) -> np.ndarray:
        """A base-0 auction among those likely in flight, plus a few not yet created."""
        latest = last_base0_auction_id(event)
        lowest = np.maximum(latest - self.config.num_in_flight_auctions, 0)
        span = latest - lowest + 1 + AUCTION_ID_LEAD
        return lowest + (self.rng.random(len(event)) * span).astype(np.int64)

    # -- the three event kinds ----------------------------------------------------------

    def persons(self, event: np.ndarray, ts: np.ndarray) -> pa.StructArray:
        rng = self.rng
        n = len(event)
        first = pa.array(FIRST_NAMES).take(pa.array(rng.integers(0, len(FIRST_NAMES), n)))
        last = pa.array(LAST_NAMES).take(pa.array(rng.integers(0, len(LAST_NAMES), n)))
        name = concat(first, " ", last)
        email = concat(
            self._strings(rng.integers(3, 7, n)), "@", self._strings(rng.integers(3, 5, n)), ".com"
        )
        digits = pc.utf8_lpad(pa.array(rng.integers(0, 10_000, 4 * n)).cast(pa.string()), 4, "0")
        group = [digits.take(pa.array(np.arange(i, 4 * n, 4))) for i in range(4)]
        card = concat(group[0], " ", group[1], " ", group[2], " ", group[3])
        city = pa.array(US_CITIES).take(pa.array(rng.integers(0, len(US_CITIES), n)))
        state = pa.array(US_STATES).take(pa.array(rng.integers(0, len(US_STATES), n)))
        size = 8 + sum(
            pc.utf8_length(x).to_numpy(zero_copy_only=False)
            for x in (name, email, card, city, state)
        )
        return pa.StructArray.from_arrays(
            [
                pa.array(last_base0_person_id(event) + FIRST_PERSON_ID),
                name, email, card, city, state,
                pa.array(ts, _TS),
                self._extra(np.asarray(size), self.config.avg_person_bytes),
            ],
            fields=list(PERSON_TYPE),
        )  # fmt: skip

    def auctions(self, event: np.ndarray, ts: np.ndarray) -> pa.StructArray:
        cfg = self.config
        rng = self.rng
        n = len(event)
        hot = rng.integers(0, cfg.hot_sellers_ratio, n) > 0
        hot_seller = (last_base0_person_id(event) // HOT_SELLER_RATIO) * HOT_SELLER_RATIO
        seller = np.where(hot, hot_seller, self._next_person(event)) + FIRST_PERSON_ID
        category = FIRST_CATEGORY_ID + rng.integers(0, NUM_CATEGORIES, n)
        initial = self._price(n)
        reserve = initial + self._price(n)
        # auctions last on average until numInFlightAuctions more have been created
        events_for_auctions = (
            cfg.num_in_flight_auctions * PROPORTION_DENOMINATOR // AUCTION_PROPORTION
        )
        horizon = events_for_auctions * cfg.inter_event_delay_us // 1000
        expires = ts + 1 + (rng.random(n) * max(2 * horizon, 1)).astype(np.int64)
        name = self._strings(rng.integers(3, 20, n))
        desc = self._strings(rng.integers(3, 100, n))
        size = 8 + pc.utf8_length(name).to_numpy() + pc.utf8_length(desc).to_numpy() + 40
        return pa.StructArray.from_arrays(
            [
                pa.array(last_base0_auction_id(event) + FIRST_AUCTION_ID),
                name, desc, pa.array(initial), pa.array(reserve),
                pa.array(ts, _TS), pa.array(expires, _TS),
                pa.array(seller), pa.array(category),
                self._extra(size, cfg.avg_auction_bytes),
            ],
            fields=list(AUCTION_TYPE),
        )  # fmt: skip

    def bids(self, event: np.ndarray, ts: np.ndarray) -> pa.StructArray:
        cfg = self.config
        rng = self.rng
        n = len(event)
        hot_auction = (last_base0_auction_id(event) // HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO
        auction = np.where(
            rng.integers(0, cfg.hot_auction_ratio, n) > 0, hot_auction, self._next_auction(event)
        )
        # the second person of the block, so hot bidders and hot sellers differ
        hot_bidder = (last_base0_person_id(event) // HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1
        bidder = np.where(
            rng.integers(0, cfg.hot_bidders_ratio, n) > 0, hot_bidder, self._next_person(event)
        )
        hot_channel = rng.integers(0, 2, n) > 0
        which_hot = rng.integers(0, len(HOT_CHANNELS), n)
        which = rng.integers(0, CHANNELS_NUMBER, n)
        channel = pc.if_else(
            pa.array(hot_channel),
            pa.array(HOT_CHANNELS).take(pa.array(which_hot)),
            self.channel.take(pa.array(which)),
        )
        url = pc.if_else(
            pa.array(hot_channel),
            self.hot_url.take(pa.array(which_hot)),
            self.channel_url.take(pa.array(which)),
        )
        return pa.StructArray.from_arrays(
            [
                pa.array(auction + FIRST_AUCTION_ID), pa.array(bidder + FIRST_PERSON_ID),
                pa.array(self._price(n)), channel, url, pa.array(ts, _TS),
                self._extra(np.full(n, 32), cfg.avg_bid_bytes),
            ],
            fields=list(BID_TYPE),
        )  # fmt: skip

    def tables(self) -> Iterator[pa.Table]:
        cfg = self.config
        for first in range(0, cfg.events, cfg.chunk):
            event = np.arange(first, min(first + cfg.chunk, cfg.events), dtype=np.int64)
            ts = self.base_ms + event * cfg.inter_event_delay_us // 1000
            rem = event % PROPORTION_DENOMINATOR
            kind = np.where(
                rem < PERSON_PROPORTION,
                0,
                np.where(rem < PERSON_PROPORTION + AUCTION_PROPORTION, 1, 2),
            ).astype(np.int32)
            columns: list[pa.Array] = [pa.array(kind)]
            for code, build in ((0, self.persons), (1, self.auctions), (2, self.bids)):
                idx = np.flatnonzero(kind == code)
                compact = build(event[idx], ts[idx])
                # scatter back to every row: a null index gives a null struct
                where = np.full(len(event), -1, dtype=np.int64)
                where[idx] = np.arange(len(idx))
                columns.append(compact.take(pa.array(where, mask=where < 0)))
            yield pa.Table.from_arrays(columns, schema=NEXMARK_SCHEMA)


def nexmark_tables(config: NexmarkConfig) -> Iterator[pa.Table]:
    """The events as Arrow tables of :data:`NEXMARK_SCHEMA`, ``config.chunk`` rows each."""
    return _Nexmark(config).tables()


def append_nexmark(
    log: EventLog,
    tables: Iterable[pa.Table],
    *,
    topic: str = "nexmark",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Append Nexmark tables to *topic* (created if missing); returns the rows appended.

    Rows are dealt round-robin over the partitions, event *k* to partition ``k % P``:
    keying by auction would put about half of all bids (the hot auctions) on one
    partition, while dealing keeps partitions equal and lets every partition's event
    time advance at the same pace, so per-partition watermarks stay close. Queries
    re-key by auction or person themselves, as they do on Flink's Nexmark source.
    """
    info = log.create_topic(topic, schema=NEXMARK_SCHEMA, exist_ok=True)
    parts = max(1, info.num_partitions)
    done = 0
    for table in tables:
        n = table.num_rows
        for p in range(parts):
            rows = np.arange((p - done) % parts, n, parts)
            if len(rows):
                log.append(topic, table.take(pa.array(rows)), partition=p)
        done += n
        if progress:
            progress(n)
    return done


def _reverse_bits32(values: np.ndarray) -> np.ndarray:
    """Java's ``Integer.reverse`` as a signed 32-bit result."""
    v = values.astype(np.uint32)
    out = np.zeros_like(v)
    for bit in range(32):
        out |= ((v >> np.uint32(bit)) & np.uint32(1)) << np.uint32(31 - bit)
    return out.view(np.int32).astype(np.int64)


def _json_struct(array: pa.StructArray, numeric: set[str], times: set[str]) -> pa.Array:
    """Each struct as a JSON object; the generator's strings never need escaping."""
    parts: list[object] = ["{"]
    for i, f in enumerate(array.type):
        child = array.field(i)
        if f.name in times:
            ms = pc.cast(child, pa.int64()).to_numpy(zero_copy_only=False)
            text: pa.Array = concat('"', sql_millis(ms), '"')
        elif f.name in numeric:
            text = child.cast(pa.string())
        else:
            text = concat('"', child, '"')
        parts += [("," if i else "") + f'"{f.name}":', text]
    parts.append("}")
    return concat(*parts)


def nexmark_lines(table: pa.Table) -> tuple[bytes, np.ndarray]:
    """A table of :data:`NEXMARK_SCHEMA` as NDJSON (``dateTime`` as ``yyyy-MM-dd
    HH:mm:ss.SSS``), and the line offsets."""
    kind = table["event_type"].combine_chunks()
    kinds = kind.to_numpy()
    pieces: dict[str, pa.Array] = {}
    specs = {
        "person": ({"id"}, {"dateTime"}),
        "auction": ({"id", "initialBid", "reserve", "seller", "category"}, {"dateTime", "expires"}),
        "bid": ({"auction", "bidder", "price"}, {"dateTime"}),
    }
    for code, (name, (numeric, times)) in enumerate(specs.items()):
        column = table[name].combine_chunks()
        idx = np.flatnonzero(kinds == code)
        compact = _json_struct(column.take(pa.array(idx)), numeric, times)
        where = np.full(len(kinds), -1, dtype=np.int64)
        where[idx] = np.arange(len(idx))
        pieces[name] = pc.fill_null(compact.take(pa.array(where, mask=where < 0)), "null")
    lines = concat(
        '{"event_type":', kind.cast(pa.string()),
        ',"person":', pieces["person"],
        ',"auction":', pieces["auction"],
        ',"bid":', pieces["bid"], "}",
    )  # fmt: skip
    return join_lines(lines)
