"""Tags on namespaces, tables and columns, and grants on tag expressions (LF-Tags)."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence

from fluvial.errors import NotFoundError, UsageError
from fluvial.govern._db import now
from fluvial.govern._policy_base import PolicyBase
from fluvial.govern.model import Principal
from fluvial.govern.objects import ObjectRef, Tag, TagGrant, actor_name, parse_privileges
from fluvial.govern.tags import TagExpression

__all__ = ["TagPolicies"]


class TagPolicies(PolicyBase):
    """Tagging and tag grants (changed by admins only)."""

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
        privs = parse_privileges(privileges)
        self.principals.kind_of(to)
        with self.db.write() as conn:
            for p in privs:
                conn.execute(
                    "INSERT INTO tag_grants (expression, privilege, grantee, grant_option, granted_by, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (expression, privilege, grantee) "
                    "DO UPDATE SET grant_option = max(grant_option, excluded.grant_option)",
                    (canonical, p, to, int(grant_option), actor_name(by), now()),
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
        privs = parse_privileges(privileges)
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
