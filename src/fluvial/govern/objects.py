"""The names and records of access policies: objects, grants, tags, filters and masks.

>>> ObjectRef.parse("curated.dim_users.email").kind, str(ObjectRef.parse("raw"))
('column', 'raw')
>>> parse_privileges("select, describe")
['SELECT', 'DESCRIBE']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fluvial.errors import UsageError, did_you_mean
from fluvial.govern.model import PRIVILEGES, Mask, Principal

__all__ = [
    "ColumnMask",
    "Grant",
    "ObjectRef",
    "RowFilter",
    "Tag",
    "TagGrant",
    "actor_name",
    "parse_privileges",
]


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


def parse_privileges(privileges: Iterable[str] | str) -> list[str]:
    """Privilege names (a list, or one comma- or space-separated string; ALL = every one).

    Raises:
        UsageError: an unknown privilege, or none.
    """
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


def actor_name(by: Principal | None) -> str | None:
    """The audit log's name for whoever makes a change (None: the trusted local caller)."""
    return by.name if by is not None else None
