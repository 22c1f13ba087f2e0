"""What the equivalent AWS deployment costs a month, service by service.

The equivalent of a Fluvial deployment on AWS is the reference clickstream stack: events
are put into a Kinesis data stream (our event log), Firehose delivers them to S3 (our lake
archiver), Managed Service for Apache Flink runs the stream pipelines, DynamoDB holds their
results (our operational store) and Athena answers queries over the lake. :func:`estimate`
prices a :class:`Workload` with the dated list prices of :mod:`fluvial.aws.prices`; every
formula is a small pure function below, with its units.

Four optimizations are modelled, each can be switched off to see what it saves
(:func:`savings`):

- **record aggregation** (what the Kinesis Producer Library does): several events share
  one Kinesis record of up to 25 KiB, so one PUT payload unit carries many events instead
  of one, the 1,000 records/s shard limit stops mattering, and Firehose's 5 KiB rounding
  applies to the aggregate instead of every event;
- **compaction**: the small files written every commit are rewritten once a day into
  files of ~128 MiB, so a query opens a few files instead of thousands (S3 GET requests);
- **partition pruning**: a query over the last ``query_days`` reads those days' partitions
  instead of the whole retained table (Athena bytes scanned);
- **Parquet compression**: events are stored as compressed Parquet instead of JSON, which
  divides S3 storage and Athena bytes scanned by the compression ratio.

A month is 730 hours (2,628,000 s) and a GB is 2**30 bytes, as AWS bills.

>>> b = estimate(Workload(events_per_second=1000, event_bytes=1024, streams=1))
>>> b.service("kinesis").line("shard-hours").quantity   # one shard, all month
730
>>> round(b.service("kinesis").line("shard-hours").usd, 2)
10.95
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from fluvial.aws.prices import PRICES, PRICES_AS_OF, PRICES_REGION, Prices
from fluvial.errors import UsageError

__all__ = [
    "ALL_OPTIMIZATIONS",
    "NO_OPTIMIZATIONS",
    "CostBreakdown",
    "CostLine",
    "Optimizations",
    "ServiceCost",
    "Workload",
    "estimate",
    "kinesis_shards",
    "savings",
]

HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
DAYS_PER_MONTH = HOURS_PER_MONTH / 24
GB = 2**30
TB = 2**40
MIB = 2**20

#: one provisioned shard takes this many records per second …
SHARD_RECORDS_PER_SECOND = 1000
#: … and this many bytes per second, whichever limit comes first
SHARD_BYTES_PER_SECOND = MIB
#: a PUT payload unit: each record is billed in chunks of this size
PUT_PAYLOAD_UNIT_BYTES = 25 * 1024
#: Firehose rounds every record up to a multiple of this
FIREHOSE_RECORD_ROUNDING_BYTES = 5 * 1024
#: Athena bills at least this much per query
ATHENA_MIN_BYTES_PER_QUERY = 10 * MIB
#: Iceberg objects besides data files written per commit: manifest, manifest list, metadata
METADATA_OBJECTS_PER_COMMIT = 3
#: GET requests a query makes per Parquet file it reads (footer, then the column chunks)
GETS_PER_FILE = 2
#: running application storage that comes with each KPU
FLINK_STORAGE_GB_PER_KPU = 50
DYNAMODB_WRITE_UNIT_BYTES = 1024
DYNAMODB_READ_UNIT_BYTES = 4096


def kinesis_shards(records_per_second: float, bytes_per_second: float) -> int:
    """Provisioned shards a stream needs: ceil(max(records/s ÷ 1,000, bytes/s ÷ 1 MiB)), at least 1.

    >>> kinesis_shards(1000, 1000 * 1024)   # 1,000 records/s of 1 KiB: the record limit
    1
    >>> kinesis_shards(1500, 1500 * 100)
    2
    >>> kinesis_shards(100, 100 * 50_000)   # 4.8 MiB/s: the byte limit
    5
    """
    need = max(
        records_per_second / SHARD_RECORDS_PER_SECOND, bytes_per_second / SHARD_BYTES_PER_SECOND
    )
    return max(1, math.ceil(need - 1e-9))


@dataclass(frozen=True)
class Workload:
    """What the deployment does, in the units the prices are in.

    ``events_per_second`` is the mean rate (what is billed); ``peak_events_per_second``
    sizes the provisioned shards (default: the mean). ``retention_days`` is how long the
    lake keeps the events (S3 storage, steady state); ``query_days`` how many days of data
    a typical query asks for. ``streams`` counts every Kinesis stream (the events stream is
    sized by rate, each other one has a single shard); ``flink_applications`` the stream
    pipelines, each reading every event; ``events_per_kpu`` the throughput one KPU sustains
    (an assumption: measure your pipelines). ``store_*`` describe the writes and reads of
    the DynamoDB tables the pipelines fill.
    """

    events_per_second: float
    event_bytes: int = 1024
    retention_days: float = 30.0
    queries_per_day: float = 100.0
    query_days: float = 1.0
    peak_events_per_second: float | None = None
    streams: int = 2
    stream_retention_hours: float = 24.0
    commit_seconds: float = 60.0
    flink_applications: int = 1
    events_per_kpu: float = 5000.0
    store_writes_per_second: float = 0.0
    store_reads_per_second: float = 0.0
    store_item_bytes: int = 256
    store_gb: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "events per second": self.events_per_second >= 0,
            "event bytes": self.event_bytes > 0,
            "retention days": self.retention_days > 0,
            "queries per day": self.queries_per_day >= 0,
            "query days": self.query_days > 0,
            "streams": self.streams >= 1,
            "stream retention hours": 24 <= self.stream_retention_hours <= 8760,
            "commit seconds": self.commit_seconds > 0,
            "flink applications": self.flink_applications >= 0,
            "events per KPU": self.events_per_kpu > 0,
            "store writes per second": self.store_writes_per_second >= 0,
            "store reads per second": self.store_reads_per_second >= 0,
            "store item bytes": self.store_item_bytes > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise UsageError(f"cost model: invalid {', '.join(bad)} in {self}")

    @property
    def peak(self) -> float:
        return (
            self.events_per_second
            if self.peak_events_per_second is None
            else self.peak_events_per_second
        )


@dataclass(frozen=True)
class Optimizations:
    """Which optimizations the deployment uses (see the module docstring)."""

    aggregate_records: bool = True
    compaction: bool = True
    compacted_file_bytes: int = 128 * MIB
    partition_pruning: bool = True
    parquet: bool = True
    #: JSON bytes ÷ zstd Parquet bytes of the same events
    parquet_compression_ratio: float = 9.0


ALL_OPTIMIZATIONS = Optimizations()
NO_OPTIMIZATIONS = Optimizations(
    aggregate_records=False, compaction=False, partition_pruning=False, parquet=False
)


@dataclass(frozen=True)
class CostLine:
    """One billed quantity: *quantity* of *unit* a month at *unit_usd* each."""

    item: str
    quantity: float
    unit: str
    unit_usd: float

    @property
    def usd(self) -> float:
        return self.quantity * self.unit_usd


@dataclass(frozen=True)
class ServiceCost:
    """One service's lines and their sum."""

    service: str
    lines: tuple[CostLine, ...]

    @property
    def usd(self) -> float:
        return sum(line.usd for line in self.lines)

    def line(self, item: str) -> CostLine:
        return next(line for line in self.lines if line.item == item)


