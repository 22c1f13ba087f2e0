"""The nexmark connector: the generator's events, deterministic, bounded, resumable, split;
its options checked by name; and a pipeline over it equals the same over the generator's
NDJSON file."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fluvial.errors import SqlError, UnsupportedSqlError
from fluvial.generate.nexmark import NexmarkConfig, nexmark_lines, nexmark_tables
from fluvial.stream.connectors import CONNECTORS, Source, create_source
from fluvial.stream.connectors.nexmark import NexmarkSource
from fluvial.stream.job import plan_text
from fluvial.stream.runtime import run_job

from ..helpers import collecting
from .conftest import table

ROOT = Path(__file__).resolve().parents[3]
NEXMARK_SQL = ROOT / "benchmarks" / "stream" / "nexmark"
BASE_MS = 1_700_000_000_000
COLUMNS = """
  event_type INT,
  person ROW<id BIGINT, name VARCHAR, emailAddress VARCHAR, creditCard VARCHAR,
             city VARCHAR, state VARCHAR, dateTime TIMESTAMP(3), extra VARCHAR>,
  auction ROW<id BIGINT, itemName VARCHAR, description VARCHAR, initialBid BIGINT,
              reserve BIGINT, dateTime TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT,
              category BIGINT, extra VARCHAR>,
  bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
          dateTime TIMESTAMP(3), extra VARCHAR>
"""


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    """The connector registered as the lead registers it in ``CONNECTORS``."""
    had = "nexmark" in CONNECTORS["source"]
    CONNECTORS["source"]["nexmark"] = "fluvial.stream.connectors.nexmark:NexmarkSource"
    yield
    if not had:
        CONNECTORS["source"].pop("nexmark", None)


def source(options: dict[str, Any] | None = None, columns: str = COLUMNS) -> Source:
    """A nexmark source over *columns* (the base time fixed unless *options* set it)."""
    opts = {"fluvial.base-time": str(BASE_MS), **(options or {})}
    with_ = ", ".join(f"'{k}' = '{v}'" for k, v in {"connector": "nexmark", **opts}.items())
    return create_source(table(f"CREATE TABLE nx ({columns}) WITH ({with_})"))


def drain(src: Source, max_rows: int = 65_536, limit: int | None = None) -> dict[str, pa.Table]:
    """Every split's rows (polling until finished, or until *limit* rows)."""
    got: dict[str, list[pa.Table]] = {}
    rows = 0
    while not src.finished() and (limit is None or rows < limit):
        for b in src.poll(max_rows=max_rows):
            got.setdefault(b.split, []).append(b.table)
            rows += b.table.num_rows
    return {s: pa.concat_tables(t) for s, t in got.items()}


def generated(events: int, seed: int = 0, **settings: Any) -> pa.Table:
    """The generator's own output, the reference."""
    config = NexmarkConfig(events=events, seed=seed, rate=10_000, start_ms=BASE_MS, **settings)
    return pa.concat_tables(nexmark_tables(config))


