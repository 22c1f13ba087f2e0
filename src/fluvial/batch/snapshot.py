"""Snapshots: type 2 slowly changing dimensions, computed in DuckDB over Arrow.

Each run compares the model's rows with the current versions (``is_current``) of the
snapshot table, by ``unique_key``:

- a key that is new, or whose checked columns changed (``IS DISTINCT FROM``, so nulls
  compare as values), gets a new current version valid from *now*;
- the version it replaces is closed: ``valid_to = now``, ``is_current = false``;
- with ``invalidate_hard_deletes``, a key missing from the model's rows is closed too
  (it comes back as a new version if it reappears).

:func:`snapshot_changes` returns the rows to write — closed versions and new versions —
and the target then replaces the current rows of those keys in one commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import pyarrow as pa

from fluvial.errors import UsageError
from fluvial.lake.query import quote

__all__ = ["SCD_COLUMNS", "snapshot_changes"]

#: the columns a snapshot adds to the model's rows
SCD_COLUMNS = ("valid_from", "valid_to", "is_current")


def snapshot_changes(
    current: pa.Table,
    source: pa.Table,
    keys: Sequence[str],
    now: datetime,
    *,
    check_cols: Sequence[str] | None = None,
    invalidate_hard_deletes: bool = False,
    present_keys: pa.Table | None = None,
) -> pa.Table:
    """The closed and new versions one snapshot run writes.

    Args:
        current: the snapshot table's current versions (no columns when it is new).
        source: the model's rows now.
        keys: the ``unique_key`` columns.
        now: the run's time, as ``valid_from`` / ``valid_to``.
        check_cols: the columns whose change makes a new version (None: all but the keys).
        invalidate_hard_deletes: close the versions of keys missing from *source*.
        present_keys: the keys that count as present (default: *source*'s keys); quality
            may drop rows from *source* without that meaning they were deleted.

    Raises:
        UsageError: the model's rows lack a key or check column, or use an SCD column name.
    """
    for name in (*keys, *(check_cols or ())):
        if name not in source.schema.names:
            raise UsageError(f"snapshot column '{name}' is not in the model's output")
    clash = [c for c in SCD_COLUMNS if c in source.schema.names]
    if clash:
        raise UsageError(f"a snapshot's model must not return {', '.join(clash)}: Fluvial adds it")
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("src", source)
        con.register("present", present_keys if present_keys is not None else source)
        have_current = len(current.schema) > 0
        if have_current:
            con.register("cur_all", current)
        else:  # first run: no versions yet, with the source's columns
            con.execute(
                "CREATE TEMP TABLE cur_all AS SELECT *, NULL::TIMESTAMPTZ AS valid_from, "
                "NULL::TIMESTAMPTZ AS valid_to, NULL::BOOLEAN AS is_current "
                "FROM src LIMIT 0"
            )
        cur_cols = set(current.schema.names) if have_current else set(source.schema.names)
        checked = [
            c for c in (check_cols or source.schema.names) if c not in keys and c in cur_cols
        ]
        on = " AND ".join(f"s.{quote(k)} IS NOT DISTINCT FROM c.{quote(k)}" for k in keys)
        on_p = " AND ".join(f"p.{quote(k)} IS NOT DISTINCT FROM c.{quote(k)}" for k in keys)
        on_x = " AND ".join(f"x.{quote(k)} IS NOT DISTINCT FROM c.{quote(k)}" for k in keys)
        differs = (
            " OR ".join(f"s.{quote(c)} IS DISTINCT FROM c.{quote(c)}" for c in checked) or "false"
        )
        deleted = (
            f"OR NOT EXISTS (SELECT 1 FROM present p WHERE {on_p})"
            if invalidate_hard_deletes
            else ""
        )
        sql = f"""
            WITH cur AS (SELECT * FROM cur_all WHERE is_current),
            changed AS (
                SELECT s.* FROM src s LEFT JOIN (SELECT *, true AS __found FROM cur) c ON {on}
                WHERE c.__found IS NULL OR ({differs})
            )
            SELECT c.* REPLACE ($now::TIMESTAMPTZ AS valid_to, false AS is_current)
            FROM cur c
            WHERE EXISTS (SELECT 1 FROM changed x WHERE {on_x}) {deleted}
            UNION ALL BY NAME
            SELECT *, $now::TIMESTAMPTZ AS valid_from, NULL::TIMESTAMPTZ AS valid_to,
                   true AS is_current
            FROM changed
        """
        return con.execute(sql, {"now": now}).to_arrow_table()
    finally:
        con.close()