@dataclass(frozen=True)
class CostBreakdown:
    """The monthly cost of a workload, by service."""

    workload: Workload
    optimizations: Optimizations
    services: tuple[ServiceCost, ...]
    prices_as_of: str = PRICES_AS_OF
    region: str = PRICES_REGION
    notes: tuple[str, ...] = field(default=())

    @property
    def total(self) -> float:
        return sum(s.usd for s in self.services)

    def service(self, name: str) -> ServiceCost:
        return next(s for s in self.services if s.service == name)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``: inputs, every line with its cost, totals."""
        return {
            "region": self.region,
            "prices_as_of": self.prices_as_of,
            "workload": asdict(self.workload),
            "optimizations": asdict(self.optimizations),
            "services": [
                {
                    "service": s.service,
                    "usd": round(s.usd, 2),
                    "lines": [{**asdict(line), "usd": round(line.usd, 2)} for line in s.lines],
                }
                for s in self.services
            ],
            "total_usd": round(self.total, 2),
        }


# ------------------------------------------------------------------ the formulas


def events_per_record(event_bytes: int, opt: Optimizations) -> int:
    """Events per Kinesis record: floor(25 KiB ÷ event bytes) aggregated, else 1.

    >>> events_per_record(1024, ALL_OPTIMIZATIONS), events_per_record(1024, NO_OPTIMIZATIONS)
    (25, 1)
    """
    if not opt.aggregate_records:
        return 1
    return max(1, PUT_PAYLOAD_UNIT_BYTES // event_bytes)


def _kinesis(w: Workload, opt: Optimizations, p: Prices) -> ServiceCost:
    k = events_per_record(w.event_bytes, opt)
    # shards: the events stream by its peak (records/s and bytes/s), one for each other stream
    shards = kinesis_shards(w.peak / k, w.peak * w.event_bytes) + (w.streams - 1)
    # PUT payload units/month = records/s × s/month × ceil(record bytes ÷ 25 KiB)
    records = w.events_per_second / k * SECONDS_PER_MONTH
    units = records * math.ceil(k * w.event_bytes / PUT_PAYLOAD_UNIT_BYTES)
    lines = [
        CostLine("shard-hours", shards * HOURS_PER_MONTH, "shard-hour", p.kinesis_shard_hour),
        CostLine(
            "PUT payload units",
            units / 1e6,
            "million units",
            p.kinesis_million_put_payload_units,
        ),
    ]
    if w.stream_retention_hours > 24:
        lines.append(
            CostLine(
                "extended retention",
                shards * HOURS_PER_MONTH,
                "shard-hour",
                p.kinesis_extended_retention_shard_hour,
            )
        )
    if w.stream_retention_hours > 168:
        # bytes kept beyond 7 days: bytes/s × the seconds beyond 168 h, in GB, all month
        kept = w.events_per_second * w.event_bytes * (w.stream_retention_hours - 168) * 3600
        lines.append(
            CostLine(
                "long-term retention",
                kept / GB,
                "GB-month",
                p.kinesis_long_term_retention_gb_month,
            )
        )
    return ServiceCost("kinesis", tuple(lines))


def _firehose(w: Workload, opt: Optimizations, p: Prices) -> ServiceCost:
    k = events_per_record(w.event_bytes, opt)
    # billed GB = records/month × (record bytes rounded up to 5 KiB) ÷ 2**30
    rounded = (
        math.ceil(k * w.event_bytes / FIREHOSE_RECORD_ROUNDING_BYTES)
        * FIREHOSE_RECORD_ROUNDING_BYTES
    )
    gb = w.events_per_second / k * SECONDS_PER_MONTH * rounded / GB
    lines = [CostLine("ingested", gb, "GB", p.firehose_ingested_gb)]
    if opt.parquet:
        lines.append(CostLine("format conversion", gb, "GB", p.firehose_format_conversion_gb))
    return ServiceCost("firehose", tuple(lines))


def stored_bytes_per_day(w: Workload, opt: Optimizations) -> float:
    """Bytes the lake gains a day: events/s × bytes × 86,400 ÷ the Parquet ratio (1 for JSON)."""
    ratio = opt.parquet_compression_ratio if opt.parquet else 1.0
    return w.events_per_second * w.event_bytes * 86400 / ratio


def files_per_day(w: Workload, opt: Optimizations) -> float:
    """Data files of one day: one per commit, or after compaction ceil(day's bytes ÷ target)."""
    if opt.compaction:
        return max(1.0, math.ceil(stored_bytes_per_day(w, opt) / opt.compacted_file_bytes))
    return 86400 / w.commit_seconds


def days_scanned(w: Workload, opt: Optimizations) -> float:
    """Days of data one query reads: ``query_days`` with pruning, else the whole retention."""
    return min(w.query_days, w.retention_days) if opt.partition_pruning else w.retention_days


def _s3(w: Workload, opt: Optimizations, p: Prices) -> ServiceCost:
    per_day = stored_bytes_per_day(w, opt)
    # steady state: retention_days of data are kept
    stored_gb = per_day * w.retention_days / GB
    # every commit writes one data file and the Iceberg metadata objects
    commits = SECONDS_PER_MONTH / w.commit_seconds
    puts = commits * (1 + METADATA_OBJECTS_PER_COMMIT)
    gets = 0.0
    if opt.compaction:
        # once a day: read the day's small files, write the compacted ones and a commit
        small = 86400 / w.commit_seconds
        puts += DAYS_PER_MONTH * (files_per_day(w, opt) + METADATA_OBJECTS_PER_COMMIT)
        gets += DAYS_PER_MONTH * small * GETS_PER_FILE
    # queries: every file of the days scanned, a few GETs each
    gets += (
        w.queries_per_day
        * DAYS_PER_MONTH
        * files_per_day(w, opt)
        * days_scanned(w, opt)
        * GETS_PER_FILE
    )
    return ServiceCost(
        "s3",
        (
            CostLine("storage", stored_gb, "GB-month", p.s3_storage_gb_month),
            CostLine("PUT requests", puts / 1000, "thousand requests", p.s3_thousand_put_requests),
            CostLine("GET requests", gets / 1000, "thousand requests", p.s3_thousand_get_requests),
        ),
    )


def _athena(w: Workload, opt: Optimizations, p: Prices) -> ServiceCost:
    # bytes one query scans: the stored bytes of the days it reads, at least 10 MiB
    per_query = max(ATHENA_MIN_BYTES_PER_QUERY, stored_bytes_per_day(w, opt) * days_scanned(w, opt))
    tb = w.queries_per_day * DAYS_PER_MONTH * per_query / TB
    return ServiceCost("athena", (CostLine("scanned", tb, "TB", p.athena_tb_scanned),))


def _flink(w: Workload, p: Prices) -> ServiceCost:
    # every application reads every event: ceil(rate ÷ events per KPU) KPUs, +1 orchestration
    kpus = max(1, math.ceil(w.events_per_second / w.events_per_kpu)) if w.flink_applications else 0
    apps = w.flink_applications
    return ServiceCost(
        "flink",
        (
            CostLine(
                "KPU-hours", apps * (kpus + 1) * HOURS_PER_MONTH, "KPU-hour", p.flink_kpu_hour
            ),
            CostLine(
                "running storage",
                apps * kpus * FLINK_STORAGE_GB_PER_KPU,
                "GB-month",
                p.flink_running_storage_gb_month,
            ),
        ),
    )


def _dynamodb(w: Workload, p: Prices) -> ServiceCost:
    # on demand: writes/s × s/month × ceil(item ÷ 1 KiB) WRU; reads × ceil(item ÷ 4 KiB) RRU
    wru = (
        w.store_writes_per_second
        * SECONDS_PER_MONTH
        * math.ceil(w.store_item_bytes / DYNAMODB_WRITE_UNIT_BYTES)
    )
    rru = (
        w.store_reads_per_second
        * SECONDS_PER_MONTH
        * math.ceil(w.store_item_bytes / DYNAMODB_READ_UNIT_BYTES)
    )
    return ServiceCost(
        "dynamodb",
        (
            CostLine(
                "write request units",
                wru / 1e6,
                "million WRU",
                p.dynamodb_million_write_request_units,
            ),
            CostLine(
                "read request units",
                rru / 1e6,
                "million RRU",
                p.dynamodb_million_read_request_units,
            ),
            CostLine("storage", w.store_gb, "GB-month", p.dynamodb_storage_gb_month),
        ),
    )


def estimate(
    workload: Workload, optimizations: Optimizations = ALL_OPTIMIZATIONS, prices: Prices = PRICES
) -> CostBreakdown:
    """The monthly cost of *workload* on AWS, by service, with *optimizations* applied."""
    w, opt = workload, optimizations
    if opt.parquet and opt.parquet_compression_ratio < 1:
        raise UsageError(
            f"cost model: a Parquet compression ratio is at least 1, found {opt.parquet_compression_ratio}"
        )
    services = (
        _kinesis(w, opt, prices),
        _firehose(w, opt, prices),
        _s3(w, opt, prices),
        _athena(w, opt, prices),
        _flink(w, prices),
        _dynamodb(w, prices),
    )
    return CostBreakdown(w, opt, services)


#: the optimizations :func:`savings` switches off one at a time
_SWITCHES = {
    "record aggregation": "aggregate_records",
    "compaction": "compaction",
    "partition pruning": "partition_pruning",
    "Parquet compression": "parquet",
}


def savings(
    workload: Workload, optimizations: Optimizations = ALL_OPTIMIZATIONS, prices: Prices = PRICES
) -> dict[str, float]:
    """What each optimization saves a month (USD): the total without it minus the total with all.

    >>> s = savings(Workload(events_per_second=1000))
    >>> sorted(s)
    ['Parquet compression', 'compaction', 'partition pruning', 'record aggregation']
    >>> all(v >= 0 for v in s.values())
    True
    """
    base = estimate(workload, optimizations, prices).total
    return {
        name: estimate(workload, replace(optimizations, **{flag: False}), prices).total - base
        for name, flag in _SWITCHES.items()
    }
