"""Access policies (our Lake Formation): grants, tags, tag grants, row filters and masks.

:class:`PolicyStore` keeps them in the governance database beside the principals and
answers :meth:`~PolicyStore.access` (the :class:`~fluvial.govern.model.AccessResolver`
protocol) for the query enforcement point. Grants, checks and access are here; tags and
tag grants in :mod:`fluvial.govern.tagging`, data filters and masks in
:mod:`fluvial.govern.narrowing`, names and records in :mod:`fluvial.govern.objects`.

Objects are named ``zone`` (a namespace: a lake zone, or ``marts`` for the warehouse),
``zone.table`` or ``zone.table.column``. How the pieces combine is in
:mod:`fluvial.govern.access` and docs/adr/0007-access-policies.md.

Changes take an acting principal (``by``): an admin may change anything; anyone else may
grant or revoke only privileges they hold *with grant option* on the object or an object
containing it. Tags, tag grants, filters and masks are the admin's. ``by=None`` is the
trusted local caller (file-system access to the project). Every change appends a
``policy`` audit record.

>>> import tempfile
>>> from fluvial.project import Project
>>> project = Project.init(tempfile.mkdtemp() + "/p")
>>> policy = open_policy(project)
>>> policy.principals.create_role("analyst")
>>> bob, _ = policy.principals.create("bob", roles=["analyst"])
>>> _ = policy.grant(["SELECT"], on="curated.dim_users", to="analyst")
>>> policy.tag("curated.dim_orders", key="domain", value="sales")
>>> _ = policy.grant_on_tags("domain=sales", ["SELECT"], to="bob")
>>> access = policy.access(bob, "curated.dim_users", ["user_id", "email"])
>>> access.columns, access.sources["email"]
(('user_id', 'email'), 'grant SELECT on curated.dim_users to analyst')
>>> policy.access(bob, "curated.dim_orders", ["order_id"]).sources
{'order_id': "tag grant SELECT on domain = 'sales' to bob"}
>>> _ = policy.revoke(["SELECT"], on="curated.dim_users", from_="analyst")
>>> policy.access(bob, "curated.dim_users", ["user_id", "email"])
Traceback (most recent call last):
...
fluvial.errors.PermissionDeniedError: permission denied: no SELECT on table curated.dim_users for principal bob
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import orjson

from fluvial.errors import NotFoundError, PermissionDeniedError, UsageError
from fluvial.govern._db import now
from fluvial.govern._policy_base import MARTS, SALT_FILE
from fluvial.govern.access import Slice, combine
from fluvial.govern.audit import open_audit
from fluvial.govern.model import PRIVILEGES, Mask, Principal, TableAccess
from fluvial.govern.narrowing import FilterMaskPolicies
from fluvial.govern.objects import (
    ColumnMask,
    Grant,
    ObjectRef,
    RowFilter,
    Tag,
    TagGrant,
    actor_name,
    parse_privileges,
)
from fluvial.govern.principals import open_principals
from fluvial.govern.tagging import TagPolicies
from fluvial.govern.tags import TagExpression

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = [
    "MARTS",
    "SALT_FILE",
    "ColumnMask",
    "Grant",
    "ObjectRef",
    "PolicyStore",
    "RowFilter",
    "Tag",
    "TagGrant",
    "open_policy",
]


class PolicyStore(TagPolicies, FilterMaskPolicies):
    """A project's access policies; implements :class:`~fluvial.govern.model.AccessResolver`."""

    # -- checks ----------------------------------------------------------------------------

    def _held(self, principal: Principal, ref: ObjectRef, *, with_option: bool) -> frozenset[str]:
        if principal.admin:
            return frozenset(PRIVILEGES)
        grantees = self._grantees(principal)
        option = " AND grant_option = 1" if with_option else ""
        held: set[str] = set()
        with self.db.read() as conn:
            for namespace, table, column in ref.covers():
                held.update(
                    r[0]
                    for r in conn.execute(
                        f"SELECT privilege FROM grants WHERE grantee IN ({self._in(grantees)}) "
                        f"AND namespace = ? AND tbl = ? AND col = ?{option}",
                        (*grantees, namespace, table, column),
                    )
                )
            tag_grants = conn.execute(
                f"SELECT expression, privilege FROM tag_grants WHERE grantee IN ({self._in(grantees)}){option}",
                grantees,
            ).fetchall()
            if tag_grants:
                tags = self._effective(
                    self._tags_under(conn, ref.namespace, ref.table), ref.table, ref.column
                )
                for row in tag_grants:
                    if TagExpression.parse(row["expression"]).matches(tags):
                        held.add(row["privilege"])
        return frozenset(held)

    def privileges(self, principal: Principal, object: str) -> frozenset[str]:
        """The privileges *principal* holds on *object* (or an object containing it)."""
        return self._held(principal, ObjectRef.parse(object), with_option=False)

    def grantable(self, principal: Principal, object: str) -> frozenset[str]:
        """The privileges *principal* may grant onward on *object* (held with grant option)."""
        return self._held(principal, ObjectRef.parse(object), with_option=True)

    def check(self, principal: Principal, privilege: str, object: str) -> None:
        """Raise PermissionDeniedError unless *principal* holds *privilege* on *object*."""
        (wanted,) = parse_privileges([privilege])
        ref = ObjectRef.parse(object)
        if wanted not in self._held(principal, ref, with_option=False):
            raise PermissionDeniedError(
                f"no {wanted} on {ref.kind} {ref} for principal {principal.name}"
            )

    def _may_grant(
        self,
        by: Principal | None,
        privileges: Sequence[str],
        refs: Sequence[ObjectRef],
        action: str = "grant",
    ) -> None:
        if by is None or by.admin:
            return
        for ref in refs:
            missing = [p for p in privileges if p not in self._held(by, ref, with_option=True)]
            if missing:
                raise self._deny(
                    by,
                    action,
                    f"{by.name} may not {action} {', '.join(missing)} on {ref}: it needs "
                    "them with grant option",
                )

    # -- grants ----------------------------------------------------------------------------

    def _targets(
        self, on: str, columns: Sequence[str] | None, table_columns: Sequence[str] | None
    ) -> list[ObjectRef]:
        ref = self._object(on)
        if not columns:
            return [ref]
        if ref.kind != "table":
            raise UsageError(f"--columns needs a table, found the {ref.kind} {on!r}")
        known = list(table_columns) if table_columns is not None else self.table_columns(on)
        return [self._object(f"{on}.{c}", known) for c in columns]

    def grant(
        self,
        privileges: Iterable[str] | str,
        *,
        on: str,
        to: str,
        grant_option: bool = False,
        columns: Sequence[str] | None = None,
        table_columns: Sequence[str] | None = None,
        by: Principal | None = None,
    ) -> builtins.list[Grant]:
        """Grant *privileges* on *on* (or only its *columns*) to a principal or role.

        Raises:
            PermissionDeniedError: *by* lacks the privileges with grant option.
            NotFoundError: an unknown zone, column, principal or role.
        """
        privs = parse_privileges(privileges)
        refs = self._targets(on, columns, table_columns)
        self.principals.kind_of(to)
        self._may_grant(by, privs, refs)
        with self.db.write() as conn:
            for ref in refs:
                for p in privs:
                    conn.execute(
                        "INSERT INTO grants (grantee, privilege, namespace, tbl, col, grant_option, "
                        "granted_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (grantee, privilege, namespace, tbl, col) DO UPDATE SET "
                        "grant_option = max(grant_option, excluded.grant_option)",
                        (
                            to,
                            p,
                            ref.namespace,
                            ref.table,
                            ref.column,
                            int(grant_option),
                            actor_name(by),
                            now(),
                        ),
                    )
        self._record(
            by,
            "grant",
            privileges=privs,
            objects=[str(r) for r in refs],
            to=to,
            grant_option=grant_option,
        )
        return [
            g
            for g in self.grants(grantee=to)
            if g.object in {str(r) for r in refs} and g.privilege in privs
        ]

    def revoke(
        self,
        privileges: Iterable[str] | str,
        *,
        on: str,
        from_: str,
        columns: Sequence[str] | None = None,
        grant_option_only: bool = False,
        table_columns: Sequence[str] | None = None,
        by: Principal | None = None,
    ) -> int:
        """Revoke privileges (or only their grant option); returns how many grants changed.

        Raises:
            NotFoundError: the grantee held none of them there.
        """
        privs = parse_privileges(privileges)
        refs = self._targets(on, columns, table_columns)
        self._may_grant(by, privs, refs, "revoke")
        changed = 0
        with self.db.write() as conn:
            for ref in refs:
                key = (from_, ref.namespace, ref.table, ref.column)
                where = f"grantee = ? AND namespace = ? AND tbl = ? AND col = ? AND privilege IN ({self._in(privs)})"
                if grant_option_only:
                    changed += conn.execute(
                        f"UPDATE grants SET grant_option = 0 WHERE {where}", (*key, *privs)
                    ).rowcount
                else:
                    changed += conn.execute(
                        f"DELETE FROM grants WHERE {where}", (*key, *privs)
                    ).rowcount
        if not changed:
            raise NotFoundError(
                f"{from_} holds no {', '.join(privs)} on {on}{' columns ' + ', '.join(columns) if columns else ''}"
            )
        self._record(
            by,
            "revoke",
            privileges=privs,
            objects=[str(r) for r in refs],
            to=from_,
            grant_option_only=grant_option_only,
        )
        return changed

    def grants(self, *, grantee: str | None = None) -> builtins.list[Grant]:
        """Every grant (or one grantee's), for listings and ``fluvial aws template``."""
        sql = (
            "SELECT g.*, CASE WHEN g.grantee IN (SELECT name FROM roles) THEN 'role' "
            "ELSE 'principal' END AS grantee_kind FROM grants g"
        )
        args: tuple[str, ...] = ()
        if grantee is not None:
            sql, args = sql + " WHERE g.grantee = ?", (grantee,)
        with self.db.read() as conn:
            rows = conn.execute(
                sql + " ORDER BY g.namespace, g.tbl, g.col, g.grantee, g.privilege", args
            ).fetchall()
        out = []
        for r in rows:
            ref = ObjectRef(r["namespace"], r["tbl"], r["col"])
            out.append(
                Grant(
                    r["id"],
                    r["grantee"],
                    r["grantee_kind"],
                    r["privilege"],
                    str(ref),
                    ref.kind,
                    bool(r["grant_option"]),
                    r["granted_by"],
                    r["created_at"],
                )
            )
        return out

    # -- access ----------------------------------------------------------------------------

    def explain(
        self, principal: Principal | str, table: str, columns: Sequence[str] | None = None
    ) -> TableAccess:
        """What *principal* (or a role, by name) may read of *table* and why (``sources``);
        never raises for one without access (it gets no columns). *columns* default to the
        table's."""
        if isinstance(principal, str):
            principal = self.principals.as_principal(principal)
        cols = list(columns) if columns is not None else self.table_columns(table)
        return self._resolve(principal, table, cols)

    def access(self, principal: Principal, table: str, columns: Sequence[str]) -> TableAccess:
        """What *principal* may read of *table* (see :mod:`fluvial.govern.access`).

        Raises:
            PermissionDeniedError: no column of the table is readable, or the principal is
                disabled.
        """
        if principal.disabled:
            raise PermissionDeniedError(f"principal {principal.name} is disabled")
        result = self._resolve(principal, table, list(columns))
        if not result.columns:
            raise PermissionDeniedError(
                f"no SELECT on table {table} for principal {principal.name}"
            )
        return result

    def _resolve(
        self, principal: Principal, table: str, columns: builtins.list[str]
    ) -> TableAccess:
        ref = ObjectRef.parse(table)
        if ref.kind != "table":
            raise UsageError(f"expected a table like 'curated.dim_users', found {table!r}")
        if principal.admin:
            return TableAccess(table, tuple(columns), sources={c: "admin role" for c in columns})
        grantees = self._grantees(principal)
        marks = self._in(grantees)
        with self.db.read() as conn:
            grants = conn.execute(
                f"SELECT grantee, namespace, tbl, col FROM grants WHERE privilege = 'SELECT' "
                f"AND grantee IN ({marks}) AND namespace = ? AND tbl IN ('', ?) ORDER BY id",
                (*grantees, ref.namespace, ref.table),
            ).fetchall()
            tag_grants = conn.execute(
                f"SELECT grantee, expression FROM tag_grants WHERE privilege = 'SELECT' "
                f"AND grantee IN ({marks}) ORDER BY id",
                grantees,
            ).fetchall()
            filters = conn.execute(
                f"SELECT * FROM filters WHERE grantee IN ({marks}) AND namespace = ? AND tbl = ? ORDER BY name",
                (*grantees, ref.namespace, ref.table),
            ).fetchall()
            masks = conn.execute(
                f"SELECT * FROM masks WHERE grantee IN ({marks}) AND namespace = ? AND tbl = ?",
                (*grantees, ref.namespace, ref.table),
            ).fetchall()
            tags = self._tags_under(conn, ref.namespace, ref.table)
        column_tags = {c: self._effective(tags, ref.table, c) for c in columns}
        given: dict[str, dict[str, str]] = {g: {} for g in grantees}
        for row in grants:
            if row["tbl"] == "":
                source = f"grant SELECT on {row['namespace']} to {row['grantee']}"
                hit = columns
            elif row["col"] == "":
                source = f"grant SELECT on {table} to {row['grantee']}"
                hit = columns
            else:
                source = f"grant SELECT on {table}.{row['col']} to {row['grantee']}"
                hit = [row["col"]] if row["col"] in columns else []
            for c in hit:
                given[row["grantee"]].setdefault(c, source)
        for row in tag_grants:
            expression = TagExpression.parse(row["expression"])
            for c in columns:
                if expression.matches(column_tags[c]):
                    given[row["grantee"]].setdefault(
                        c, f"tag grant SELECT on {row['expression']} to {row['grantee']}"
                    )
        grantee_masks: dict[str, dict[str, Mask]] = {}
        for row in masks:
            grantee_masks.setdefault(row["grantee"], {})[row["col"]] = Mask(
                row["kind"], row["keep_last"]
            )
        slices: list[Slice] = []
        for g in grantees:
            if not given[g]:
                continue
            own = [f for f in filters if f["grantee"] == g]
            if not own:
                slices.append(Slice(g, given[g], masks=grantee_masks.get(g, {})))
            for f in own:
                keep = set(orjson.loads(f["include"])) if f["include"] else set(columns)
                keep -= set(orjson.loads(f["exclude"])) if f["exclude"] else set()
                cols = {c: s for c, s in given[g].items() if c in keep}
                slices.append(Slice(g, cols, f["row_filter"], f["name"], grantee_masks.get(g, {})))
        reasons = {
            c: "tag " + ", ".join(f"{k}={v}" for k, v in sorted(t.items())) if t else "no grant"
            for c, t in column_tags.items()
        }
        return combine(table, columns, slices, reasons)


def open_policy(project: Project) -> PolicyStore:
    """The project's access policies (``<data_dir>/govern/policy.db``)."""
    return PolicyStore(open_principals(project), open_audit(project), project)
