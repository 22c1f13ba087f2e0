"""What a principal may see of a table: the contract between policies and enforcement.

The policy side (:mod:`fluvial.govern.policy`) answers, for one principal and one table, a
:class:`TableAccess`: the readable columns, the columns denied and why, a row filter and
the masks to apply. The enforcement side (:mod:`fluvial.govern.enforce`) rewrites every
user query with it. Neither knows how the other works.

>>> access = TableAccess(
...     table="curated.dim_users",
...     columns=("user_id", "email", "country"),
...     denied={"phone": "tag pii=phone"},
...     row_filter="country = 'DE'",
...     masks={"email": Mask("partial", keep_last=4)},
... )
>>> access.readable("email"), access.readable("phone")
(True, False)
>>> print(Mask("redact").sql('"email"', salt="s"))
CASE WHEN "email" IS NULL THEN NULL ELSE '****' END
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "MASK_KINDS",
    "PRINCIPAL_KINDS",
    "PRIVILEGES",
    "AccessResolver",
    "Mask",
    "Principal",
    "TableAccess",
]

#: what a grant can give on a namespace, table or column
PRIVILEGES = ("SELECT", "INSERT", "ALTER", "DROP", "DESCRIBE")
#: who can hold an API key
PRINCIPAL_KINDS = ("user", "service")
#: how a column can be masked for a role
MASK_KINDS = ("redact", "hash", "partial", "null")

MaskKind = Literal["redact", "hash", "partial", "null"]


@dataclass(frozen=True)
class Principal:
    """A user or service account, with the roles it holds (directly or through other roles)."""

    name: str
    kind: str = "user"
    roles: frozenset[str] = frozenset()
    admin: bool = False
    disabled: bool = False


def _text(column: str) -> str:
    return f"CAST({column} AS VARCHAR)"


@dataclass(frozen=True)
class Mask:
    """How one column is shown to a role: ``redact`` (a fixed string), ``hash`` (salted
    SHA-256 of the value), ``partial`` (all but the last *keep_last* characters starred) or
    ``null``. NULL stays NULL under every mask."""

    kind: MaskKind
    keep_last: int = 4

    def sql(self, column: str, *, salt: str) -> str:
        """A DuckDB expression over *column* (already quoted) that shows the masked value.

        >>> print(Mask("partial", keep_last=2).sql("c", salt=""))
        CASE WHEN c IS NULL THEN NULL ELSE repeat('*', greatest(length(CAST(c AS VARCHAR)) - 2, 0)) || right(CAST(c AS VARCHAR), 2) END
        """
        if self.kind == "redact":
            return f"CASE WHEN {column} IS NULL THEN NULL ELSE '****' END"
        if self.kind == "hash":
            quoted_salt = "'" + salt.replace("'", "''") + "'"
            return f"CASE WHEN {column} IS NULL THEN NULL ELSE sha256({quoted_salt} || {_text(column)}) END"
        if self.kind == "partial":
            k = int(self.keep_last)
            text = _text(column)
            return (
                f"CASE WHEN {column} IS NULL THEN NULL ELSE "
                f"repeat('*', greatest(length({text}) - {k}, 0)) || right({text}, {k}) END"
            )
        if self.kind == "null":
            return f"CASE WHEN false THEN {column} END"  # NULL of the column's own type
        raise ValueError(f"unknown mask kind {self.kind!r}; expected one of {MASK_KINDS}")


@dataclass(frozen=True)
class TableAccess:
    """One principal's view of one table.

    ``columns`` are the readable columns in the table's order (masked ones included);
    ``denied`` maps every other column to why it is denied (e.g. ``"tag pii=email"``,
    ``"no grant"``); ``row_filter`` is a SQL predicate over the table's columns (None: every
    row); ``masks`` maps readable columns to their mask; ``sources`` says which grant, filter
    or mask gives each column, the filter (key ``"filter"``) and each mask (``"mask:<col>"``),
    for ``fluvial policy explain``.
    """

    table: str
    columns: tuple[str, ...]
    denied: Mapping[str, str] = field(default_factory=dict)
    row_filter: str | None = None
    masks: Mapping[str, Mask] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)

    def readable(self, column: str) -> bool:
        return column in self.columns


class AccessResolver(Protocol):
    """Answers what *principal* may read of *table* (``zone.name``), whose columns are
    *columns* in table order.

    Raises:
        PermissionDeniedError: the principal has no SELECT on the table at all.
    """

    def access(self, principal: Principal, table: str, columns: Sequence[str]) -> TableAccess: ...
