"""Typed settings: ``fluvial.toml`` plus ``FLUVIAL_<SECTION>__<KEY>`` overrides.

Each section is a frozen dataclass whose fields carry their default and a one-line help
text; :func:`render_default_toml` writes every setting, commented, for ``fluvial init``.

>>> s = load_settings(None, env={"FLUVIAL_LOG__PARTITIONS": "8"})
>>> s.log.partitions, s.collector.port
(8, 8765)
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluvial.errors import ConfigError, did_you_mean

__all__ = [
    "AlertsSettings",
    "ApiSettings",
    "AwsSettings",
    "BatchSettings",
    "CollectorSettings",
    "FlinkSettings",
    "GovernSettings",
    "KafkaSettings",
    "LakeSettings",
    "LineageSettings",
    "LogSettings",
    "ProjectSettings",
    "SchemaSettings",
    "Settings",
    "StoreSettings",
    "StreamSettings",
    "UpSettings",
    "apply_backend",
    "load_settings",
    "render_default_toml",
]

CONFIG_FILE = "fluvial.toml"
ENV_PREFIX = "FLUVIAL_"


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ProjectSettings:
    """The project as a whole."""

    name: str = _f("fluvial", "project name, shown in the UI and in metrics")
    data_dir: str = _f(
        "data", "where embedded state lives (log, lake, stores), relative to the project"
    )
    backend: str = _f(
        "local",
        "local (embedded services in data_dir) | aws (Kinesis, S3 + Glue, DynamoDB: the defaults of [log] backend, [lake] catalog_uri and warehouse, [store] backend)",
    )


@dataclass(frozen=True)
class LogSettings:
    """The event log (our Kinesis Data Streams / Kafka)."""

    backend: str = _f("embedded", "event log backend: embedded | kafka | kinesis ([aws])")
    partitions: int = _f(4, "default partition count for new topics")
    fsync: str = _f(
        "batch",
        "durability: batch (group commit, fsync before acknowledging) | always (fsync every append) | never (OS decides; not crash-safe against power loss)",
    )
    segment_bytes: int = _f(64 * 1024 * 1024, "roll a new segment file after this many bytes")
    retention_hours: float = _f(168.0, "delete whole segments older than this (0 = keep forever)")
    retention_bytes: int = _f(
        0, "per partition, delete oldest segments beyond this size (0 = no limit)"
    )
    retention_check_seconds: float = _f(
        300.0, "how often the writing process (the collector) applies retention (0 = never)"
    )
    events_topic: str = _f("events", "topic for valid events")
    failed_topic: str = _f(
        "events_failed", "topic for invalid events (dead letters), with their reason"
    )


@dataclass(frozen=True)
class KafkaSettings:
    """The Kafka backend of the event log (pip install 'fluvial[kafka]')."""

    bootstrap_servers: str = _f("127.0.0.1:9092", "comma-separated broker addresses")
    replication_factor: int = _f(1, "replication factor for topics Fluvial creates")
    client_id: str = _f("fluvial", "client.id sent to the brokers")


@dataclass(frozen=True)
class CollectorSettings:
    """The HTTP collector (our API Gateway -> Kinesis)."""

    host: str = _f("127.0.0.1", "address to listen on")
    port: int = _f(8765, "port to listen on")
    max_request_bytes: int = _f(1024 * 1024, "largest request body accepted (413 beyond)")
    max_event_bytes: int = _f(64 * 1024, "largest single event (size violation beyond)")
    max_pending_events: int = _f(200_000, "events waiting for the log before answering 503")
    future_tolerance_seconds: float = _f(
        300.0, "flag events whose time is further in the future than this"
    )


@dataclass(frozen=True)
class SchemaSettings:
    """The event schema registry."""

    dir: str = _f("schemas", "where event schemas are stored, relative to the project")
    compatibility: str = _f("BACKWARD", "default compatibility: BACKWARD | FORWARD | FULL | NONE")


@dataclass(frozen=True)
class StreamSettings:
    """Stream pipelines: defaults for Flink's configuration keys (a pipeline's SET wins)."""

    checkpoint_interval: str = _f(
        "10 s", "execution.checkpointing.interval: how often state and offsets are checkpointed"
    )
    idle_timeout: str = _f(
        "",
        "table.exec.source.idle-timeout: a split idle this long stops holding the watermark back (empty = never)",
    )
    parallelism: int = _f(0, "parallelism.default: threads one step may use (0 = all cores)")
    mini_batch_size: int = _f(65_536, "table.exec.mini-batch.size: rows per micro-batch")

    def flink_options(self) -> dict[str, str]:
        """These settings under Flink's key names (unset ones left out)."""
        options = {
            "execution.checkpointing.interval": self.checkpoint_interval,
            "table.exec.source.idle-timeout": self.idle_timeout,
            "parallelism.default": str(self.parallelism) if self.parallelism > 0 else "",
            "table.exec.mini-batch.size": str(self.mini_batch_size),
        }
        return {k: v for k, v in options.items() if v}


