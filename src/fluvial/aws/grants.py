"""The project's grants as simple records, for Lake Formation permissions in the template.

A :class:`Grant` says that a role (or principal) holds privileges on a zone (every table
of it) or on one table, optionally on some columns only. The template turns each into an
``AWS::LakeFormation::PrincipalPermissions`` for the IAM role that stands for the Fluvial
role. :func:`project_grants` reads them from the project's governance policy store
(:mod:`fluvial.govern.policy`) when that module is installed; without it a project has no
grants and the template declares none.

>>> g = Grant("analyst", "curated.dim_users", ("SELECT",), ("user_id", "country"))
>>> g.zone, g.table
('curated', 'dim_users')
>>> Grant("analyst", "curated", ("SELECT",)).table is None
True
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fluvial.errors import UsageError
from fluvial.govern.model import PRIVILEGES

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = ["Grant", "project_grants"]


@dataclass(frozen=True)
class Grant:
    """*principal* holds *privileges* on *securable* (``zone`` or ``zone.table``), on
    *columns* only when given (SELECT only, as Lake Formation allows)."""

    principal: str
    securable: str
    privileges: tuple[str, ...]
    columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [p for p in self.privileges if p not in PRIVILEGES]
        if unknown or not self.privileges:
            raise UsageError(
                f"grant to {self.principal} on {self.securable}: expected privileges among "
                f"{', '.join(PRIVILEGES)}, found {', '.join(self.privileges) or 'none'}"
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


def _as_grant(record: Any) -> Grant:
    """A grant record of the policy store (an object or a mapping with the same fields)."""

    def get(name: str, default: Any = None) -> Any:
        if isinstance(record, dict):
            return record.get(name, default)
        return getattr(record, name, default)

    principal = get("principal") or get("role") or get("grantee")
    securable = get("securable") or get("table") or get("namespace") or get("on")
    privileges = get("privileges") or (get("privilege"),)
    columns = get("columns") or ()
    return Grant(
        str(principal), str(securable), tuple(str(p).upper() for p in privileges), tuple(columns)
    )


def project_grants(project: Project) -> list[Grant]:
    """The grants of *project*'s policy store, or none when governance policies are not
    installed (:mod:`fluvial.govern.policy` absent)."""
    try:
        policy = importlib.import_module("fluvial.govern.policy")
    except ModuleNotFoundError as exc:
        if exc.name != "fluvial.govern.policy":
            raise
        return []
    store = policy.open_policy(project)
    records: Iterable[Any] = store.grants()
    return [_as_grant(r) for r in records]
