"""Principals, API keys (hashed at rest), disabling, transitive roles, and their audit trail."""

from __future__ import annotations

import sqlite3

import pytest

from fluvial.errors import AuthenticationError, NotFoundError, UsageError
from fluvial.govern.audit import open_audit
from fluvial.govern.principals import (
    ADMIN_ROLE,
    BOOTSTRAP_ADMIN,
    PrincipalStore,
    hash_key,
    open_principals,
)
from fluvial.project import Project


@pytest.fixture
def store(project: Project) -> PrincipalStore:
    return open_principals(project)


def test_key_is_shown_once_and_stored_only_as_its_hash(store: PrincipalStore) -> None:
    principal, secret = store.create("alice", "user")
    assert secret.startswith("fvk_") and len(secret) == 36
    assert store.authenticate(secret) == principal
    raw = store.db.path.read_bytes()
    for suffix in ("-wal", "-shm"):
        wal = store.db.path.with_name(store.db.path.name + suffix)
        raw += wal.read_bytes() if wal.exists() else b""
    assert secret.encode() not in raw and secret[4:].encode() not in raw
    with sqlite3.connect(store.db.path) as conn:
        hashes = [r[0] for r in conn.execute("SELECT sha256 FROM api_keys")]
    assert hashes == [hash_key(secret)]
    assert store.db.path.stat().st_mode & 0o077 == 0  # owner only
    assert store.db.path.parent.stat().st_mode & 0o777 == 0o700


def test_names_are_checked_and_unique_across_principals_and_roles(store: PrincipalStore) -> None:
    store.create("alice")
    with pytest.raises(UsageError, match="already a principal called 'alice'"):
        store.create("alice")
    with pytest.raises(UsageError, match="already a principal called 'alice'"):
        store.create_role("alice")
    with pytest.raises(UsageError, match="already a role called 'admin'"):
        store.create("admin")
    with pytest.raises(UsageError, match="1-64 letters"):
        store.create("bad name")
    with pytest.raises(UsageError, match="kind"):
        store.create("svc", kind="robot")


def test_get_suggests_a_close_name(store: PrincipalStore) -> None:
    store.create("alice")
    with pytest.raises(NotFoundError, match="did you mean 'alice'"):
        store.get("alcie")


def test_unknown_missing_revoked_and_disabled_keys_are_refused_and_audited(
    project: Project, store: PrincipalStore
) -> None:
    _, secret = store.create("bob")
    with pytest.raises(AuthenticationError, match="missing API key"):
        store.authenticate("")
    with pytest.raises(AuthenticationError, match="unknown API key fvk_"):
        store.authenticate("fvk_" + "x" * 32)
    new = store.new_key("bob")
    with pytest.raises(AuthenticationError, match="was revoked"):
        store.authenticate(secret)
    assert store.authenticate(new).name == "bob"
    store.disable("bob")
    with pytest.raises(AuthenticationError, match="principal bob is disabled"):
        store.authenticate(new)
    store.enable("bob")
    assert store.authenticate(new).name == "bob"
    failures = list(open_audit(project).records(kind="auth_failure"))
    assert [r.data["reason"] for r in failures] == [
        "missing API key",
        "unknown API key",
        "revoked API key",
        "principal disabled",
    ]
    assert [r.principal for r in failures] == [None, None, "bob", "bob"]
    log_text = open_audit(project).path.read_text()
    assert secret not in log_text and new not in log_text  # only display prefixes
    assert open_audit(project).verify().ok


def test_new_key_can_keep_the_old_one(store: PrincipalStore) -> None:
    _, first = store.create("svc", "service")
    second = store.new_key("svc", keep_old=True)
    assert store.authenticate(first).name == store.authenticate(second).name == "svc"
    assert [k["revoked_at"] for k in store.keys("svc")] == [None, None]


def test_roles_are_transitive_and_cycles_are_refused(store: PrincipalStore) -> None:
    for role in ("staff", "analyst", "senior"):
        store.create_role(role)
    store.grant_role("staff", to="analyst")
    store.grant_role("analyst", to="senior")
    principal, _ = store.create("carol", roles=["senior"])
    assert principal.roles == {"senior", "analyst", "staff"} and not principal.admin
    with pytest.raises(UsageError, match="cycle"):
        store.grant_role("senior", to="staff")
    with pytest.raises(UsageError, match="cycle"):
        store.grant_role("staff", to="staff")
    with pytest.raises(NotFoundError, match="no role 'analyts'; did you mean 'analyst'"):
        store.grant_role("analyts", to="carol")
    store.revoke_role("analyst", from_="senior")
    assert store.get("carol").roles == {"senior"}
    with pytest.raises(NotFoundError, match="not a member"):
        store.revoke_role("analyst", from_="senior")


def test_admin_through_a_nested_role(store: PrincipalStore) -> None:
    store.create_role("ops")
    store.grant_role(ADMIN_ROLE, to="ops")
    principal, _ = store.create("dana", roles=["ops"])
    assert principal.admin and principal.roles == {"ops", "admin"}


def test_bootstrap_admin_and_key_file(project: Project, store: PrincipalStore) -> None:
    made = store.bootstrap()
    assert made is not None
    admin, secret = made
    assert admin.name == BOOTSTRAP_ADMIN and admin.admin
    assert store.key_file is not None
    assert store.key_file.read_text().strip() == secret
    assert store.key_file.stat().st_mode & 0o777 == 0o600
    assert store.authenticate(secret).admin
    assert store.bootstrap() is None  # an admin exists: nothing to do
    assert store.local_admin().admin


def test_every_change_is_audited_with_who_did_it(project: Project, store: PrincipalStore) -> None:
    store.create_role("analyst", by="root")
    store.create("erin", roles=["analyst"], by="root")
    store.grant_role("analyst", to="erin", by="root")
    store.new_key("erin", by="root")
    store.disable("erin", by="root")
    records = list(open_audit(project).records(kind="principal"))
    assert [(r.principal, r.data["action"]) for r in records] == [
        ("root", "create_role"),
        ("root", "create"),
        ("root", "grant_role"),
        ("root", "new_key"),
        ("root", "disable"),
    ]


def test_two_stores_share_one_database(project: Project) -> None:
    first, second = open_principals(project), open_principals(project)
    _, secret = first.create("frank")
    assert second.authenticate(secret).name == "frank"
    second.disable("frank")
    assert first.get("frank").disabled


def test_govern_folder_is_closed_even_when_the_audit_log_made_it(project: Project) -> None:
    open_audit(project).append("query", "x", sql="SELECT 1")  # makes the folder, 0755
    folder = project.data_dir / "govern"
    assert folder.stat().st_mode & 0o077
    open_principals(project)
    assert folder.stat().st_mode & 0o777 == 0o700
