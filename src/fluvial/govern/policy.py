"""Access policies (our Lake Formation): grants, tags, tag grants, row filters and masks.

:class:`PolicyStore` keeps them in the governance database beside the principals and
answers :meth:`~PolicyStore.access` (the :class:`~fluvial.govern.model.AccessResolver`
protocol) for the query enforcement point. Objects are named ``zone`` (a namespace: a
lake zone, or ``marts`` for the warehouse), ``zone.table`` or ``zone.table.column``. How the pieces combine is in
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
import os
import secrets
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from fluvial.errors import NotFoundError, PermissionDeniedError, UsageError, did_you_mean
from fluvial.govern._db import govern_dir, now
from fluvial.govern.access import Slice, combine
from fluvial.govern.audit import AuditLog, open_audit
from fluvial.govern.model import MASK_KINDS, PRIVILEGES, Mask, Principal, TableAccess
from fluvial.govern.principals import PrincipalStore, open_principals
from fluvial.govern.row_filter import check_row_filter
from fluvial.govern.tags import TagExpression

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = [
    "ColumnMask",
    "Grant",
    "ObjectRef",
    "PolicyStore",
    "RowFilter",
    "Tag",
    "TagGrant",
    "open_policy",
]

SALT_FILE = "mask.salt"
#: the warehouse's namespace: its marts are governed like lake tables
MARTS = "marts"


@dataclass(frozen=True)
class ObjectRef:
    """A namespace (``zone``), a table (``zone.table``) or a column (``zone.table.col``).

    >>> ObjectRef.parse("curated.dim_users.email").kind, str(ObjectRef.parse("raw"))
    ('column', 'raw')
    """

    namespace: str
    table: str = ""
    column: str = ""

    @classmethod
    def parse(cls, text: str) -> ObjectRef:
        """Split a dotted name; a column may itself contain dots (``parent.child``)."""
        parts = text.strip().split(".", 2)
        if not all(parts):
            raise UsageError(
                f"expected a namespace, table or column like 'curated', 'curated.dim_users' or "
                f"'curated.dim_users.email'; found {text!r}"
            )
        return cls(*parts)

    @property
    def kind(self) -> str:
        return "column" if self.column else "table" if self.table else "namespace"

    @property
    def table_name(self) -> str:
        return f"{self.namespace}.{self.table}"

    def covers(self) -> list[tuple[str, str, str]]:
        """This object and every object containing it, as (namespace, table, column)."""
        found = [(self.namespace, "", "")]
        if self.table:
            found.append((self.namespace, self.table, ""))
        if self.column:
            found.append((self.namespace, self.table, self.column))
        return found

    def __str__(self) -> str:
        return ".".join(p for p in (self.namespace, self.table, self.column) if p)


@dataclass(frozen=True)
class Grant:
    """One privilege on one object for one grantee (a principal or a role)."""

    id: int
    grantee: str
    grantee_kind: str
    privilege: str
    object: str
    object_kind: str
    grant_option: bool
    granted_by: str | None
    created_at: str


@dataclass(frozen=True)
class TagGrant:
    """Privileges on every object whose tags match *expression*."""

    id: int
    expression: str
    privilege: str
    grantee: str
    grant_option: bool
    granted_by: str | None
    created_at: str


@dataclass(frozen=True)
class Tag:
    """One tag on a namespace, table or column."""

    object: str
    key: str
    value: str


@dataclass(frozen=True)
class RowFilter:
    """A named data filter: *grantee*'s grants on *table* narrowed to rows and columns."""

    name: str
    grantee: str
    table: str
    row_filter: str | None
    include: tuple[str, ...] | None
    exclude: tuple[str, ...] | None
    created_by: str | None
    created_at: str


@dataclass(frozen=True)
class ColumnMask:
    """How *grantee* sees *column* of *table*."""

    grantee: str
    table: str
    column: str
    mask: Mask


def _privileges(privileges: Iterable[str] | str) -> list[str]:
    if isinstance(privileges, str):
        privileges = privileges.replace(",", " ").split()
    out: list[str] = []
    for raw in privileges:
        p = raw.strip().upper()
        if p == "ALL":
            out += [x for x in PRIVILEGES if x not in out]
        elif p in PRIVILEGES:
            out += [p] if p not in out else []
        else:
            raise UsageError(
                f"unknown privilege {raw!r}; expected ALL or one of {', '.join(PRIVILEGES)}"
                f"{did_you_mean(p, PRIVILEGES)}"
            )
    if not out:
        raise UsageError(f"name at least one privilege: ALL or {', '.join(PRIVILEGES)}")
    return out


def _actor(by: Principal | None) -> str | None:
    return by.name if by is not None else None


