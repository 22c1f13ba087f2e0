"""The Nexmark generator against the rules of Beam's and Flink's Nexmark generator."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest

from fluvial.generate import (
    NEXMARK_SCHEMA,
    NexmarkConfig,
    append_nexmark,
    nexmark_lines,
    nexmark_tables,
)

START = 1_780_000_000_000
N = 60_000


@pytest.fixture(scope="module")
def table() -> pa.Table:
    config = NexmarkConfig(events=N, seed=2, start_ms=START, rate=20_000, chunk=25_000)
    return pa.concat_tables(nexmark_tables(config))


def _column(table: pa.Table, struct: str, name: str) -> np.ndarray:
    kind = {"person": 0, "auction": 1, "bid": 2}[struct]
    rows = table.filter(pa.compute.equal(table["event_type"], kind))
    values = rows[struct].combine_chunks().field(name)
    if pa.types.is_timestamp(values.type):
        values = values.cast(pa.int64())
    return values.to_numpy(zero_copy_only=False)


def test_proportions_are_exact_in_every_block_of_fifty(table: pa.Table) -> None:
    assert table.schema == NEXMARK_SCHEMA and table.num_rows == N
    kinds = table["event_type"].to_numpy().reshape(-1, 50)
    assert ((kinds == 0).sum(axis=1) == 1).all()
    assert ((kinds == 1).sum(axis=1) == 3).all()
    assert ((kinds == 2).sum(axis=1) == 46).all()
    # exactly the struct of its kind is set
    for code, name in enumerate(("person", "auction", "bid")):
        valid = table[name].is_valid().to_numpy(zero_copy_only=False)
        assert (valid == (table["event_type"].to_numpy() == code)).all()


def test_ids_times_and_ranges(table: pa.Table) -> None:
    persons = _column(table, "person", "id")
    auctions = _column(table, "auction", "id")
    assert (persons == 1000 + np.arange(len(persons))).all()
    assert (auctions == 1000 + np.arange(len(auctions))).all()
    kind = table["event_type"].to_numpy()
    event = np.arange(N)
    # every event's time follows from its number and the rate: 50 µs apart at 20,000/s
    times = {name: _column(table, name, "dateTime") for name in ("person", "auction", "bid")}
    for code, name in enumerate(("person", "auction", "bid")):
        assert (times[name] == START + event[kind == code] * 50 // 1000).all()
    category = _column(table, "auction", "category")
    assert category.min() == 10 and category.max() == 14
    initial, reserve = _column(table, "auction", "initialBid"), _column(table, "auction", "reserve")
    assert initial.min() >= 100 and initial.max() <= 100_000_000 and (reserve > initial).all()
    assert (_column(table, "auction", "expires") > times["auction"]).all()
    # sellers, bidders and bid auctions exist already or are a few "leads" ahead
    people_so_far = np.cumsum(kind == 0)
    auctions_so_far = np.cumsum(kind == 1)
    bids = kind == 2
    bidder = _column(table, "bid", "bidder")
    auction = _column(table, "bid", "auction")
    assert (bidder >= 1000).all() and (bidder < 1000 + people_so_far[bids] + 10).all()
    assert (auction >= 1000).all() and (auction < 1000 + auctions_so_far[bids] + 10).all()
    seller = _column(table, "auction", "seller")
    assert (seller < 1000 + people_so_far[kind == 1] + 10).all()
    price = _column(table, "bid", "price")
    assert price.min() >= 100 and price.max() <= 100_000_000


def test_hot_auctions_bidders_and_channels_skew(table: pa.Table) -> None:
    kind = table["event_type"].to_numpy()
    event = np.arange(N)[kind == 2]
    epoch = event // 50
    last_auction = epoch * 3 + 2
    hot = (last_auction // 100) * 100 + 1000
    share = (_column(table, "bid", "auction") == hot).mean()
    assert 0.45 < share < 0.6  # hotAuctionRatio 2: half the bids, plus chance hits
    hot_bidder = (epoch // 100) * 100 + 1 + 1000
    assert 0.7 < (_column(table, "bid", "bidder") == hot_bidder).mean() < 0.82
    channels = _column(table, "bid", "channel")
    assert 0.45 < np.isin(channels, ["Google", "Facebook", "Baidu", "Apple"]).mean() < 0.55


def test_extra_pads_records_to_nexmarks_average_sizes(table: pa.Table) -> None:
    # Nexmark's own accounting: which fields it counts, plus fixed bytes for the numbers
    counted = {
        "person": (200, 8, ("name", "emailAddress", "creditCard", "city", "state", "extra")),
        "auction": (500, 48, ("itemName", "description", "extra")),
        "bid": (100, 32, ("extra",)),
    }
    for name, (target, fixed, fields) in counted.items():
        kind = {"person": 0, "auction": 1, "bid": 2}[name]
        rows = table.filter(pa.compute.equal(table["event_type"], kind))[name].combine_chunks()
        size = fixed + sum(
            pa.compute.utf8_length(rows.field(f)).to_numpy(zero_copy_only=False).astype(float)
            for f in fields
        )
        assert np.mean(size) == pytest.approx(target, rel=0.05), name
        assert size.min() >= 0.75 * target and size.max() <= 1.25 * target, name


def test_json_lines_match_the_table(table: pa.Table) -> None:
    head = table.slice(0, 500)
    data, offsets = nexmark_lines(head)
    assert len(offsets) == 501 and data.count(b"\n") == 500
    rows = head.to_pylist()
    stamp = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$")
    for line, row in zip(data.splitlines(), rows, strict=True):
        doc: dict[str, Any] = orjson.loads(line)
        assert set(doc) == {"event_type", "person", "auction", "bid"}
        assert doc["event_type"] == row["event_type"]
        name = ("person", "auction", "bid")[row["event_type"]]
        assert [k for k in ("person", "auction", "bid") if doc[k] is not None] == [name]
        for key, value in row[name].items():
            if key in ("dateTime", "expires"):
                assert stamp.match(doc[name][key])
                assert (
                    doc[name][key]
                    == value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
                )
            else:
                assert doc[name][key] == value


def test_same_seed_same_events() -> None:
    config = NexmarkConfig(events=3_000, seed=9, start_ms=START)
    a = pa.concat_tables(nexmark_tables(config))
    assert a.equals(pa.concat_tables(nexmark_tables(config)))
    b = pa.concat_tables(nexmark_tables(NexmarkConfig(events=3_000, seed=10, start_ms=START)))
    assert not a.equals(b)


def test_append_to_the_log_deals_rows_round_robin(project: Any) -> None:
    config = NexmarkConfig(events=10_003, seed=1, start_ms=START, chunk=3_001)
    with project.open_log() as log:
        assert append_nexmark(log, nexmark_tables(config)) == 10_003
        info = log.topic("nexmark")
        counts = [p.records for p in info.partitions]
        assert sum(counts) == 10_003 and max(counts) - min(counts) <= 1
        first = log.read("nexmark", 1, 0, 5)
        # event k is in partition k % P, in order: partition 1 holds events 1, 1 + P, ...
        kinds = first["event_type"].to_pylist()
        expected = [(1 + i * info.num_partitions) % 50 for i in range(5)]
        assert kinds == [0 if e < 1 else 1 if e < 4 else 2 for e in expected]
