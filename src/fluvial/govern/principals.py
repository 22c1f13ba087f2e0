"""Principals (users and service accounts), their API keys, and roles (our IAM).

An API key looks like ``fvk_`` followed by 32 URL-safe random characters. It is shown once,
when it is created; the governance database keeps only its SHA-256 and a short display
prefix. Roles hold principals and other roles; a principal's ``roles`` are the transitive
closure, and a principal holding the built-in ``admin`` role is an administrator: it may
read everything and change every policy.

Every change appends a ``principal`` record to the audit log, every refused key an
``auth_failure`` record (with the key's display prefix, never the key).

>>> import tempfile
>>> from fluvial.project import Project
>>> store = open_principals(Project.init(tempfile.mkdtemp() + "/p"))
>>> bob, secret = store.create("bob")
>>> secret.startswith("fvk_") and len(secret) == 36
True
>>> store.create_role("analyst"); store.create_role("staff")
>>> store.grant_role("staff", to="analyst"); store.grant_role("analyst", to="bob")
>>> sorted(store.authenticate(secret).roles)
['analyst', 'staff']
>>> store.disable("bob").disabled
True
>>> store.authenticate(secret)
Traceback (most recent call last):
...
fluvial.errors.AuthenticationError: principal bob is disabled
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fluvial.errors import AuthenticationError, NotFoundError, UsageError, did_you_mean
from fluvial.govern._db import GovernDb, govern_dir, now
from fluvial.govern.audit import AuditLog, open_audit
from fluvial.govern.model import PRINCIPAL_KINDS, Principal

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = [
    "ADMIN_KEY_FILE",
    "ADMIN_ROLE",
    "BOOTSTRAP_ADMIN",
    "KEY_PREFIX",
    "PrincipalStore",
    "Role",
    "hash_key",
    "open_principals",
]

KEY_PREFIX = "fvk_"
ADMIN_ROLE = "admin"
#: the principal ``fluvial init`` creates, and whom local commands act as without a key
BOOTSTRAP_ADMIN = "root"
#: where the bootstrap admin's key is kept, owner-readable only, under ``<data_dir>/govern``
ADMIN_KEY_FILE = "admin.key"
_DISPLAY = len(KEY_PREFIX) + 4
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._@-]{0,63}$")


def hash_key(secret: str) -> str:
    """The SHA-256 hex digest stored for *secret* (the secret itself is never stored)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _check_name(what: str, name: str) -> None:
    if not _NAME.match(name):
        raise UsageError(
            f"a {what} name is 1-64 letters, digits, '.', '_', '@' or '-' starting with a "
            f"letter; found {name!r}"
        )


@dataclass(frozen=True)
class Role:
    """A role: its direct members (principals and roles)."""

    name: str
    members: tuple[str, ...]
    builtin: bool = False