class PolicyStore:
    """A project's access policies; implements :class:`~fluvial.govern.model.AccessResolver`."""

    def __init__(self, principals: PrincipalStore, audit: AuditLog, project: Project) -> None:
        self.principals = principals
        self.db = principals.db
        self.audit = audit
        self.project = project
        self._salt: str | None = None

    # -- helpers ---------------------------------------------------------------------------

    @property
    def salt(self) -> str:
        """The project's secret salt for ``hash`` masks (created on first use, mode 0600)."""
        if self._salt is None:
            path = govern_dir(self.project) / SALT_FILE
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_hex(32))
            self._salt = path.read_text().strip()
        return self._salt

    def table_columns(self, table: str) -> list[str]:
        """The top-level columns of *table*: a lake table, or ``marts.<name>`` in the
        warehouse. Raises NotFoundError (with a suggestion)."""
        ref = ObjectRef.parse(table)
        if ref.namespace == MARTS:
            return self._mart_columns(ref.table)
        from fluvial.lake.catalog import open_lake

        with open_lake(self.project) as lake:
            return [f.name for f in lake.table(table).schema().fields]

    def _mart_columns(self, name: str) -> list[str]:
        import duckdb

        from fluvial.batch.warehouse import warehouse_path

        path = warehouse_path(self.project)
        rows: list[tuple[str, str]] = []
        if path.exists():
            try:
                with duckdb.connect(str(path), read_only=True) as con:
                    rows = con.execute(
                        "SELECT table_name, column_name FROM duckdb_columns() WHERE "
                        "schema_name = 'marts' ORDER BY table_name, column_index"
                    ).fetchall()
            except duckdb.IOException as exc:
                raise UsageError(
                    f"the warehouse {path} is being written by a batch run; try again ({exc})"
                ) from None
        columns = [c for t, c in rows if t == name]
        if not columns:
            marts = sorted({f"{MARTS}.{t}" for t, _ in rows})
            raise NotFoundError(
                f"table '{MARTS}.{name}' does not exist{did_you_mean(f'{MARTS}.{name}', marts)}"
            )
        return columns

    def _zone(self, namespace: str) -> None:
        from fluvial.lake.zones import zones

        known = [*zones(self.project.settings.lake), MARTS]
        if namespace not in known:
            raise NotFoundError(
                f"there is no zone '{namespace}' (zones: {', '.join(known)})"
                f"{did_you_mean(namespace, known)}"
            )

    def _object(self, text: str, table_columns: Sequence[str] | None = None) -> ObjectRef:
        ref = ObjectRef.parse(text)
        self._zone(ref.namespace)
        if ref.column:
            known = (
                list(table_columns)
                if table_columns is not None
                else self.table_columns(ref.table_name)
            )
            if ref.column not in known:
                raise NotFoundError(
                    f"column '{ref.column}' is not in '{ref.table_name}'{did_you_mean(ref.column, known)}"
                )
        return ref

    def _table(self, table: str) -> ObjectRef:
        ref = self._object(table)
        if ref.kind != "table":
            raise UsageError(f"expected a table like 'curated.dim_users', found {table!r}")
        return ref

    def _record(self, by: Principal | None, action: str, **data: object) -> None:
        self.audit.append("policy", _actor(by), action=action, **data)

    def _deny(self, by: Principal, action: str, message: str) -> PermissionDeniedError:
        """A refused change: audited (as CloudTrail logs AccessDenied), then raised."""
        error = PermissionDeniedError(message)
        self.audit.append("policy", by.name, action=action, decision="deny", reason=str(error))
        return error

    def _require_admin(self, by: Principal | None, action: str, doing: str) -> None:
        if by is not None and not by.admin:
            raise self._deny(
                by, action, f"{doing} needs the admin role, which {by.name} does not hold"
            )

    @staticmethod
    def _grantees(principal: Principal) -> list[str]:
        return [principal.name, *sorted(principal.roles)]

    @staticmethod
    def _in(values: Sequence[str]) -> str:
        return ",".join("?" * len(values))

    def _tags_under(
        self, conn: sqlite3.Connection, namespace: str, table: str = ""
    ) -> dict[tuple[str, str], dict[str, str]]:
        """Tags of the namespace, of *table* and of its columns, keyed by (table, column)."""
        found: dict[tuple[str, str], dict[str, str]] = {}
        for row in conn.execute(
            "SELECT tbl, col, key, value FROM tags WHERE namespace = ? AND tbl IN ('', ?)",
            (namespace, table),
        ):
            found.setdefault((row["tbl"], row["col"]), {})[row["key"]] = row["value"]
        return found

    @staticmethod
    def _effective(
        tags: dict[tuple[str, str], dict[str, str]], table: str, column: str
    ) -> dict[str, str]:
        """Tags an object inherits: namespace, then table, then column (the closest wins)."""
        out = dict(tags.get(("", ""), {}))
        if table:
            out.update(tags.get((table, ""), {}))
        if column:
            out.update(tags.get((table, column), {}))
        return out

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
        (wanted,) = _privileges([privilege])
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
        privs = _privileges(privileges)
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
                            _actor(by),
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
        privs = _privileges(privileges)
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

    # -- tags ------------------------------------------------------------------------------

    def tag(
        self,
        table: str,
        column: str | None = None,
        *,
        key: str,
        value: str,
        table_columns: Sequence[str] | None = None,
        by: Principal | None = None,
    ) -> None:
        """Tag a namespace (*table* = ``zone``), a table, or one of its columns with key=value.

        A column must exist: *table_columns* are the table's (read from the lake when omitted).
        """
        self._require_admin(by, "tag", "tagging")
        ref = self._object(f"{table}.{column}" if column else table, table_columns)
        for what, text in (("key", key), ("value", value)):
            if not text or any(c in text for c in "=!(),*'\n") or text.strip() != text:
                raise UsageError(
                    f"a tag {what} has no spaces at its ends nor = ! ( ) , * ' ; found {text!r}"
                )
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO tags (namespace, tbl, col, key, value) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (namespace, tbl, col, key) DO UPDATE SET value = excluded.value",
                (ref.namespace, ref.table, ref.column, key, value),
            )
        self._record(by, "tag", object=str(ref), key=key, value=value)

    def untag(
        self, table: str, column: str | None = None, *, key: str, by: Principal | None = None
    ) -> None:
        """Remove tag *key* from an object. Raises NotFoundError if it has none."""
        self._require_admin(by, "untag", "untagging")
        ref = ObjectRef.parse(f"{table}.{column}" if column else table)
        with self.db.write() as conn:
            gone = conn.execute(
                "DELETE FROM tags WHERE namespace = ? AND tbl = ? AND col = ? AND key = ?",
                (ref.namespace, ref.table, ref.column, key),
            ).rowcount
        if not gone:
            raise NotFoundError(f"{ref} has no tag '{key}'")
        self._record(by, "untag", object=str(ref), key=key)

    def tags(self, object: str | None = None) -> builtins.list[Tag]:
        """Every tag, or those on *object* and inside it."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM tags ORDER BY namespace, tbl, col, key").fetchall()
        out = [
            Tag(str(ObjectRef(r["namespace"], r["tbl"], r["col"])), r["key"], r["value"])
            for r in rows
        ]
        if object is not None:
            out = [t for t in out if t.object == object or t.object.startswith(object + ".")]
        return out

    def grant_on_tags(
        self,
        expression: str,
        privileges: Iterable[str] | str,
        *,
        to: str,
        grant_option: bool = False,
        by: Principal | None = None,
    ) -> builtins.list[TagGrant]:
        """Grant *privileges* on every object whose tags match *expression* (now and later)."""
        self._require_admin(by, "grant_on_tags", "granting on tags")
        canonical = str(TagExpression.parse(expression))
        privs = _privileges(privileges)
        self.principals.kind_of(to)
        with self.db.write() as conn:
            for p in privs:
                conn.execute(
                    "INSERT INTO tag_grants (expression, privilege, grantee, grant_option, granted_by, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (expression, privilege, grantee) "
                    "DO UPDATE SET grant_option = max(grant_option, excluded.grant_option)",
                    (canonical, p, to, int(grant_option), _actor(by), now()),
                )
        self._record(
            by,
            "grant_on_tags",
            expression=canonical,
            privileges=privs,
            to=to,
            grant_option=grant_option,
        )
        return [
            g
            for g in self.tag_grants()
            if g.expression == canonical and g.grantee == to and g.privilege in privs
        ]

    def revoke_on_tags(
        self,
        expression: str,
        privileges: Iterable[str] | str,
        *,
        from_: str,
        by: Principal | None = None,
    ) -> int:
        """Revoke a tag grant; returns how many privileges were revoked."""
        self._require_admin(by, "revoke_on_tags", "revoking on tags")
        canonical = str(TagExpression.parse(expression))
        privs = _privileges(privileges)
        with self.db.write() as conn:
            gone = conn.execute(
                f"DELETE FROM tag_grants WHERE expression = ? AND grantee = ? AND privilege IN ({self._in(privs)})",
                (canonical, from_, *privs),
            ).rowcount
        if not gone:
            raise NotFoundError(
                f"{from_} holds no tag grant of {', '.join(privs)} on {canonical!r}"
            )
        self._record(by, "revoke_on_tags", expression=canonical, privileges=privs, to=from_)
        return gone

    def tag_grants(self) -> builtins.list[TagGrant]:
        """Every tag grant."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM tag_grants ORDER BY id").fetchall()
        return [
            TagGrant(
                r["id"],
                r["expression"],
                r["privilege"],
                r["grantee"],
                bool(r["grant_option"]),
                r["granted_by"],
                r["created_at"],
            )
            for r in rows
        ]

    # -- filters and masks -----------------------------------------------------------------

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
                    _actor(by),
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
                    _actor(by),
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
