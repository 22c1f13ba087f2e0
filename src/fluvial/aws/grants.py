"""The project's grants as simple records, for Lake Formation permissions in the template.

A :class:`Grant` says that a role (or principal) holds privileges on a zone (every table
of it) or on one table, optionally on some columns only. The template turns each into an
``AWS::LakeFormation::PrincipalPermissions`` for the IAM role that stands for the Fluvial
role or principal, privileges held with grant option as ``PermissionsWithGrantOption``.
:func:`project_grants` reads them from the project's access policies
(:mod:`fluvial.govern.policy`, ``fluvial grant``).

>>> g = Grant("analyst", "curated.dim_users", ("SELECT",), ("user_id", "country"))
>>> g.zone, g.table
('curated', 'dim_users')
>>> Grant("analyst", "curated", ("SELECT",)).table is None
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fluvial.errors import UsageError
from fluvial.govern.model import PRIVILEGES

if TYPE_CHECKING:
    from fluvial.govern.policy import ColumnMask, RowFilter
    from fluvial.govern.policy import Grant as PolicyGrant
    from fluvial.project import Project

__all__ = ["DataFilter", "Grant", "grants_of", "narrow", "project_grants"]


@dataclass(frozen=True)
class DataFilter:
    """Rows (*row_filter*, a SQL predicate; None: every row) and columns (*columns*, or all
    but *excluded*) of one table, as a Lake Formation data cells filter."""

    name: str
    row_filter: str | None
    columns: tuple[str, ...] | None = None
    excluded: tuple[str, ...] = ()


@dataclass(frozen=True)
class Grant:
    """*principal* holds *privileges* on *securable* (``zone`` or ``zone.table``), on
    *columns* only when given (SELECT only, as Lake Formation allows)."""

    principal: str
    securable: str
    privileges: tuple[str, ...]
    columns: tuple[str, ...] = ()
    #: the privileges held with grant option (a subset of *privileges*)
    grantable: tuple[str, ...] = ()
    #: SELECT on every column but these (masked columns, which Lake Formation cannot mask)
    excluded: tuple[str, ...] = ()
    #: SELECT through this data cells filter instead of on the whole table
    data_filter: DataFilter | None = None

    def __post_init__(self) -> None:
        unknown = [p for p in self.privileges if p not in PRIVILEGES]
        if unknown or not self.privileges:
            raise UsageError(
                f"grant to {self.principal} on {self.securable}: expected privileges among "
                f"{', '.join(PRIVILEGES)}, found {', '.join(self.privileges) or 'none'}"
            )
        if not set(self.grantable) <= set(self.privileges):
            raise UsageError(
                f"grant to {self.principal} on {self.securable}: grantable privileges must be granted"
            )
        narrowed = self.columns or self.excluded or self.data_filter
        if narrowed and (self.table is None or set(self.privileges) != {"SELECT"}):
            raise UsageError(
                f"grant to {self.principal} on {self.securable}: column grants are SELECT on a table"
            )

    @property
    def zone(self) -> str:
        return self.securable.partition(".")[0]

    @property
    def table(self) -> str | None:
        return self.securable.partition(".")[2] or None


def grants_of(records: Iterable[PolicyGrant]) -> list[Grant]:
    """The policy store's grants (one privilege on one object each) as :class:`Grant` records:
    privileges on one zone or table gathered per grantee, column grants gathered into one
    ``SELECT`` on the table's columns. Lake Formation has column permissions for ``SELECT``
    only, so a column grant of another privilege has no equivalent and is left out.

    >>> from fluvial.govern.policy import Grant as G
    >>> rows = [G(1, "analyst", "role", p, "curated", "namespace", p == "SELECT", None, "")
    ...         for p in ("SELECT", "DESCRIBE")]
    >>> rows += [G(3, "support", "role", "SELECT", f"curated.dim_users.{c}", "column", False, None, "")
    ...          for c in ("user_id", "country")]
    >>> for g in grants_of(rows): print(g.principal, g.securable, g.privileges, g.columns, g.grantable)
    analyst curated ('DESCRIBE', 'SELECT') () ('SELECT',)
    support curated.dim_users ('SELECT',) ('user_id', 'country') ()
    """
    objects: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    columns: dict[tuple[str, str], tuple[list[str], set[str]]] = {}
    for r in records:
        if r.object_kind == "column":
            if r.privilege != "SELECT":
                continue
            table, _, column = r.object.partition(".")[2].partition(".")
            name = f"{r.object.partition('.')[0]}.{table}"
            cols, option = columns.setdefault((r.grantee, name), ([], set()))
            if column not in cols:
                cols.append(column)
            if r.grant_option:
                option.add("SELECT")
            continue
        privileges, grantable = objects.setdefault((r.grantee, r.object), (set(), set()))
        privileges.add(r.privilege)
        if r.grant_option:
            grantable.add(r.privilege)
    found = [
        Grant(who, on, tuple(sorted(p)), (), tuple(sorted(g)))
        for (who, on), (p, g) in objects.items()
    ]
    found += [
        Grant(who, on, ("SELECT",), tuple(cols), tuple(sorted(g)))
        for (who, on), (cols, g) in columns.items()
    ]
    return sorted(found, key=lambda g: (g.principal, g.securable, g.columns))


def _columns(
    base: tuple[str, ...] | None,
    include: Iterable[str] | None,
    exclude: Iterable[str],
    masked: set[str],
) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """The columns a filter grant gives: (a list, or None for all) and the excluded ones."""
    drop = set(exclude) | masked
    if include is None and base is None:
        return None, tuple(sorted(drop))
    chosen = [
        c for c in (include if include is not None else base or ()) if base is None or c in base
    ]
    return tuple(c for c in chosen if c not in drop), ()


def narrow(
    grants: Iterable[Grant], filters: Iterable[RowFilter], masks: Iterable[ColumnMask]
) -> list[Grant]:
    """*grants* as narrow as the project's data filters and masks make them in Fluvial.

    A grantee's ``SELECT`` on a table with data filters becomes ``SELECT`` on each filter
    (a data cells filter: its rows and columns), as a filter narrows the grantee's grants;
    a masked column is left out of the grantee's ``SELECT`` (Lake Formation cannot mask, so
    it denies). Lake Formation cannot narrow a grant on a whole database, so a filter or mask
    under a grantee's zone-wide ``SELECT`` is refused.

    Raises:
        UsageError: a filtered or masked table is covered by a zone-wide ``SELECT``.
    """
    grants = list(grants)
    by_table: dict[tuple[str, str], list[RowFilter]] = {}
    for f in filters:
        by_table.setdefault((f.grantee, f.table), []).append(f)
    masked: dict[tuple[str, str], set[str]] = {}
    for m in masks:
        masked.setdefault((m.grantee, m.table), set()).add(m.column)
    narrowed = set(by_table) | set(masked)
    out: list[Grant] = []
    selected: dict[tuple[str, str], tuple[str, ...] | None] = {}  # SELECT on all (None) or columns
    for g in grants:
        key = (g.principal, g.securable)
        if g.table is None:
            under = sorted(
                t for who, t in narrowed if who == g.principal and t.partition(".")[0] == g.zone
            )
            if under and "SELECT" in g.privileges:
                raise UsageError(
                    f"{g.principal} holds SELECT on zone {g.zone}, and a data filter or mask narrows "
                    f"it on {under[0]}; Lake Formation cannot narrow a grant on a whole database: "
                    f"grant {g.principal} the zone's tables one by one"
                )
            out.append(g)
            continue
        if key not in narrowed or "SELECT" not in g.privileges:
            out.append(g)
            continue
        others = tuple(p for p in g.privileges if p != "SELECT")
        if others:
            out.append(
                Grant(
                    g.principal,
                    g.securable,
                    others,
                    (),
                    tuple(p for p in g.grantable if p != "SELECT"),
                )
            )
        previous = selected.get(key, ())
        selected[key] = None if not g.columns or previous is None else (*previous, *g.columns)
        if key in by_table:
            continue  # SELECT comes through the filters below
        hidden = masked[key]
        option = ("SELECT",) if "SELECT" in g.grantable else ()
        if g.columns:
            kept = tuple(c for c in g.columns if c not in hidden)
            if kept:
                out.append(Grant(g.principal, g.securable, ("SELECT",), kept, option))
        else:
            out.append(
                Grant(g.principal, g.securable, ("SELECT",), (), option, tuple(sorted(hidden)))
            )
    for key, table_filters in by_table.items():
        if key not in selected:
            continue  # a filter alone grants nothing
        who, table = key
        for f in table_filters:
            cols, excluded = _columns(
                selected[key], f.include, f.exclude or (), masked.get(key, set())
            )
            if cols == ():
                continue
            data_filter = DataFilter(f.name, f.row_filter, cols, excluded)
            out.append(Grant(who, table, ("SELECT",), data_filter=data_filter))
    return out


def project_grants(project: Project) -> list[Grant]:
    """The grants of *project*'s access policies (:mod:`fluvial.govern.policy`), narrowed by
    its data filters and masks (:func:`narrow`); none when it has no governance database yet
    (nothing is created to find that out)."""
    from fluvial.govern.policy import open_policy

    if not (project.root / project.settings.project.data_dir / "govern" / "policy.db").exists():
        return []
    policy = open_policy(project)
    return narrow(grants_of(policy.grants()), policy.filters(), policy.masks())