@dataclass(frozen=True)
class LakeSettings:
    """The lakehouse: Iceberg tables in zones (our S3 + Glue Data Catalog)."""

    warehouse: str = _f(
        "lake", "where table data lives: a folder relative to data_dir, or an s3:// URI"
    )
    catalog_uri: str = _f(
        "",
        "the catalog: a SQL database URI (empty = SQLite in data_dir; postgresql+psycopg://… for teams) or glue (the AWS Glue Data Catalog, with the [aws] settings)",
    )
    catalog_name: str = _f(
        "fluvial", "this lake's name inside the catalog database (several lakes may share one)"
    )
    s3_endpoint: str = _f(
        "", "S3 endpoint URL for an s3:// warehouse (empty = AWS; with glue: [aws] endpoint_url)"
    )
    s3_region: str = _f(
        "",
        "S3 region for an s3:// warehouse (empty = from the environment; with glue: [aws] region)",
    )
    buffer_records: int = _f(1_000_000, "archiver: commit to the lake after this many events")
    buffer_bytes: int = _f(
        256 * 1024 * 1024, "archiver: commit after this many bytes buffered in memory"
    )
    buffer_seconds: float = _f(
        60.0, "archiver: commit at least this often while events arrive (seconds)"
    )
    raw_retention_days: int = _f(
        0, "raw zone: drop data older than this many days (0 = keep the master dataset forever)"
    )
    quarantine_retention_days: int = _f(30, "quarantine zone: drop rows older than this")


@dataclass(frozen=True)
class StoreSettings:
    """The operational store that stream pipelines upsert into (our DynamoDB)."""

    backend: str = _f(
        "sqlite", "store backend: sqlite | postgres | redis | dynamodb (with the [aws] settings)"
    )
    path: str = _f("store/store.db", "sqlite: the database file, relative to data_dir")
    postgres_dsn: str = _f(
        "", "postgres: connection string, e.g. postgresql://user@127.0.0.1:5432/db"
    )
    redis_url: str = _f("redis://127.0.0.1:6379/0", "redis: server URL")
    namespace: str = _f(
        "fluvial_store",
        "postgres: the schema holding the tables; redis: the key prefix; dynamodb: the partition key prefix in the <resource_prefix>-store table",
    )
    default_ttl: str = _f(
        "", "expire rows this long after their last write, e.g. '7 d' (empty = never)"
    )


@dataclass(frozen=True)
class FlinkSettings:
    """Running pipelines on Apache Flink (fluvial stream deploy)."""

    runner: str = _f(
        "local", "where deploy runs a job: local (PyFlink mini-cluster) | gateway (SQL Gateway)"
    )
    gateway_url: str = _f("http://127.0.0.1:8083", "gateway: the Flink SQL Gateway's REST URL")
    parallelism: int = _f(0, "parallelism.default of deployed jobs (0 = the cluster's default)")
    timeout_seconds: float = _f(
        600.0, "local: longest run of a bounded job; gateway: longest wait for one statement"
    )


@dataclass(frozen=True)
class BatchSettings:
    """Batch models (our Glue ETL / EMR): SQL models into the lake and the warehouse."""

    models_dir: str = _f("models", "where model files live, relative to the project")
    warehouse: str = _f(
        "warehouse.duckdb", "the DuckDB warehouse file holding the marts, relative to data_dir"
    )
    engine: str = _f("duckdb", "default engine for batch runs: duckdb | spark")
    retries: int = _f(2, "retries of a model after a transient error (commit conflict, I/O)")
    retry_backoff_seconds: float = _f(
        1.0, "wait before the first retry; doubled for each further retry"
    )
    lock_timeout_seconds: float = _f(
        60.0, "how long a run waits for a model that another run is building"
    )
    spark_master: str = _f("", "--engine spark: the Spark master URL (empty = local[*])")
    memory_limit: str = _f(
        "",
        "DuckDB engine: memory a build may use before it spills to data_dir/tmp/duckdb, e.g. '4GB' (empty = DuckDB's default, 80% of RAM)",
    )
    batch_rows: int = _f(
        500_000, "rows per write when a model's output is streamed into its lake table"
    )
    schedule: str = _f(
        "",
        "when fluvial up runs the models: cron expressions separated by ';', each optionally followed by a selection, e.g. '0 * * * *' or '*/15 * * * * tag:hourly; 0 2 * * *' (empty = never)",
    )


