"""Quarantine: rows that failed a quality rule, kept in the lake with the reason.

The rows of ``zone.name`` go to the lake table ``quarantine.<zone>__<name>``: the data's
columns, ``_rule`` (the error rules the row failed) and ``_quarantined_at`` (when), the
table partitioned by the day of ``_quarantined_at`` like every table of its zone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from fluvial.errors import UsageError
from fluvial.lake.zones import split_name
from fluvial.quality.evaluate import RULE_COLUMN

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = ["QUARANTINED_AT", "quarantine", "quarantine_table"]

#: when a row was quarantined (microseconds, UTC)
QUARANTINED_AT = "_quarantined_at"


def quarantine_table(table_name: str) -> str:
    """The quarantine table of *table_name*.

    >>> quarantine_table("refined.clicks")
    'quarantine.refined__clicks'
    """
    zone, name = split_name(table_name)
    return f"quarantine.{zone}__{name}"


def quarantine(
    project: Project, table_name: str, failing_rows: pa.Table, *, at: datetime | None = None
) -> int:
    """Append *failing_rows* (a report's ``failing_rows``) to the table's quarantine table.

    The table is created on first use; new columns evolve its schema. Nothing is written
    for no rows. Returns the number of rows quarantined.

    Raises:
        UsageError: *failing_rows* has no ``_rule`` column.
        IncompatibleSchemaError: the columns cannot be written into the quarantine table's.
    """
    from fluvial.lake import append, open_lake

    if RULE_COLUMN not in failing_rows.column_names:
        raise UsageError(
            f"expected the failing rows of a quality report (with a '{RULE_COLUMN}' column)"
        )
    if failing_rows.num_rows == 0:
        return 0
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    rows = failing_rows
    if QUARANTINED_AT in rows.column_names:
        rows = rows.drop_columns([QUARANTINED_AT])
    stamp = pa.scalar(moment, pa.timestamp("us", tz="UTC"))
    rows = rows.append_column(pa.field(QUARANTINED_AT, stamp.type), pa.repeat(stamp, rows.num_rows))
    name = quarantine_table(table_name)
    with open_lake(project) as lake:
        if not lake.exists(name):
            try:
                lake.create_table(name, rows.schema, time_column=QUARANTINED_AT)
            except UsageError:  # another writer created it meanwhile
                pass
        append(lake.table(name), rows, properties={"fluvial.quality.source": table_name})
    return rows.num_rows
