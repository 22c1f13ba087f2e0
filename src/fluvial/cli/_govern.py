"""Who a governance command acts as: the key in FLUVIAL_API_KEY, or the local admin.

A command run with a key in ``FLUVIAL_API_KEY`` acts as that key's principal and needs the
privileges (or grant option) the change asks for. Without a key it acts as the project's
bootstrap admin: whoever can write the project's files can already change its policy
database directly, so asking them for a key would protect nothing.
"""

from __future__ import annotations

import os

from fluvial.errors import PermissionDeniedError
from fluvial.govern.audit import AuditLog
from fluvial.govern.model import Principal
from fluvial.govern.principals import PrincipalStore, open_principals
from fluvial.project import Project

__all__ = ["API_KEY_ENV", "acting", "require_admin"]

API_KEY_ENV = "FLUVIAL_API_KEY"


def acting(project: Project, store: PrincipalStore | None = None) -> Principal:
    """The principal this command acts as (authenticating FLUVIAL_API_KEY when it is set)."""
    store = store or open_principals(project)
    secret = os.environ.get(API_KEY_ENV, "").strip()
    if secret:
        return store.authenticate(secret)
    return store.local_admin()


def require_admin(principal: Principal, action: str, audit: AuditLog | None = None) -> None:
    """Raise PermissionDeniedError unless *principal* holds the admin role (with *audit*,
    the refusal is recorded first, as a ``principal`` record)."""
    if not principal.admin:
        error = PermissionDeniedError(
            f"{action} needs the admin role, which {principal.name} does not hold"
        )
        if audit is not None:
            audit.append(
                "principal", principal.name, action=action, decision="deny", reason=str(error)
            )
        raise error