@dataclass(frozen=True)
class LineageSettings:
    """Lineage: OpenLineage run events for every job (our Glue lineage / Marquez)."""

    transport: str = _f(
        "file", "where run events go: file (data_dir/lineage/events.ndjson) | http (Marquez)"
    )
    url: str = _f("", "http: the receiver's base URL; events are POSTed to <url>/api/v1/lineage")
    namespace: str = _f(
        "", "the OpenLineage namespace of jobs and datasets (empty = the project name)"
    )


@dataclass(frozen=True)
class ApiSettings:
    """The HTTP API under /api (what the dashboard and the SQL explorer read)."""

    live_tables: str = _f(
        "page_views_per_minute,active_users,funnel_per_minute,revenue_per_minute",
        "store tables /api/metrics/live shows, comma-separated (those that exist)",
    )
    live_rows: int = _f(20, "newest rows (by key) /api/metrics/live returns per table")
    sql_max_rows: int = _f(10_000, "POST /api/sql: the largest row limit a query may ask for")
    sql_timeout_seconds: float = _f(30.0, "POST /api/sql: interrupt a query after this long")
    events_interval_seconds: float = _f(
        1.0, "GET /api/events: seconds between two pushes of live metrics and pipeline status"
    )


@dataclass(frozen=True)
class AlertsSettings:
    """Alerts on stream results and pipeline metrics (our CloudWatch alarms)."""

    rules_file: str = _f("alerts.toml", "the rules file ([[rule]] tables), relative to the project")
    interval_seconds: float = _f(15.0, "how often the evaluator checks every rule")
    webhook_timeout_seconds: float = _f(5.0, "webhook channel: give up on a POST after this")
    smtp_host: str = _f("127.0.0.1", "email channel: the SMTP server")
    smtp_port: int = _f(25, "email channel: the SMTP port")
    smtp_from: str = _f("fluvial@localhost", "email channel: the sender address")
    smtp_user: str = _f("", "email channel: login user (empty = no login)")
    smtp_password: str = _f("", "email channel: login password")
    smtp_starttls: bool = _f(False, "email channel: upgrade the connection with STARTTLS")


@dataclass(frozen=True)
class UpSettings:
    """fluvial up: the supervisor of the platform's worker processes."""

    grace_seconds: float = _f(
        15.0, "on shutdown, how long workers may take to stop before they are killed"
    )
    restart_backoff_seconds: float = _f(
        1.0, "wait before restarting a crashed worker; doubled for each further crash"
    )
    restart_backoff_max_seconds: float = _f(60.0, "the longest wait before a restart")
    crash_loop_restarts: int = _f(
        5, "give up on a worker that crashed more often than this within the window below"
    )
    crash_loop_window_seconds: float = _f(300.0, "the window of the crash-loop limit")
    archive: bool = _f(True, "run the lake archiver (fluvial lake archive) as a worker")
    maintenance_schedule: str = _f(
        "30 3 * * *",
        "cron expression for lake maintenance (compaction, snapshot expiry, retention, orphans; empty = never)",
    )


@dataclass(frozen=True)
class GovernSettings:
    """Governance: who may read what, and the audit log."""

    require_auth: bool = _f(
        True, "the HTTP API and UI need an API key (Authorization: Bearer …); false = open"
    )
    sql_max_rows: int = _f(100_000, "self-service SQL: the most rows one query returns")
    sql_timeout_seconds: float = _f(60.0, "self-service SQL: interrupt a query after this long")


@dataclass(frozen=True)
class AwsSettings:
    """AWS backends (Kinesis, S3 + Glue, DynamoDB), used where a section names them."""

    region: str = _f("us-east-1", "the AWS region")
    endpoint_url: str = _f(
        "", "one endpoint for every AWS API (an emulator such as moto's server; empty = AWS)"
    )
    profile: str = _f("", "the AWS credentials profile (empty = the default chain)")
    resource_prefix: str = _f(
        "fluvial", "prefix of the streams, tables, buckets and Glue databases Fluvial creates"
    )
    peak_events_per_second: float = _f(
        1000.0,
        "fluvial aws template: the peak rate the events stream must take (sizes its Kinesis shards)",
    )
    event_bytes: int = _f(
        1024, "fluvial aws template and cost: the average size of one event as logged (bytes)"
    )
    athena_max_scan_gb: float = _f(
        100.0,
        "fluvial aws template: the Athena workgroup cancels a query that scans more than this (GB)",
    )


