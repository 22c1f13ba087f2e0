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
    from fluvial.govern.policy import Grant as PolicyGrant
    from fluvial.project import Project

__all__ = ["Grant", "grants_of", "project_grants"]


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
        if self.columns and (self.table is None or set(self.privileges) != {"SELECT"}):
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
    >>> for g in grants_of(rows): print(g)
    Grant(principal='analyst', securable='curated', privileges=('DESCRIBE', 'SELECT'), columns=(), grantable=('SELECT',))
    Grant(principal='support', securable='curated.dim_users', privileges=('SELECT',), columns=('user_id', 'country'), grantable=())
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


def project_grants(project: Project) -> list[Grant]:
    """The grants of *project*'s access policies (:mod:`fluvial.govern.policy`); none when
    it has no governance database yet (nothing is created to find that out)."""
    from fluvial.govern.policy import open_policy

    if not (project.root / project.settings.project.data_dir / "govern" / "policy.db").exists():
        return []
    return grants_of(open_policy(project).grants())
