"""Write keys: created once, stored hashed, revoked, reloaded by a running store."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path

import pytest

from fluvial.cli import main
from fluvial.collector.keys import KeyStore
from fluvial.errors import AuthenticationError, NotFoundError, UsageError
from fluvial.project import Project


def test_create_stores_only_the_hash(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    key, secret = store.create("shop")
    assert re.fullmatch(r"fk_[A-Za-z0-9_-]{32}", secret)
    raw = (tmp_path / "keys.json").read_text()
    assert secret not in raw
    assert hashlib.sha256(secret.encode()).hexdigest() in raw
    assert stat.S_IMODE(os.stat(tmp_path / "keys.json").st_mode) == 0o600
    assert store.authenticate(secret) == key
    assert key.app_id == "shop" and secret.startswith(key.prefix)


def test_keys_are_distinct_and_bound_to_their_app(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    pairs = [store.create(app) for app in ("shop", "blog", "shop")]
    secrets_ = {s for _, s in pairs}
    assert len(secrets_) == 3
    for key, secret in pairs:
        assert store.authenticate(secret).app_id == key.app_id
    assert {k.key_id for k in store.list_keys()} == {k.key_id for k, _ in pairs}


@pytest.mark.parametrize("secret", [None, "", "fk_wrong", "Bearer"])
def test_missing_or_unknown_key_is_refused(tmp_path: Path, secret: str | None) -> None:
    store = KeyStore(tmp_path / "keys.json")
    store.create("shop")
    with pytest.raises(AuthenticationError):
        store.authenticate(secret)


def test_revocation_reaches_a_running_store_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    running = KeyStore(path, reload_interval=0.0)  # as a collector holds it
    admin = KeyStore(path)  # as `fluvial keys` opens it in another process
    key, secret = admin.create("shop")
    assert running.authenticate(secret).key_id == key.key_id  # picked up on reload
    admin.revoke(secret)
    with pytest.raises(AuthenticationError, match="revoked"):
        running.authenticate(secret)
    # revoking again is harmless and by id works too
    assert admin.revoke(key.key_id).revoked_at is not None


def test_reload_is_throttled(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    running = KeyStore(path, reload_interval=3600.0)
    _, secret = KeyStore(path).create("shop")
    with pytest.raises(AuthenticationError):  # the running store has not looked yet
        running.authenticate(secret)


def test_revoke_unknown_and_bad_app_id(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    key, _ = store.create("shop")
    with pytest.raises(NotFoundError, match="did you mean"):
        store.revoke(key.key_id[:-1] + "x")
    with pytest.raises(UsageError, match="app_id"):
        store.create("no spaces please")


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("{not json")
    with pytest.raises(UsageError, match="expected a keys file"):
        KeyStore(path)


def test_cli_create_list_revoke(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(project.root)
    assert main(["keys", "create", "shop", "--project", root]) == 0
    out = capsys.readouterr().out
    secret = re.search(r"fk_[A-Za-z0-9_-]{32}", out)
    assert secret is not None
    assert main(["keys", "list", "--json", "--project", root]) == 0
    listing = capsys.readouterr().out
    rows = json.loads(listing)
    assert [(r["app_id"], r["revoked"]) for r in rows] == [("shop", False)]
    assert secret.group(0) not in listing and "sha256" not in listing
    assert main(["keys", "revoke", secret.group(0), "--project", root]) == 0
    capsys.readouterr()
    assert main(["keys", "list", "--json", "--project", root]) == 0
    assert json.loads(capsys.readouterr().out)[0]["revoked"] is True
    assert main(["keys", "revoke", "key_nope", "--project", root]) == 1
    assert "no write key" in capsys.readouterr().err
