"""What a project deploys: its topics, zones, store tables and pipelines, read from its files.

:func:`inventory` reads the project's settings (``[log]`` topics and retention, ``[lake]``
zones and their retention, ``[aws]`` sizing) and every pipeline in ``pipelines/``: a
``'fluvial'`` table names a topic (read, or written when a pipeline inserts into it; its
``'fluvial.late-events.topic'`` is written), a
``'store'`` table a store table with its primary key, a ``'lake'`` table a lake table. It
opens nothing: no log, no store, no catalog, so it works on a fresh checkout.

>>> import tempfile
>>> from fluvial.project import Project
>>> inv = inventory(Project.init(tempfile.mkdtemp()))
>>> [s.topic for s in inv.streams], sorted(inv.zones)
(['events', 'events_failed'], ['curated', 'quarantine', 'raw', 'refined'])
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fluvial.aws.cost import kinesis_shards
from fluvial.errors import ConfigError
from fluvial.lake.zones import Zone, zones

if TYPE_CHECKING:
    from fluvial.project import Project
__all__ = ["Inventory", "PipelineUse", "StoreTable", "StreamSpec", "inventory"]

#: Kinesis keeps records 24 h to 365 days
MIN_RETENTION_HOURS, MAX_RETENTION_HOURS = 24, 8760
_PREFIX = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


@dataclass(frozen=True)
class StreamSpec:
    """A Kinesis stream for one topic of the event log."""

    topic: str
    shards: int
    retention_hours: int


@dataclass(frozen=True)
class StoreTable:
    """A DynamoDB table for one store table: its key columns and whether rows expire."""

    name: str
    key: tuple[str, ...]
    expires: bool


@dataclass(frozen=True)
class PipelineUse:
    """What one pipeline reads and writes, so its role gets exactly that."""

    name: str
    reads_topics: tuple[str, ...] = ()
    writes_topics: tuple[str, ...] = ()
    writes_store: tuple[str, ...] = ()
    writes_lake: tuple[str, ...] = ()  # zone.table


@dataclass(frozen=True)
class Inventory:
    """Everything the template declares, by Fluvial's names."""

    prefix: str
    streams: tuple[StreamSpec, ...]
    zones: dict[str, Zone]
    store_tables: tuple[StoreTable, ...]
    pipelines: tuple[PipelineUse, ...] = field(default=())
    events_topic: str = "events"
    failed_topic: str = "events_failed"
    #: ``[store] namespace``: the leading part of the store's DynamoDB partition keys
    store_namespace: str = "fluvial_store"
    #: whether the operational store lives in DynamoDB (a pipeline writes it, or the backend says so)
    uses_store: bool = False
    #: the lake tables the project's files name, by zone (zone -> table names)
    lake_tables: dict[str, tuple[str, ...]] = field(default_factory=dict)


def stream_retention_hours(log_retention_hours: float) -> int:
    """``[log] retention_hours`` as Kinesis allows it: 24 h to 365 days (0, forever, is the most).

    >>> stream_retention_hours(168), stream_retention_hours(1), stream_retention_hours(0)
    (168, 24, 8760)
    """
    if log_retention_hours <= 0:
        return MAX_RETENTION_HOURS
    return int(min(MAX_RETENTION_HOURS, max(MIN_RETENTION_HOURS, round(log_retention_hours))))


def _pipelines(project: Project, default_ttl: str) -> tuple[list[PipelineUse], list[StoreTable]]:
    from fluvial.stream.plan.build import LATE_TOPIC_OPTION
    from fluvial.stream.sql.parser import parse_script

    folder = project.root / "pipelines"
    uses: list[PipelineUse] = []
    stores: dict[str, StoreTable] = {}
    for path in sorted(folder.glob("*.sql")) if folder.is_dir() else []:
        script = parse_script(path.read_text(encoding="utf-8"), str(path))
        targets = {i.table for i in script.inserts}
        reads: list[str] = []
        writes: list[str] = []
        store: list[str] = []
        lake: list[str] = []
        for name, table in script.tables.items():
            connector = table.options.get("connector")
            if connector == "fluvial" and (topic := table.options.get("topic")):
                (writes if name in targets else reads).append(topic)
                if late := table.options.get(LATE_TOPIC_OPTION):
                    writes.append(late)  # the side output of rows dropped as late
            elif connector == "store" and name in targets and (st := table.options.get("table")):
                store.append(st)
                stores[st] = StoreTable(
                    st,
                    table.primary_key,
                    bool(table.options.get("ttl") or default_ttl),
                )
            elif connector == "lake" and name in targets and (lt := table.options.get("table")):
                lake.append(lt)
        uses.append(PipelineUse(path.stem, tuple(reads), tuple(writes), tuple(store), tuple(lake)))
    return uses, sorted(stores.values(), key=lambda s: s.name)


def _lake_tables(
    project: Project, pipelines: list[PipelineUse], known: dict[str, Zone]
) -> dict[str, tuple[str, ...]]:
    """The lake tables the project's files name: the archiver's, the pipelines' lake sinks,
    the models (``models/<zone>/<name>.sql``), the tables with quality rules and their
    quarantine tables."""
    from fluvial.quality.files import tables_with_rules
    from fluvial.quality.quarantine import quarantine_table

    names = {"raw.events", "raw.events_failed"}
    names |= {t for use in pipelines for t in use.writes_lake}
    models = project.root / "models"
    for zone in known:
        folder = models / zone
        if folder.is_dir():
            names |= {f"{zone}.{p.stem}" for p in folder.glob("*.sql")}
    ruled = tables_with_rules(project)
    names |= {t for t in ruled if t.partition(".")[0] in known}
    names |= {quarantine_table(t) for t in ruled}
    by_zone: dict[str, list[str]] = {}
    for name in sorted(names):
        zone, _, table = name.partition(".")
        if zone in known and table:
            by_zone.setdefault(zone, []).append(table)
    return {zone: tuple(tables) for zone, tables in by_zone.items()}


def inventory(project: Project) -> Inventory:
    """What *project* deploys, from its settings and ``pipelines/*.sql``.

    Raises:
        ConfigError: ``[aws] resource_prefix`` cannot name buckets and streams.
        SqlError: a pipeline does not parse.
    """
    s = project.settings
    prefix = s.aws.resource_prefix
    if not _PREFIX.match(prefix):
        raise ConfigError(
            "aws.resource_prefix: expected 1-20 lower-case letters, digits or '-', starting "
            f"with a letter (it names S3 buckets), found {prefix!r}"
        )
    pipelines, store_tables = _pipelines(project, s.store.default_ttl)
    retention = stream_retention_hours(s.log.retention_hours)
    events_shards = kinesis_shards(
        s.aws.peak_events_per_second, s.aws.peak_events_per_second * s.aws.event_bytes
    )
    topics = [s.log.events_topic, s.log.failed_topic]
    for use in pipelines:
        topics += [t for t in (*use.reads_topics, *use.writes_topics) if t not in topics]
    streams = tuple(
        StreamSpec(t, events_shards if t == s.log.events_topic else 1, retention) for t in topics
    )
    known = zones(s.lake)
    return Inventory(
        prefix=prefix,
        streams=streams,
        zones=known,
        store_tables=tuple(store_tables),
        pipelines=tuple(pipelines),
        events_topic=s.log.events_topic,
        failed_topic=s.log.failed_topic,
        store_namespace=s.store.namespace,
        uses_store=bool(store_tables) or s.store.backend == "dynamodb",
        lake_tables=_lake_tables(project, pipelines, known),
    )
