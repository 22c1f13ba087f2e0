"""The cost model against examples computed by hand (the arithmetic is written out here,
not taken from the module: 730 h a month, 2**30 bytes a GB, the list prices as numbers)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from fluvial.aws.cost import (
    ALL_OPTIMIZATIONS,
    NO_OPTIMIZATIONS,
    Optimizations,
    Workload,
    estimate,
    kinesis_shards,
    savings,
)
from fluvial.errors import UsageError

MONTH_S = 730 * 3600  # 2,628,000 seconds
GB = 1024**3
TB = 1024**4
DAYS = 730 / 24  # 30.4166… days a month


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-9)


@pytest.mark.parametrize(
    ("records", "bytes_", "shards"),
    [
        (1000, 1000 * 1024, 1),  # 1,000 × 1 KiB: 1,000 records/s and 0.98 MiB/s
        (1001, 1001 * 100, 2),  # one record over the limit
        (10_000, 10_000 * 1024, 10),  # 10 × 1,000 records/s; 9.77 MiB/s
        (500, 500 * 4096, 2),  # 500 records/s but 1.95 MiB/s
        (0, 0, 1),
    ],
)
def test_shards(records: int, bytes_: int, shards: int) -> None:
    assert kinesis_shards(records, bytes_) == shards


def test_one_thousand_events_of_one_kib_without_optimizations() -> None:
    w = Workload(
        events_per_second=1000,
        event_bytes=1024,
        retention_days=30,
        queries_per_day=100,
        query_days=1,
        streams=2,
        stream_retention_hours=24,
        commit_seconds=60,
        flink_applications=2,
        events_per_kpu=5000,
        store_writes_per_second=50,
        store_reads_per_second=20,
        store_item_bytes=1500,
        store_gb=3,
    )
    b = estimate(w, NO_OPTIMIZATIONS)
    kinesis = b.service("kinesis")
    # events stream: 1,000 records/s -> 1 shard; the failed stream: 1 shard
    assert kinesis.line("shard-hours").quantity == 2 * 730
    assert kinesis.line("shard-hours").usd == approx(1460 * 0.015)  # $21.90
    # every 1 KiB event is one PUT payload unit (25 KiB chunks)
    assert kinesis.line("PUT payload units").quantity == approx(1000 * MONTH_S / 1e6)  # 2,628 M
    assert kinesis.line("PUT payload units").usd == approx(2628 * 0.014)  # $36.79
    assert [line.item for line in kinesis.lines] == ["shard-hours", "PUT payload units"]
    # Firehose bills each 1 KiB record as 5 KiB; no Parquet conversion
    firehose = b.service("firehose")
    assert firehose.line("ingested").quantity == approx(1000 * MONTH_S * 5120 / GB)  # 12,531 GB
    assert firehose.usd == approx(1000 * MONTH_S * 5120 / GB * 0.029)
    # S3: 30 days of JSON: 1,000 × 1,024 × 86,400 × 30 bytes
    s3 = b.service("s3")
    assert s3.line("storage").quantity == approx(1000 * 1024 * 86400 * 30 / GB)  # 2,471.9 GB
    # a commit a minute: 1 data file + 3 metadata objects
    assert s3.line("PUT requests").quantity == approx(MONTH_S / 60 * 4 / 1000)  # 175.2 thousand
    # each query opens every one-minute file of the 30 days, 2 GETs each
    gets = 100 * DAYS * (86400 / 60) * 30 * 2
    assert s3.line("GET requests").quantity == approx(gets / 1000)
    # Athena scans the whole 30 days of JSON on every query
    scanned = 100 * DAYS * 1000 * 1024 * 86400 * 30 / TB
    assert b.service("athena").line("scanned").quantity == approx(scanned)  # 7,242 TB
    assert b.service("athena").usd == approx(scanned * 5)
    # Flink: 1,000/5,000 events per KPU -> 1 KPU, plus 1 orchestration KPU, for 2 apps
    flink = b.service("flink")
    assert flink.line("KPU-hours").quantity == 2 * 2 * 730
    assert flink.line("running storage").quantity == 2 * 1 * 50
    assert flink.usd == approx(2920 * 0.11 + 100 * 0.10)
    # DynamoDB: a 1,500 B item is 2 write units and 1 read unit
    dynamodb = b.service("dynamodb")
    assert dynamodb.line("write request units").quantity == approx(50 * MONTH_S * 2 / 1e6)
    assert dynamodb.line("read request units").quantity == approx(20 * MONTH_S * 1 / 1e6)
    assert dynamodb.usd == approx(262.8 * 0.625 + 52.56 * 0.125 + 3 * 0.25)
    assert b.total == approx(sum(s.usd for s in b.services))


def test_one_thousand_events_of_one_kib_with_every_optimization() -> None:
    w = Workload(
        events_per_second=1000,
        event_bytes=1024,
        retention_days=30,
        queries_per_day=100,
        query_days=1,
        streams=2,
        stream_retention_hours=24,
        commit_seconds=60,
        flink_applications=0,
    )
    opt = Optimizations(parquet_compression_ratio=8.0, compacted_file_bytes=128 * 1024**2)
    b = estimate(w, opt)
    # 25 events of 1 KiB fill one 25 KiB record: 40 records/s, one payload unit each
    assert b.service("kinesis").line("PUT payload units").quantity == approx(40 * MONTH_S / 1e6)
    # Firehose: a 25,600 B record is a multiple of 5 KiB already; converted to Parquet
    gb = 40 * MONTH_S * 25600 / GB  # 2,506.3 GB
    assert b.service("firehose").line("ingested").quantity == approx(gb)
    assert b.service("firehose").usd == approx(gb * (0.029 + 0.018))
    # Parquet: a day is 1,000 × 1,024 × 86,400 / 8 = 11,059,200,000 B
    day = 1000 * 1024 * 86400 / 8
    assert b.service("s3").line("storage").quantity == approx(day * 30 / GB)
    # compaction: a day in ceil(11,059,200,000 / 134,217,728) = 83 files
    files = math.ceil(day / 134217728)
    assert files == 83
    puts = MONTH_S / 60 * 4 + DAYS * (files + 3)
    assert b.service("s3").line("PUT requests").quantity == approx(puts / 1000)
    gets = DAYS * 1440 * 2 + 100 * DAYS * files * 1 * 2  # compaction reads + queries
    assert b.service("s3").line("GET requests").quantity == approx(gets / 1000)
    # pruning: a query reads one day of Parquet
    assert b.service("athena").line("scanned").quantity == approx(100 * DAYS * day / TB)
    assert b.service("flink").usd == 0


def test_athena_bills_ten_mib_at_least_and_small_events_aggregate_further() -> None:
    w = Workload(events_per_second=1, event_bytes=100, retention_days=7, queries_per_day=10)
    b = estimate(w, ALL_OPTIMIZATIONS)
    # a day of 1 event/s is 86,400 × 100 / 8 = 1,080,000 B < 10 MiB: billed 10 MiB
    assert b.service("athena").line("scanned").quantity == approx(10 * DAYS * 10 * 1024**2 / TB)
    # 256 events of 100 B share a record (25,600 B): 1/256 records per second
    assert b.service("kinesis").line("PUT payload units").quantity == approx(MONTH_S / 256 / 1e6)


def test_retention_beyond_a_day_and_a_week() -> None:
    w = Workload(events_per_second=1000, event_bytes=1024, streams=1, stream_retention_hours=240)
    k = estimate(w, NO_OPTIMIZATIONS).service("kinesis")
    assert k.line("extended retention").usd == approx(730 * 0.02)
    # 72 hours beyond 7 days of 1,000 × 1,024 B/s, kept all month
    assert k.line("long-term retention").quantity == approx(1000 * 1024 * 72 * 3600 / GB)


def test_peak_sizes_shards_and_mean_sizes_the_bill() -> None:
    w = Workload(events_per_second=1000, peak_events_per_second=5000, streams=1)
    b = estimate(w, NO_OPTIMIZATIONS)
    assert b.service("kinesis").line("shard-hours").quantity == 5 * 730
    assert b.service("kinesis").line("PUT payload units").quantity == approx(1000 * MONTH_S / 1e6)


def test_savings_are_the_differences_of_totals() -> None:
    w = Workload(events_per_second=1000, retention_days=30)
    saved = savings(w)
    base = estimate(w).total
    assert saved["partition pruning"] == approx(
        estimate(w, replace(ALL_OPTIMIZATIONS, partition_pruning=False)).total - base
    )
    # pruning 1 day of 30 cuts Athena's scan and the GETs of queries by 30×
    unpruned = estimate(w, replace(ALL_OPTIMIZATIONS, partition_pruning=False))
    pruned = estimate(w)
    assert pruned.service("athena").usd == approx(unpruned.service("athena").usd / 30)
    files = math.ceil(1000 * 1024 * 86400 / 9 / (128 * 1024**2))  # a compacted day (ratio 9)
    assert files == 74
    query_gets = 100 * DAYS * files * 2 / 1000  # thousand GETs a month for one day a query
    assert unpruned.service("s3").line("GET requests").quantity - pruned.service("s3").line(
        "GET requests"
    ).quantity == approx(query_gets * 29)
    assert saved["partition pruning"] == approx(
        unpruned.service("athena").usd * 29 / 30 + query_gets * 29 * 0.0004
    )
    # aggregation saves the PUT units (25× fewer) and Firehose's 5 KiB rounding (5× fewer GB)
    no_agg = estimate(w, replace(ALL_OPTIMIZATIONS, aggregate_records=False))
    with_agg = estimate(w)
    assert no_agg.service("firehose").usd == approx(5 * with_agg.service("firehose").usd)
    assert no_agg.service("kinesis").line("PUT payload units").usd == approx(
        25 * with_agg.service("kinesis").line("PUT payload units").usd
    )


def test_bad_workloads_are_refused() -> None:
    with pytest.raises(UsageError, match="retention days"):
        Workload(events_per_second=1, retention_days=0)
    with pytest.raises(UsageError, match="event bytes"):
        Workload(events_per_second=1, event_bytes=0)
    with pytest.raises(UsageError, match="compression ratio"):
        estimate(Workload(events_per_second=1), Optimizations(parquet_compression_ratio=0.5))
