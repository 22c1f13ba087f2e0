"""What every part of the policy store shares: the database, names, checks, audit.

:class:`PolicyBase` holds the helpers; :mod:`fluvial.govern.tagging` (tags and tag grants),
:mod:`fluvial.govern.narrowing` (data filters and masks) and :mod:`fluvial.govern.policy`
(grants, checks, access) build :class:`~fluvial.govern.policy.PolicyStore` on it.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fluvial.errors import NotFoundError, PermissionDeniedError, UsageError, did_you_mean
from fluvial.govern._db import govern_dir
from fluvial.govern.audit import AuditLog
from fluvial.govern.model import Principal
from fluvial.govern.objects import ObjectRef, actor_name
from fluvial.govern.principals import PrincipalStore

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = ["MARTS", "SALT_FILE", "PolicyBase"]

SALT_FILE = "mask.salt"
#: the warehouse's namespace: its marts are governed like lake tables
MARTS = "marts"


class PolicyBase:
    """The policy database of a project and the helpers its parts share."""

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
        self.audit.append("policy", actor_name(by), action=action, **data)

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