def test_one_split_reads_exactly_what_the_generator_makes() -> None:
    src = source({"events.num": 2500})
    src.open()
    (out,) = drain(src, max_rows=700).values()
    want = generated(2500)
    assert out.num_rows == 2500
    assert out.equals(want.cast(out.schema))
    kinds = out["event_type"].to_numpy()
    rem = np.arange(2500) % 50  # Nexmark's 1 : 3 : 46 by event number
    assert (kinds == np.where(rem < 1, 0, np.where(rem < 4, 1, 2))).all()
    times = pc.coalesce(
        out["person"].combine_chunks().field("dateTime"),
        out["auction"].combine_chunks().field("dateTime"),
        out["bid"].combine_chunks().field("dateTime"),
    )
    ms = times.cast(pa.int64()).to_numpy()
    assert (ms == BASE_MS + np.arange(2500) // 10).all()  # 10,000 events/s of event time


def test_deterministic_for_a_seed_and_base_time() -> None:
    runs = []
    for seed in (3, 3, 4):
        src = source({"events.num": 800, "fluvial.seed": seed})
        src.open()
        runs.append(drain(src)["nexmark-0"])
    assert runs[0].equals(runs[1])
    assert not runs[0].equals(runs[2])


def test_bounded_end_and_unbounded() -> None:
    src = source({"events.num": 130})
    src.open()
    assert not src.finished()
    assert src.poll(max_rows=100)[0].table.num_rows == 100
    assert src.poll(max_rows=100)[0].table.num_rows == 30
    assert src.finished() and src.poll() == []
    assert src.positions() == {"nexmark-0": {"emitted": 130, "base-time": BASE_MS}}

    endless = source()
    endless.open()
    for _ in range(3):
        assert endless.poll(max_rows=50_000)[0].table.num_rows == 50_000
    assert not endless.finished()

    alive = source({"events.num": 10, "keep-alive": "true"})
    alive.open()
    drain(alive, limit=10)
    assert alive.poll() == [] and not alive.finished()


@pytest.mark.parametrize("splits", [1, 3])
def test_resume_from_positions_equals_an_uninterrupted_read(splits: int) -> None:
    options = {"events.num": 5000, "fluvial.splits": splits, "fluvial.seed": 9}
    whole = source(options)
    whole.open()
    expected = drain(whole, max_rows=333)

    first = source(options)
    first.open()
    head = drain(first, max_rows=250, limit=2000)
    saved = json.loads(json.dumps(first.positions()))  # as a checkpoint stores them
    first.close()
    second = source(options)
    second.open(saved)
    tail = drain(second, max_rows=1000)
    assert sorted(expected) == sorted(tail) == [f"nexmark-{i}" for i in range(splits)]
    for split, want in expected.items():
        assert pa.concat_tables([head[split], tail[split]]).equals(want)


def test_restore_keeps_the_wall_clock_base_time() -> None:
    first = create_source(
        table(f"CREATE TABLE nx ({COLUMNS}) WITH ('connector' = 'nexmark', 'events.num' = '300')")
    )
    first.open()
    head = drain(first, max_rows=100, limit=100)["nexmark-0"]
    saved = first.positions()
    base = saved["nexmark-0"]["base-time"]
    assert abs(base - time.time() * 1000) < 60_000
    second = create_source(
        table(f"CREATE TABLE nx ({COLUMNS}) WITH ('connector' = 'nexmark', 'events.num' = '300')")
    )
    second.open(saved)
    rest = drain(second)["nexmark-0"]
    config = NexmarkConfig(events=300, rate=10_000, start_ms=base)
    assert pa.concat_tables([head, rest]).equals(
        pa.concat_tables(nexmark_tables(config)).cast(rest.schema)
    )


def test_splits_deal_events_round_robin() -> None:
    src = source({"events.num": 1000, "fluvial.splits": 4})
    src.open()
    assert src.splits() == ["nexmark-0", "nexmark-1", "nexmark-2", "nexmark-3"]
    out = drain(src, max_rows=256)
    want = generated(1000)
    for i in range(4):
        expect = want.take(pa.array(np.arange(i, 1000, 4)))
        assert out[f"nexmark-{i}"].equals(expect.cast(out[f"nexmark-{i}"].schema))


def test_declared_subset_and_sizes_and_ratios() -> None:
    src = source(
        {"events.num": 5000, "bid.avg-size": "1kb", "bid.hot-ratio.auctions": "1"},
        "bid ROW<price BIGINT, auction BIGINT, extra VARCHAR>, event_type INT",
    )
    src.open()
    (out,) = drain(src).values()
    assert out.column_names == ["bid", "event_type"]
    assert out.schema.field("bid").type.names == ["price", "auction", "extra"]
    want = generated(5000, avg_bid_bytes=1024, hot_auction_ratio=1)
    assert (
        out["bid"]
        .combine_chunks()
        .field("price")
        .equals(want["bid"].combine_chunks().field("price"))
    )
    bids = out.filter(pc.equal(out["event_type"], 2))["bid"].combine_chunks()
    mean = pc.mean(pc.utf8_length(bids.field("extra"))).as_py()
    assert 900 < mean < 1100  # padded to about 1 KiB (minus the 32 bytes of fields)


def test_rate_limited_emits_no_faster_than_the_rate() -> None:
    src = source({"rate.limited": "true", "first-event.rate": 2000})
    started = time.monotonic()  # before open(): the pace counts from there
    src.open()
    rows = 0
    while time.monotonic() - started < 0.3:
        rows += sum(b.table.num_rows for b in src.poll(timeout=0.05))
    elapsed = time.monotonic() - started
    assert 0 < rows <= 2000 * elapsed + 1


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"event.num": "5"}, SqlError, "unknown option 'event.num'.*did you mean 'events.num'"),
        ({"bid.proportion": "50"}, UnsupportedSqlError, "'bid.proportion': only '46'"),
        ({"person.proportion": "2"}, UnsupportedSqlError, "'person.proportion'"),
        ({"next-event.rate": "500"}, UnsupportedSqlError, "'next-event.rate'.*expected 10000"),
        ({"stop-at": "100"}, UnsupportedSqlError, "'stop-at'"),
        ({"max-emit-speed": "false"}, UnsupportedSqlError, "'max-emit-speed'"),
        ({"first-event.rate": "fast"}, SqlError, "'first-event.rate': expected an integer"),
        ({"first-event.rate": "0"}, SqlError, "'first-event.rate': expected 1 or more"),
        ({"events.num": "-1"}, SqlError, "'events.num': expected 0 or more"),
        ({"bid.avg-size": "lots"}, SqlError, "'bid.avg-size': expected a size"),
        ({"rate.shape": "saw"}, SqlError, "'rate.shape': expected one of square, sine"),
        ({"rate.period": "soon"}, SqlError, "'rate.period': expected a duration"),
        ({"rate.limited": "yes"}, SqlError, "'rate.limited': expected 'true' or 'false'"),
        ({"fluvial.base-time": "noon"}, SqlError, "'fluvial.base-time': expected epoch"),
        ({"fluvial.splits": "0"}, SqlError, "'fluvial.splits': expected 1 or more"),
    ],
)
def test_option_errors_name_the_option(
    options: dict[str, str], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        source(options)
    assert "table 'nx'" in str(info.value)
    if error is SqlError:
        assert not isinstance(info.value, UnsupportedSqlError)


def test_accepted_flink_options_and_base_time_formats() -> None:
    src = source(
        {
            "events.num": "60",
            "first-event.rate": "1000",
            "next-event.rate": "1000",
            "rate.shape": "SINE",
            "rate.period": "10 min",
            "person.proportion": "1",
            "auction.proportion": "3",
            "bid.proportion": "46",
            "stop-at": "-1",
            "max-emit-speed": "true",
            "fluvial.base-time": "2023-11-14 22:13:20",
        }
    )
    assert isinstance(src, NexmarkSource) and src.base_ms == BASE_MS
    src.open()
    (out,) = drain(src).values()
    person = out["person"].combine_chunks().field("dateTime")
    assert person[0].as_py().isoformat() == "2023-11-14T22:13:20"


def test_a_column_the_events_do_not_have_is_an_error() -> None:
    with pytest.raises(SqlError, match="column 'price' is not in the Nexmark events"):
        source(columns="event_type INT, price BIGINT")


def test_a_checkpoint_of_other_splits_is_refused() -> None:
    src = source({"events.num": 100, "fluvial.splits": 2})
    with pytest.raises(SqlError, match=r"keep 'fluvial\.splits' as it was"):
        src.open({"nexmark-0": {"emitted": 10, "base-time": BASE_MS}})


# -- a pipeline over the connector equals the same over the generator's file ----------

FILES_WITH = re.compile(r"WITH \(\s*'connector' = 'filesystem'.*?\);", re.S)
QUERY = """
CREATE TABLE bids_out (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR,
                       dateTime TIMESTAMP(3)) WITH ('connector' = 'collect');
CREATE TABLE per_auction (auction BIGINT, n BIGINT, top BIGINT, window_end TIMESTAMP(3))
  WITH ('connector' = 'collect');
INSERT INTO bids_out SELECT auction, bidder, price, channel, dateTime FROM bid
  WHERE MOD(bidder, 3) <> 0;
INSERT INTO per_auction
SELECT auction, COUNT(*), MAX(price), window_end
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND))
GROUP BY auction, window_start, window_end;
"""


def _run(text: str) -> dict[str, list[tuple[Any, ...]]]:
    with collecting() as committed:
        run_job(plan_text(text, source="nexmark.sql"), until_idle=True, checkpoint_dir=None)
        out = {}
        for name, tables in committed.items():
            rows = [tuple(r.values()) for t in tables for r in t.to_pylist()]
            out[name] = sorted(rows, key=repr)
        return out


def test_pipeline_over_the_connector_equals_the_same_over_the_file(tmp_path: Path) -> None:
    events, seed = 20_000, 5
    config = NexmarkConfig(events=events, seed=seed, rate=1_000, start_ms=BASE_MS)
    with (tmp_path / "events.json").open("wb") as f:
        for t in nexmark_tables(config):
            f.write(nexmark_lines(t)[0])
    source_sql = (NEXMARK_SQL / "source.sql").read_text(encoding="utf-8")
    over_file = source_sql.replace("${EVENTS}", str(tmp_path)) + QUERY
    connector = (
        f"WITH ('connector' = 'nexmark', 'events.num' = '{events}', "
        f"'first-event.rate' = '1000', 'fluvial.seed' = '{seed}', "
        f"'fluvial.base-time' = '{BASE_MS}', 'fluvial.splits' = '2');"
    )
    over_nexmark, found = FILES_WITH.subn(connector, source_sql)
    assert found == 1
    want = _run(over_file)
    got = _run(over_nexmark + QUERY)
    assert len(want["bids_out"]) > 10_000 and len(want["per_auction"]) > 500
    assert got == want
