"""Data filters (a grantee's grants narrowed to rows and columns) and column masks."""

from __future__ import annotations

import builtins
from collections.abc import Sequence

import orjson

from fluvial.errors import NotFoundError, UsageError, did_you_mean
from fluvial.govern._db import now
from fluvial.govern._policy_base import PolicyBase
from fluvial.govern.model import MASK_KINDS, Mask, Principal
from fluvial.govern.objects import ColumnMask, ObjectRef, RowFilter, actor_name
from fluvial.govern.row_filter import check_row_filter

__all__ = ["FilterMaskPolicies"]


class FilterMaskPolicies(PolicyBase):
    """Data filters and column masks (changed by admins only)."""

    def set_filter(
        self,
        name: str,
        role: str,
        table: str,
        row_filter: str | None = None,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        *,
        table_columns: Sequence[str] | None = None,
        by: Principal | None = None,
    ) -> RowFilter:
        """Create or replace data filter *name*: *role*'s grants on *table* narrowed to the
        rows where *row_filter* holds and to *include* (or all but *exclude*) columns.

        *table_columns* are the table's columns (read from the lake when omitted).

        Raises:
            UsageError: the predicate does not parse, is not boolean, has a subquery or an
                aggregate; both include and exclude; nothing to filter.
            NotFoundError: an unknown table, column, principal or role.
        """
        self._require_admin(by, "set_filter", "setting a row filter")
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise UsageError(f"a filter name is letters, digits, '_' and '-'; found {name!r}")
        ref = self._table(table)
        known = list(table_columns) if table_columns is not None else self.table_columns(table)
        if include is not None and exclude is not None:
            raise UsageError(
                "a filter lists the columns it includes or those it excludes, not both"
            )
        if row_filter is None and include is None and exclude is None:
            raise UsageError("a filter needs a row filter, included columns or excluded columns")
        for col in [*(include or ()), *(exclude or ())]:
            if col not in known:
                raise NotFoundError(f"column '{col}' is not in '{table}'{did_you_mean(col, known)}")
        predicate = check_row_filter(row_filter, known) if row_filter is not None else None
        self.principals.kind_of(role)
        include_json = orjson.dumps(list(include)).decode() if include is not None else None
        exclude_json = orjson.dumps(list(exclude)).decode() if exclude is not None else None
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO filters (name, grantee, namespace, tbl, row_filter, include, "
                "exclude, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    role,
                    ref.namespace,
                    ref.table,
                    predicate,
                    include_json,
                    exclude_json,
                    actor_name(by),
                    now(),
                ),
            )
        self._record(
            by,
            "set_filter",
            name=name,
            to=role,
            table=table,
            row_filter=predicate,
            include=include_json and list(include or ()),
            exclude=exclude_json and list(exclude or ()),
        )
        return next(f for f in self.filters() if f.name == name)

    def drop_filter(self, name: str, *, by: Principal | None = None) -> None:
        """Drop data filter *name*. Raises NotFoundError (with a suggestion)."""
        self._require_admin(by, "drop_filter", "dropping a row filter")
        with self.db.write() as conn:
            gone = conn.execute("DELETE FROM filters WHERE name = ?", (name,)).rowcount
        if not gone:
            raise NotFoundError(
                f"no filter '{name}'{did_you_mean(name, [f.name for f in self.filters()])}"
            )
        self._record(by, "drop_filter", name=name)

    def filters(self, table: str | None = None) -> builtins.list[RowFilter]:
        """Every data filter, or those on *table*."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM filters ORDER BY namespace, tbl, name").fetchall()
        out = [
            RowFilter(
                r["name"],
                r["grantee"],
                f"{r['namespace']}.{r['tbl']}",
                r["row_filter"],
                tuple(orjson.loads(r["include"])) if r["include"] else None,
                tuple(orjson.loads(r["exclude"])) if r["exclude"] else None,
                r["created_by"],
                r["created_at"],
            )
            for r in rows
        ]
        return [f for f in out if table is None or f.table == table]

    def set_mask(
        self,
        role: str,
        table: str,
        column: str,
        mask: Mask,
        *,
        table_columns: Sequence[str] | None = None,
        by: Principal | None = None,
    ) -> ColumnMask:
        """Show *column* of *table* to *role* through *mask* (replacing its earlier mask)."""
        self._require_admin(by, "set_mask", "setting a mask")
        if mask.kind not in MASK_KINDS:
            raise UsageError(f"a mask is one of {', '.join(MASK_KINDS)}; found {mask.kind!r}")
        if mask.keep_last < 0:
            raise UsageError(f"a partial mask keeps 0 or more characters; found {mask.keep_last}")
        ref = self._object(f"{table}.{column}", table_columns)
        self.principals.kind_of(role)
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO masks (grantee, namespace, tbl, col, kind, keep_last, "
                "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    role,
                    ref.namespace,
                    ref.table,
                    ref.column,
                    mask.kind,
                    mask.keep_last,
                    actor_name(by),
                    now(),
                ),
            )
        self._record(
            by, "set_mask", to=role, object=str(ref), mask=mask.kind, keep_last=mask.keep_last
        )
        return ColumnMask(role, table, column, mask)

    def drop_mask(self, role: str, table: str, column: str, *, by: Principal | None = None) -> None:
        """Drop *role*'s mask on a column. Raises NotFoundError if there is none."""
        self._require_admin(by, "drop_mask", "dropping a mask")
        ref = ObjectRef.parse(f"{table}.{column}")
        with self.db.write() as conn:
            gone = conn.execute(
                "DELETE FROM masks WHERE grantee = ? AND namespace = ? AND tbl = ? AND col = ?",
                (role, ref.namespace, ref.table, ref.column),
            ).rowcount
        if not gone:
            raise NotFoundError(f"{role} has no mask on {ref}")
        self._record(by, "drop_mask", to=role, object=str(ref))

    def masks(self, table: str | None = None) -> builtins.list[ColumnMask]:
        """Every column mask, or those on *table*."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM masks ORDER BY namespace, tbl, col, grantee"
            ).fetchall()
        out = [
            ColumnMask(
                r["grantee"],
                f"{r['namespace']}.{r['tbl']}",
                r["col"],
                Mask(r["kind"], r["keep_last"]),
            )
            for r in rows
        ]
        return [m for m in out if table is None or m.table == table]
