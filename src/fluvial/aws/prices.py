"""The AWS list prices the cost model uses: one dated table, us-east-1, in US dollars.

These are public on-demand list prices (no free tier, no savings plans, no taxes) as
published on the services' pricing pages named beside each group below, in the form they
had in January 2025 (DynamoDB's on-demand rates after the 50 % reduction of November 2024).
Prices change: check the pages before relying on a figure, and update the table and
:data:`PRICES_AS_OF` together.

Units follow AWS's billing: a "GB" is 2**30 bytes, a month is 730 hours.

>>> PRICES.kinesis_shard_hour
0.015
>>> PRICES_AS_OF, PRICES_REGION
('2025-01', 'us-east-1')
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRICES", "PRICES_AS_OF", "PRICES_REGION", "Prices"]

#: when the table was read from the pricing pages (year-month)
PRICES_AS_OF = "2025-01"
#: the region the prices are for
PRICES_REGION = "us-east-1"


@dataclass(frozen=True)
class Prices:
    """List prices in USD; each field's name says its unit."""

    # Amazon Kinesis Data Streams, provisioned mode
    # https://aws.amazon.com/kinesis/data-streams/pricing/
    kinesis_shard_hour: float
    kinesis_million_put_payload_units: float  # one unit: up to 25 KB of one record
    kinesis_extended_retention_shard_hour: float  # retention beyond 24 h, up to 7 days
    kinesis_long_term_retention_gb_month: float  # retention beyond 7 days
    # Amazon Data Firehose, Kinesis Data Streams as the source
    # https://aws.amazon.com/firehose/pricing/
    firehose_ingested_gb: float  # first 500 TB a month; records rounded up to 5 KB
    firehose_format_conversion_gb: float  # JSON -> Parquet, same 5 KB rounding
    # Amazon S3 Standard  https://aws.amazon.com/s3/pricing/
    s3_storage_gb_month: float  # first 50 TB a month
    s3_thousand_put_requests: float  # PUT, COPY, POST, LIST
    s3_thousand_get_requests: float  # GET, SELECT and all other requests
    # Amazon Athena, SQL queries  https://aws.amazon.com/athena/pricing/
    athena_tb_scanned: float  # rounded up to 10 MB per query
    # Amazon Managed Service for Apache Flink  https://aws.amazon.com/managed-service-apache-flink/pricing/
    flink_kpu_hour: float  # plus one orchestration KPU per application
    flink_running_storage_gb_month: float  # 50 GB per KPU
    # Amazon DynamoDB, on-demand capacity  https://aws.amazon.com/dynamodb/pricing/on-demand/
    dynamodb_million_write_request_units: float  # one unit: a write of up to 1 KB
    dynamodb_million_read_request_units: float  # one unit: a strong read of up to 4 KB
    dynamodb_storage_gb_month: float  # beyond the first 25 GB


PRICES = Prices(
    kinesis_shard_hour=0.015,
    kinesis_million_put_payload_units=0.014,
    kinesis_extended_retention_shard_hour=0.020,
    kinesis_long_term_retention_gb_month=0.023,
    firehose_ingested_gb=0.029,
    firehose_format_conversion_gb=0.018,
    s3_storage_gb_month=0.023,
    s3_thousand_put_requests=0.005,
    s3_thousand_get_requests=0.0004,
    athena_tb_scanned=5.00,
    flink_kpu_hour=0.11,
    flink_running_storage_gb_month=0.10,
    dynamodb_million_write_request_units=0.625,
    dynamodb_million_read_request_units=0.125,
    dynamodb_storage_gb_month=0.25,
)