@dataclass(frozen=True)
class Settings:
    """All of a project's settings."""

    project: ProjectSettings = field(default_factory=ProjectSettings)
    log: LogSettings = field(default_factory=LogSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    collector: CollectorSettings = field(default_factory=CollectorSettings)
    schemas: SchemaSettings = field(default_factory=SchemaSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)
    lake: LakeSettings = field(default_factory=LakeSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    flink: FlinkSettings = field(default_factory=FlinkSettings)
    lineage: LineageSettings = field(default_factory=LineageSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    up: UpSettings = field(default_factory=UpSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    alerts: AlertsSettings = field(default_factory=AlertsSettings)
    govern: GovernSettings = field(default_factory=GovernSettings)
    aws: AwsSettings = field(default_factory=AwsSettings)


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def _coerce(value: Any, typ: Any, where: str) -> Any:
    if isinstance(typ, types.UnionType):  # e.g. str | None
        typ = next(t for t in typing.get_args(typ) if t is not type(None))
    if isinstance(value, str) and typ is not str:
        raw = value.strip()
        try:
            if typ is bool:
                if raw.lower() in ("1", "true", "yes", "on"):
                    return True
                if raw.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(raw)
            return typ(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: expected {typ.__name__}, found {value!r}") from exc
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {typ.__name__}, found {value!r}")
    return value


def _build(raw: Mapping[str, Mapping[str, Any]], origin: str) -> Settings:
    sections = _sections()
    built: dict[str, Any] = {}
    for name, values in raw.items():
        if name not in sections:
            raise ConfigError(f"{origin}: unknown section [{name}]{did_you_mean(name, sections)}")
        cls = sections[name]
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(
                    f"{origin}: unknown setting {name}.{key}{did_you_mean(key, known)}"
                )
            kwargs[key] = _coerce(value, hints[key], f"{origin}: {name}.{key}")
        built[name] = cls(**kwargs)
    return Settings(**built)


#: the settings ``[project] backend`` gives unless they are set: section -> key -> value
#: (``{prefix}`` is ``[aws] resource_prefix``)
BACKEND_DEFAULTS: dict[str, dict[str, dict[str, str]]] = {
    "local": {},
    "aws": {
        "log": {"backend": "kinesis"},
        "lake": {"catalog_uri": "glue", "warehouse": "s3://{prefix}-lake/warehouse"},
        "store": {"backend": "dynamodb"},
    },
}


def apply_backend(merged: dict[str, dict[str, Any]]) -> None:
    """Fill in what ``[project] backend`` implies, in place; explicit settings win.

    >>> raw = {"project": {"backend": "aws"}, "store": {"backend": "redis"}}
    >>> apply_backend(raw)
    >>> raw["store"]["backend"], raw["log"]["backend"], raw["lake"]["warehouse"]
    ('redis', 'kinesis', 's3://fluvial-lake/warehouse')
    >>> apply_backend({"project": {"backend": "gcp"}})
    Traceback (most recent call last):
    ...
    fluvial.errors.ConfigError: project.backend: expected local or aws, found 'gcp'
    """
    backend = str(merged.get("project", {}).get("backend", ProjectSettings.backend))
    if backend not in BACKEND_DEFAULTS:
        raise ConfigError(
            f"project.backend: expected {' or '.join(BACKEND_DEFAULTS)}, found {backend!r}"
            f"{did_you_mean(backend, BACKEND_DEFAULTS)}"
        )
    prefix = str(merged.get("aws", {}).get("resource_prefix", AwsSettings.resource_prefix))
    for section, values in BACKEND_DEFAULTS[backend].items():
        target = merged.setdefault(section, {})
        for key, value in values.items():
            target.setdefault(key, value.format(prefix=prefix))


def load_settings(project_dir: Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read ``fluvial.toml`` in *project_dir* (if any) and apply environment overrides."""
    env = os.environ if env is None else env
    merged: dict[str, dict[str, Any]] = {}
    origin = "defaults"
    if project_dir is not None:
        path = Path(project_dir) / CONFIG_FILE
        if path.exists():
            origin = str(path)
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: {exc}") from exc
            for section, values in data.items():
                if not isinstance(values, dict):
                    raise ConfigError(f"{path}: '{section}' must be a [section]")
                merged[section] = dict(values)
    _build(merged, origin)  # report file errors against the file
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        section, _, key = var[len(ENV_PREFIX) :].partition("__")
        merged.setdefault(section.lower(), {})[key.lower()] = value
    apply_backend(merged)
    return _build(merged, "environment")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def render_default_toml() -> str:
    """Every setting with its default and help text, commented out."""
    lines = [
        "# Fluvial project settings. Every setting is shown with its default, commented out.",
        "# Any setting can be overridden by an environment variable FLUVIAL_<SECTION>__<KEY>,",
        "# e.g. FLUVIAL_LOG__PARTITIONS=8.",
    ]
    defaults = Settings()
    for section in dataclasses.fields(Settings):
        obj = getattr(defaults, section.name)
        lines += ["", f"# {type(obj).__doc__}", f"[{section.name}]"]
        for f in dataclasses.fields(obj):
            lines.append(f"# {f.metadata.get('help', '')}")
            lines.append(f"# {f.name} = {_toml_value(getattr(obj, f.name))}")
    return "\n".join(lines) + "\n"
