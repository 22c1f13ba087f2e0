"""The lake's zones: ``raw``, ``refined``, ``curated`` and ``quarantine``, and their rules.

A zone is an Iceberg namespace with rules that every table created in it follows:

==============  ===========  ===========  ==========================================
zone            append-only  partitions   what lives there
==============  ===========  ===========  ==========================================
``raw``         yes          hour         the master dataset: every event as logged
``refined``     no           day          cleaned, deduplicated, conformed data
``curated``     no           day          the star schema: facts and dimensions
``quarantine``  no           day          rows that failed a quality rule, with why
==============  ===========  ===========  ==========================================

Tables are partitioned by an Iceberg time transform (``hours`` or ``days``) of their time
column and declare the same column as their sort order, so readers prune files by time.
Retention (how many days a zone keeps) comes from ``[lake]`` settings.

>>> zone = ZONES["raw"]
>>> zone.append_only, zone.granularity
(True, 'hour')
>>> zone_of("curated.fact_orders").name
'curated'
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from fluvial.errors import NotFoundError, UsageError, did_you_mean

if TYPE_CHECKING:
    from fluvial.config import LakeSettings

__all__ = ["ZONES", "Zone", "split_name", "zone_of", "zones"]

Granularity = Literal["hour", "day"]


@dataclass(frozen=True)
class Zone:
    """A namespace of the lake and the rules its tables follow."""

    name: str
    description: str
    #: rows are only ever appended (maintenance may rewrite files, never change rows)
    append_only: bool
    #: the Iceberg time transform its tables are partitioned by
    granularity: Granularity
    #: drop data older than this many days (0 = keep forever); applied by maintenance
    retention_days: int = 0

    def table_properties(self) -> dict[str, str]:
        """Iceberg table properties every table of this zone carries."""
        return {
            "fluvial.zone": self.name,
            "fluvial.append-only": str(self.append_only).lower(),
            "fluvial.retention-days": str(self.retention_days),
            "write.parquet.compression-codec": "zstd",
        }


ZONES: dict[str, Zone] = {
    "raw": Zone("raw", "the master dataset: every event exactly as logged", True, "hour"),
    "refined": Zone("refined", "cleaned, deduplicated and conformed data", False, "day"),
    "curated": Zone("curated", "business-ready facts and dimensions", False, "day"),
    "quarantine": Zone(
        "quarantine", "rows that failed a quality rule, with the reason", False, "day"
    ),
}


def zones(settings: LakeSettings) -> dict[str, Zone]:
    """The zones with the retention configured in ``[lake]``."""
    return {
        **ZONES,
        "raw": replace(ZONES["raw"], retention_days=settings.raw_retention_days),
        "quarantine": replace(
            ZONES["quarantine"], retention_days=settings.quarantine_retention_days
        ),
    }


def split_name(name: str) -> tuple[str, str]:
    """``"raw.events"`` -> ``("raw", "events")``; a name must say its zone.

    >>> split_name("raw.events")
    ('raw', 'events')
    """
    namespace, dot, table = name.partition(".")
    if not dot or not namespace or not table or "." in table:
        raise UsageError(f"expected a table name like 'raw.events' (zone.table), found {name!r}")
    return namespace, table


def zone_of(name: str, known: dict[str, Zone] | None = None) -> Zone:
    """The zone of a ``zone.table`` name. Raises NotFoundError for an unknown zone."""
    namespace, _ = split_name(name)
    known = ZONES if known is None else known
    if namespace not in known:
        raise NotFoundError(
            f"zone '{namespace}' does not exist (zones: {', '.join(known)})"
            f"{did_you_mean(namespace, known)}"
        )
    return known[namespace]
