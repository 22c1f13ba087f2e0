"""``'connector' = 'nexmark'``: the Nexmark benchmark's events, generated as a source.

The table is laid out like Flink's Nexmark source (``event_type`` and the ``person``,
``auction`` and ``bid`` rows; see ``benchmarks/stream/nexmark/source.sql``); any subset of
those columns, in any order, may be declared. Events come from
:mod:`fluvial.generate.nexmark` in whole Arrow batches, exactly the tables
:func:`~fluvial.generate.nexmark.nexmark_tables` yields for the same settings, so a pipeline
over this source reads what it would read from the generator's NDJSON file.

Options, by the Nexmark benchmark's names (``NexmarkSourceOptions``)::

    'events.num'                  events to produce; 0 (the default): unbounded
    'first-event.rate'            events per second of event time (default 10000)
    'next-event.rate'             must equal 'first-event.rate' (a varying rate is
                                  not supported), which it defaults to
    'rate.shape', 'rate.period'   accepted (square | sine, a duration): no effect at a
                                  constant rate
    'rate.limited'                true: emit no faster than the rate in wall-clock time
    'person.avg-size', 'auction.avg-size', 'bid.avg-size'
                                  average record sizes ('200b', '1kb'...)
    'bid.hot-ratio.auctions', 'bid.hot-ratio.bidders', 'auction.hot-ratio.sellers'
                                  the generator's hot ratios
    'person.proportion', 'auction.proportion', 'bid.proportion'
                                  only Nexmark's 1 : 3 : 46
    'keep-alive'                  true: stay open (never finished) after 'events.num'
    'stop-at', 'max-emit-speed'   only their defaults (-1, true)

and Fluvial's own: ``'fluvial.seed'`` (the generator's seed, default 0),
``'fluvial.base-time'`` (the first event's time: epoch milliseconds or
``yyyy-MM-dd HH:mm:ss[.SSS]`` UTC; default the wall clock when the source first opens) and
``'fluvial.splits'`` (default 1). With ``'fluvial.base-time'`` set, the events are the same
on every run.

Event *k* goes to split ``nexmark-<k mod N>``, so every split's event time advances at
the same pace. A split's position is the number of its events emitted (and the base
time, so a restore without ``'fluvial.base-time'`` regenerates the same events); a
restore regenerates the events before the position and skips them, which costs about a
second per 600,000 events skipped.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from fluvial.errors import FluvialError
from fluvial.generate.nexmark import (
    AUCTION_PROPORTION,
    BID_PROPORTION,
    NEXMARK_SCHEMA,
    PERSON_PROPORTION,
    NexmarkConfig,
    nexmark_tables,
)
from fluvial.stream.connectors.base import ConnectorContext, Source, SourceBatch
from fluvial.stream.connectors.conform import ColumnMismatch, conform
from fluvial.stream.connectors.options import Options

if TYPE_CHECKING:
    from fluvial.stream.sql.ast import CreateTable

__all__ = ["NexmarkSource"]

#: options taken as they are in Nexmark (Flink's names), then Fluvial's own
OPTIONAL = (
    "events.num",
    "first-event.rate",
    "next-event.rate",
    "rate.shape",
    "rate.period",
    "rate.limited",
    "person.avg-size",
    "auction.avg-size",
    "bid.avg-size",
    "person.proportion",
    "auction.proportion",
    "bid.proportion",
    "bid.hot-ratio.auctions",
    "bid.hot-ratio.bidders",
    "auction.hot-ratio.sellers",
    "keep-alive",
    "stop-at",
    "max-emit-speed",
    "fluvial.seed",
    "fluvial.base-time",
    "fluvial.splits",
)
#: Nexmark options Fluvial takes at one value only: name -> (that value, why)
FIXED = {
    "person.proportion": (str(PERSON_PROPORTION), "the generator's proportions are 1 : 3 : 46"),
    "auction.proportion": (str(AUCTION_PROPORTION), "the generator's proportions are 1 : 3 : 46"),
    "bid.proportion": (str(BID_PROPORTION), "the generator's proportions are 1 : 3 : 46"),
    "stop-at": ("-1", "a source that stops part-way is not supported"),
    "max-emit-speed": ("true", "use 'rate.limited' = 'true' to pace the events"),
}
#: an unbounded source's event count: far beyond any run (and event times stay in int64)
UNBOUNDED = 1 << 50
_MEMORY_UNITS = {
    "": 1, "b": 1, "bytes": 1,
    "k": 1 << 10, "kb": 1 << 10, "kibibytes": 1 << 10,
    "m": 1 << 20, "mb": 1 << 20, "mebibytes": 1 << 20,
}  # fmt: skip
_MEMORY = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$")


def _split_name(i: int) -> str:
    return f"nexmark-{i}"


class NexmarkSource(Source):
    """Nexmark events from the vectorized generator; bounded when ``'events.num'`` > 0.

    >>> from fluvial.stream.sql.parser import parse_script
    >>> (ddl,) = parse_script(
    ...     "CREATE TABLE nx (event_type INT) WITH ('connector' = 'nexmark', "
    ...     "'events.num' = '120', 'fluvial.splits' = '2', 'fluvial.base-time' = '0')"
    ... ).statements
    >>> source = NexmarkSource(ddl, ddl.options, ConnectorContext())
    >>> source.open()
    >>> [(b.split, b.table.num_rows) for b in source.poll(max_rows=100)]
    [('nexmark-0', 50), ('nexmark-1', 50)]
    >>> source.poll()[0].position, source.finished()
    ({'emitted': 60, 'base-time': 0}, True)
    """

    required_options: ClassVar[tuple[str, ...]] = ()
    optional_options: ClassVar[tuple[str, ...]] = OPTIONAL

    def __init__(
        self, table: CreateTable, options: Mapping[str, str], context: ConnectorContext
    ) -> None:
        super().__init__(table, options, context)
        self.opts = opts = Options(table, options)
        for name, (value, why) in FIXED.items():
            given = opts.get(name)
            if given is not None and given.strip().lower() != value:
                raise opts.error(
                    f"option '{name}': only {value!r} is supported ({why}), found {given!r}",
                    unsupported=True,
                )
        self.events_num = self._int("events.num", 0, minimum=0)
        self.rate = self._int("first-event.rate", 10_000, minimum=1)
        if self.rate > 1_000_000:
            raise opts.error(
                f"option 'first-event.rate': expected at most 1000000 events/s, found {self.rate}"
            )
        next_rate = self._int("next-event.rate", self.rate, minimum=1)
        if next_rate != self.rate:
            raise opts.error(
                f"option 'next-event.rate': a rate that changes over time is not supported; "
                f"expected {self.rate} (the 'first-event.rate'), found {next_rate}",
                unsupported=True,
            )
        opts.choice("rate.shape", ("square", "sine"), "square")
        self._duration("rate.period")
        self.rate_limited = opts.flag("rate.limited")
        self.keep_alive = opts.flag("keep-alive")
        self.seed = self._int("fluvial.seed", 0, minimum=0)
        self.num_splits = self._int("fluvial.splits", 1, minimum=1)
        self.base_ms: int | None = self._base_time()
        self._settings = {
            "avg_person_bytes": self._memory("person.avg-size", 200),
            "avg_auction_bytes": self._memory("auction.avg-size", 500),
            "avg_bid_bytes": self._memory("bid.avg-size", 100),
            "hot_auction_ratio": self._int("bid.hot-ratio.auctions", 2, minimum=1),
            "hot_bidders_ratio": self._int("bid.hot-ratio.bidders", 4, minimum=1),
            "hot_sellers_ratio": self._int("auction.hot-ratio.sellers", 4, minimum=1),
        }
        try:
            conform(NEXMARK_SCHEMA.empty_table(), self.schema, what="the Nexmark events")
        except ColumnMismatch as exc:
            raise opts.error(exc.detail) from exc
        self._splits = [_split_name(i) for i in range(self.num_splits)]
        self._next = 0  # every event below this one has been emitted
        self._end = self.events_num or UNBOUNDED
        self._chunks: Iterator[pa.Table] | None = None
        self._chunk: pa.Table | None = None
        self._chunk_first = 0  # the event number of the chunk's first row
        self._clock: tuple[float, int] | None = None  # (wall time, next event) at open

    # -- options ----------------------------------------------------------------------

    def _int(self, name: str, default: int, *, minimum: int) -> int:
        value = self.opts.integer(name, default)
        assert value is not None
        if value < minimum:
            raise self.opts.error(f"option '{name}': expected {minimum} or more, found {value}")
        return value

    def _memory(self, name: str, default: int) -> int:
        text = self.opts.get(name)
        if text is None:
            return default
        found = _MEMORY.match(text.lower())
        if found is None or found.group(2) not in _MEMORY_UNITS:
            raise self.opts.error(
                f"option '{name}': expected a size such as '200b' or '1kb', found {text!r}"
            )
        return int(found.group(1)) * _MEMORY_UNITS[found.group(2)]

    def _duration(self, name: str) -> None:
        from fluvial.stream.plan.build import parse_duration_ms

        text = self.opts.get(name)
        if text is None:
            return
        try:
            parse_duration_ms(text)
        except (FluvialError, ValueError):
            raise self.opts.error(
                f"option '{name}': expected a duration such as '600 s', found {text!r}"
            ) from None

    def _base_time(self) -> int | None:
        text = self.opts.get("fluvial.base-time")
        if text is None:
            return None
        text = text.strip()
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise self.opts.error(
                "option 'fluvial.base-time': expected epoch milliseconds or "
                f"'yyyy-MM-dd HH:mm:ss[.SSS]', found {text!r}"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return int(moment.timestamp() * 1000)

    # -- the Source interface ---------------------------------------------------------

    def open(self, positions: Mapping[str, Any] | None = None) -> None:
        emitted = dict.fromkeys(self._splits, 0)
        if positions:
            if set(positions) != set(self._splits):
                raise self.opts.error(
                    f"the checkpoint has splits {', '.join(sorted(positions))}, and the table "
                    f"now has {', '.join(self._splits)}: keep 'fluvial.splits' as it was"
                )
            bases = {p.get("base-time") for p in positions.values()}
            if len(bases) != 1 or not isinstance(next(iter(bases)), int):
                raise self.opts.error(f"unreadable checkpointed positions: {dict(positions)}")
            base = next(iter(bases))
            if self.base_ms is not None and base != self.base_ms:
                raise self.opts.error(
                    f"'fluvial.base-time' changed since the checkpoint ({base} ms), found "
                    f"{self.base_ms} ms"
                )
            self.base_ms = base
            emitted = {split: int(positions[split]["emitted"]) for split in self._splits}
        if self.base_ms is None:
            self.base_ms = int(time.time() * 1000)
        # the splits emit every event below one number together: split i has emitted
        # i, i + N, ... below it, so its next event is i + N * emitted[i]
        n = self.num_splits
        self._next = min(i + n * emitted[s] for i, s in enumerate(self._splits))
        if any(p["emitted"] != emitted[s] for s, p in self.positions().items()):
            raise self.opts.error(f"inconsistent checkpointed positions: {dict(positions or {})}")
        config = NexmarkConfig(
            events=self._end,
            seed=self.seed,
            rate=float(self.rate),
            start_ms=self.base_ms,
            **self._settings,
        )
        self._chunks = nexmark_tables(config)
        self._chunk, self._chunk_first = None, 0
        self._clock = (time.monotonic(), self._next)

    def splits(self) -> list[str]:
        return list(self._splits)

    def positions(self) -> dict[str, Any]:
        n, nxt = self.num_splits, self._next
        # split i has emitted the events i, i + N, ... below ``_next``
        return {
            s: {"emitted": max((nxt - i + n - 1) // n, 0), "base-time": self.base_ms}
            for i, s in enumerate(self._splits)
        }

    def finished(self) -> bool:
        return not self.keep_alive and self.events_num > 0 and self._next >= self._end

    def poll(self, max_rows: int = 65_536, timeout: float = 0.0) -> list[SourceBatch]:
        assert self._chunks is not None, "open() the source first"
        want = min(max_rows, self._end - self._next)
        if self.rate_limited and want > 0:
            want = min(want, self._due(timeout))
        if want <= 0:
            if self.keep_alive and timeout > 0 and self._next >= self._end:
                time.sleep(timeout)
            return []
        rows = self._take(want)
        first = self._next
        self._next += rows.num_rows
        return self._deal(rows, first)

    # -- generating ---------------------------------------------------------------------

    def _due(self, timeout: float) -> int:
        """How many events the wall clock allows now (waiting up to *timeout* for one)."""
        assert self._clock is not None
        started, first = self._clock
        due = first + int((time.monotonic() - started) * self.rate) - self._next
        if due <= 0 and timeout > 0:
            time.sleep(min(timeout, (1 - due) / self.rate))
            due = first + int((time.monotonic() - started) * self.rate) - self._next
        return max(due, 0)

    def _take(self, want: int) -> pa.Table:
        """The events ``_next ..`` (at most *want*, within one generator chunk)."""
        assert self._chunks is not None
        while self._chunk is None or self._chunk_first + self._chunk.num_rows <= self._next:
            if self._chunk is not None:
                self._chunk_first += self._chunk.num_rows
            self._chunk = next(self._chunks)  # skipped whole while restoring
        offset = self._next - self._chunk_first
        return self._chunk.slice(offset, want)

    def _deal(self, rows: pa.Table, first: int) -> list[SourceBatch]:
        """The rows as one batch per split (event k to split k mod N), fit to the table."""
        n = self.num_splits
        table = conform(rows, self.schema, what="the Nexmark events")
        if n == 1:
            return [SourceBatch(self._splits[0], table, self.positions()[self._splits[0]])]
        positions = self.positions()
        which = (np.arange(first, first + table.num_rows, dtype=np.int64)) % n
        out = []
        for i, split in enumerate(self._splits):
            idx = np.flatnonzero(which == i)
            if len(idx):
                out.append(SourceBatch(split, table.take(pa.array(idx)), positions[split]))
        return out