class PrincipalStore:
    """The principals, keys and roles of a project, in the governance database."""

    def __init__(self, db: GovernDb, audit: AuditLog, key_file: Path | None = None) -> None:
        self.db = db
        self.audit = audit
        self.key_file = key_file

    # -- reading --------------------------------------------------------------------------

    def _closure(self, conn: sqlite3.Connection, name: str) -> frozenset[str]:
        parents: dict[str, list[str]] = {}
        for row in conn.execute("SELECT role, member FROM memberships"):
            parents.setdefault(row["member"], []).append(row["role"])
        seen: set[str] = set()
        todo = list(parents.get(name, ()))
        while todo:
            role = todo.pop()
            if role not in seen:
                seen.add(role)
                todo += parents.get(role, ())
        return frozenset(seen)

    def _principal(self, conn: sqlite3.Connection, row: sqlite3.Row) -> Principal:
        roles = self._closure(conn, row["name"])
        return Principal(
            name=row["name"],
            kind=row["kind"],
            roles=roles,
            admin=ADMIN_ROLE in roles,
            disabled=row["disabled_at"] is not None,
        )

    def _names(self, conn: sqlite3.Connection) -> builtins.list[str]:
        return [r[0] for r in conn.execute("SELECT name FROM principals ORDER BY name")]

    def get(self, name: str) -> Principal:
        """The principal called *name*. Raises NotFoundError (with a suggestion)."""
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM principals WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFoundError(f"no principal '{name}'{did_you_mean(name, self._names(conn))}")
            return self._principal(conn, row)

    def as_principal(self, name: str) -> Principal:
        """A principal, or a role seen as a principal holding it (and the roles it is in),
        so ``policy explain`` can answer for a role. Raises NotFoundError."""
        if self.kind_of(name) == "principal":
            return self.get(name)
        with self.db.read() as conn:
            roles = self._closure(conn, name) | {name}
        return Principal(name, roles=roles, admin=ADMIN_ROLE in roles)

    def exists(self, name: str) -> bool:
        """Whether a principal called *name* exists."""
        with self.db.read() as conn:
            return (
                conn.execute("SELECT 1 FROM principals WHERE name = ?", (name,)).fetchone()
                is not None
            )

    def list(self) -> builtins.list[Principal]:
        """Every principal, by name (disabled ones included)."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM principals ORDER BY name").fetchall()
            return [self._principal(conn, row) for row in rows]

    def keys(self, name: str) -> builtins.list[dict[str, object]]:
        """The keys of *name*: id, display prefix, created and revoked times (never hashes)."""
        self.get(name)
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT key_id, prefix, created_at, revoked_at FROM api_keys "
                "WHERE principal = ? ORDER BY rowid",
                (name,),
            ).fetchall()
        return [dict(r) for r in rows]

    def roles(self) -> builtins.list[Role]:
        """Every role with its direct members, by name."""
        with self.db.read() as conn:
            members: dict[str, list[str]] = {}
            for row in conn.execute("SELECT role, member FROM memberships ORDER BY member"):
                members.setdefault(row["role"], []).append(row["member"])
            return [
                Role(r["name"], tuple(members.get(r["name"], ())), bool(r["builtin"]))
                for r in conn.execute("SELECT name, builtin FROM roles ORDER BY name")
            ]

    def role_names(self) -> builtins.list[str]:
        """Every role's name."""
        return [r.name for r in self.roles()]

    def kind_of(self, name: str) -> str:
        """``"principal"`` or ``"role"``: what *name* is. Raises NotFoundError."""
        with self.db.read() as conn:
            if conn.execute("SELECT 1 FROM principals WHERE name = ?", (name,)).fetchone():
                return "principal"
            if conn.execute("SELECT 1 FROM roles WHERE name = ?", (name,)).fetchone():
                return "role"
            known = self._names(conn) + [r[0] for r in conn.execute("SELECT name FROM roles")]
        raise NotFoundError(f"no principal or role '{name}'{did_you_mean(name, known)}")

    def authenticate(self, secret: str | None) -> Principal:
        """The enabled principal whose key is *secret*.

        Raises:
            AuthenticationError: the key is missing, unknown or revoked, or its principal
                is disabled; an ``auth_failure`` audit record is written first.
        """
        if not secret:
            self._refuse(None, "missing API key", None)
            raise AuthenticationError(
                "missing API key: send 'Authorization: Bearer KEY' or set FLUVIAL_API_KEY"
            )
        digest = hash_key(secret)
        shown = secret[:_DISPLAY] + "..."
        with self.db.read() as conn:
            key = conn.execute("SELECT * FROM api_keys WHERE sha256 = ?", (digest,)).fetchone()
            # the lookup is by hash, which leaks nothing; compare_digest is belt and braces
            if key is None or not hmac.compare_digest(key["sha256"], digest):
                self._refuse(None, "unknown API key", shown)
                raise AuthenticationError(f"unknown API key {shown}")
            if key["revoked_at"] is not None:
                self._refuse(key["principal"], "revoked API key", shown)
                raise AuthenticationError(
                    f"API key {shown} ({key['key_id']}) was revoked at {key['revoked_at']}"
                )
            row = conn.execute(
                "SELECT * FROM principals WHERE name = ?", (key["principal"],)
            ).fetchone()
            principal = self._principal(conn, row)
        if principal.disabled:
            self._refuse(principal.name, "principal disabled", shown)
            raise AuthenticationError(f"principal {principal.name} is disabled")
        return principal

    def _refuse(self, principal: str | None, reason: str, prefix: str | None) -> None:
        self.audit.append("auth_failure", principal, reason=reason, key_prefix=prefix)

    # -- writing --------------------------------------------------------------------------

    def _new_key(self, conn: sqlite3.Connection, name: str) -> str:
        secret = KEY_PREFIX + secrets.token_urlsafe(24)
        digest = hash_key(secret)
        conn.execute(
            "INSERT INTO api_keys (key_id, principal, sha256, prefix, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            ("key_" + digest[:12], name, digest, secret[:_DISPLAY], now()),
        )
        return secret

    def _taken(self, conn: sqlite3.Connection, name: str) -> str | None:
        if conn.execute("SELECT 1 FROM principals WHERE name = ?", (name,)).fetchone():
            return "principal"
        if conn.execute("SELECT 1 FROM roles WHERE name = ?", (name,)).fetchone():
            return "role"
        return None

    def create(
        self, name: str, kind: str = "user", roles: Iterable[str] = (), *, by: str | None = None
    ) -> tuple[Principal, str]:
        """Create a principal with one API key; return it and the key (shown once).

        Raises:
            UsageError: a bad name or kind, or the name is taken by a principal or role.
            NotFoundError: one of *roles* does not exist.
        """
        _check_name("principal", name)
        if kind not in PRINCIPAL_KINDS:
            raise UsageError(f"a principal's kind is one of {PRINCIPAL_KINDS}; found {kind!r}")
        roles = list(roles)
        with self.db.write() as conn:
            if (taken := self._taken(conn, name)) is not None:
                raise UsageError(f"there is already a {taken} called '{name}'")
            conn.execute(
                "INSERT INTO principals (name, kind, created_at, created_by) VALUES (?, ?, ?, ?)",
                (name, kind, now(), by),
            )
            for role in roles:
                self._check_role(conn, role)
                conn.execute("INSERT INTO memberships (role, member) VALUES (?, ?)", (role, name))
            secret = self._new_key(conn, name)
        self.audit.append(
            "principal", by, action="create", name=name, principal_kind=kind, roles=roles
        )
        return self.get(name), secret

    def _check_role(self, conn: sqlite3.Connection, role: str) -> None:
        if not conn.execute("SELECT 1 FROM roles WHERE name = ?", (role,)).fetchone():
            known = [r[0] for r in conn.execute("SELECT name FROM roles")]
            raise NotFoundError(f"no role '{role}'{did_you_mean(role, known)}")

    def disable(self, name: str, *, by: str | None = None) -> Principal:
        """Disable a principal: its keys stop working at once. Disabling twice is harmless."""
        self.get(name)
        with self.db.write() as conn:
            conn.execute(
                "UPDATE principals SET disabled_at = ? WHERE name = ? AND disabled_at IS NULL",
                (now(), name),
            )
        self.audit.append("principal", by, action="disable", name=name)
        return self.get(name)

    def enable(self, name: str, *, by: str | None = None) -> Principal:
        """Enable a disabled principal again (its unrevoked keys work again)."""
        self.get(name)
        with self.db.write() as conn:
            conn.execute("UPDATE principals SET disabled_at = NULL WHERE name = ?", (name,))
        self.audit.append("principal", by, action="enable", name=name)
        return self.get(name)

    def new_key(self, name: str, *, keep_old: bool = False, by: str | None = None) -> str:
        """A new API key for *name* (shown once); its older keys are revoked unless *keep_old*."""
        self.get(name)
        with self.db.write() as conn:
            if not keep_old:
                conn.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE principal = ? AND revoked_at IS NULL",
                    (now(), name),
                )
            secret = self._new_key(conn, name)
        self.audit.append(
            "principal",
            by,
            action="new_key",
            name=name,
            prefix=secret[:_DISPLAY],
            kept_old=keep_old,
        )
        return secret

    def create_role(self, name: str, *, by: str | None = None) -> None:
        """Create an empty role. Raises UsageError if the name is taken."""
        _check_name("role", name)
        with self.db.write() as conn:
            if (taken := self._taken(conn, name)) is not None:
                raise UsageError(f"there is already a {taken} called '{name}'")
            conn.execute(
                "INSERT INTO roles (name, created_at, created_by) VALUES (?, ?, ?)",
                (name, now(), by),
            )
        self.audit.append("principal", by, action="create_role", name=name)

    def grant_role(self, role: str, *, to: str, by: str | None = None) -> None:
        """Make *to* (a principal or a role) a member of *role*.

        Raises:
            NotFoundError: either name does not exist.
            UsageError: it would make a cycle (*role* is already inside *to*).
        """
        with self.db.write() as conn:
            self._check_role(conn, role)
            kind = self._taken(conn, to)
            if kind is None:
                known = self._names(conn) + [r[0] for r in conn.execute("SELECT name FROM roles")]
                raise NotFoundError(f"no principal or role '{to}'{did_you_mean(to, known)}")
            if kind == "role" and (to == role or to in self._closure(conn, role)):
                raise UsageError(
                    f"role '{to}' already contains '{role}'; granting it would make a cycle"
                )
            conn.execute(
                "INSERT OR IGNORE INTO memberships (role, member) VALUES (?, ?)", (role, to)
            )
        self.audit.append("principal", by, action="grant_role", role=role, to=to)

    def revoke_role(self, role: str, *, from_: str, by: str | None = None) -> None:
        """Remove *from_* from *role*'s members. Raises NotFoundError if it is not one."""
        with self.db.write() as conn:
            done = conn.execute(
                "DELETE FROM memberships WHERE role = ? AND member = ?", (role, from_)
            ).rowcount
        if not done:
            raise NotFoundError(f"'{from_}' is not a member of role '{role}'")
        self.audit.append("principal", by, action="revoke_role", role=role, name=from_)

    def bootstrap(self) -> tuple[Principal, str] | None:
        """Create the bootstrap admin (principal ``root`` holding role ``admin``) if the
        project has no administrator yet; return it and its key, which is also written to
        ``<data_dir>/govern/admin.key`` (mode 0600). None when an admin exists already."""
        if any(p.admin for p in self.list()):
            return None
        principal, secret = self.create(BOOTSTRAP_ADMIN, "user", [ADMIN_ROLE], by=None)
        if self.key_file is not None:
            tmp = self.key_file.with_suffix(".tmp")
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secret + "\n")
            os.replace(tmp, self.key_file)
        return principal, secret

    def local_admin(self) -> Principal:
        """Whom a command run with file-system access to the project acts as, without a key:
        the bootstrap admin (created now if the project has none)."""
        if not self.exists(BOOTSTRAP_ADMIN):
            self.bootstrap()
        if self.exists(BOOTSTRAP_ADMIN):
            return Principal(
                BOOTSTRAP_ADMIN, roles=self.get(BOOTSTRAP_ADMIN).roles | {ADMIN_ROLE}, admin=True
            )
        return Principal(BOOTSTRAP_ADMIN, roles=frozenset({ADMIN_ROLE}), admin=True)


def open_principals(project: Project) -> PrincipalStore:
    """The project's principals: ``<data_dir>/govern/policy.db``."""
    directory = govern_dir(project)
    return PrincipalStore(
        GovernDb.at(directory / "policy.db"), open_audit(project), directory / ADMIN_KEY_FILE
    )
