"""``fluvial init`` (bootstrap admin), ``principals``, ``roles`` and ``audit`` end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from fluvial.cli import main
from fluvial.govern.audit import open_audit
from fluvial.project import Project


def run(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> Any:
    capsys.readouterr()
    assert main([*args]) == code, capsys.readouterr()
    out = capsys.readouterr().out
    return json.loads(out) if "--json" in args and out.strip() else out


@pytest.fixture
def root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = run(capsys, "init", str(tmp_path / "p"))
    key = (tmp_path / "p" / "data" / "govern" / "admin.key").read_text().strip()
    assert key in out  # printed once at init, and kept in the owner-only file
    return tmp_path / "p"


def test_principals_roles_and_keys(
    root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    p = ("--project", str(root))
    assert run(capsys, "roles", "create", "analyst", *p, "--json") == {
        "name": "analyst",
        "members": [],
    }
    made = run(capsys, "principals", "create", "bob", "--role", "analyst", *p, "--json")
    assert made["roles"] == ["analyst"] and made["key"].startswith("fvk_")
    listed = run(capsys, "principals", "list", *p, "--json")
    assert [(x["name"], x["admin"]) for x in listed] == [("bob", False), ("root", True)]
    roles = run(capsys, "roles", "list", *p, "--json")
    assert {r["name"]: r["members"] for r in roles} == {"admin": ["root"], "analyst": ["bob"]}

    # bob's key may not create principals; the refusal names what is missing
    monkeypatch.setenv("FLUVIAL_API_KEY", made["key"])
    run(capsys, "principals", "create", "eve", *p, code=1)
    monkeypatch.setenv("FLUVIAL_API_KEY", "fvk_nope")
    run(capsys, "principals", "list", *p, "--json")  # listing needs no key
    run(capsys, "roles", "create", "x", *p, code=1)
    # the admin's key may
    monkeypatch.setenv("FLUVIAL_API_KEY", (root / "data/govern/admin.key").read_text().strip())
    rotated = run(capsys, "principals", "key", "bob", *p, "--json")["key"]
    assert rotated != made["key"]
    keys = run(capsys, "principals", "keys", "bob", *p, "--json")
    assert [k["revoked_at"] is None for k in keys] == [False, True]
    assert run(capsys, "principals", "disable", "bob", *p, "--json")["disabled"] is True
    monkeypatch.delenv("FLUVIAL_API_KEY")

    records = run(capsys, "audit", *p, "--json")
    assert [(r["kind"], r["principal"], r["data"].get("action")) for r in records] == [
        ("principal", None, "create"),  # the bootstrap admin, by fluvial init
        ("principal", "root", "create_role"),
        ("principal", "root", "create"),
        ("principal", "bob", "creating a principal"),  # refused: bob is no admin
        ("auth_failure", None, None),  # fvk_nope on roles create
        ("principal", "root", "new_key"),
        ("principal", "root", "disable"),
    ]
    assert (
        run(capsys, "audit", "--kind", "auth_failure", *p, "--json")[0]["data"]["reason"]
        == "unknown API key"
    )
    assert [
        r["seq"] for r in run(capsys, "audit", "--principal", "root", "--last", "2", *p, "--json")
    ] == [6, 7]
    assert run(capsys, "audit", "--since", "2999-01-01", *p, "--json") == []
    run(capsys, "audit", "--kind", "nope", *p, code=2)


def test_audit_verify_names_the_tampered_record(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = ("--project", str(root))
    run(capsys, "roles", "create", "analyst", *p)
    run(capsys, "roles", "create", "auditor", *p)
    assert run(capsys, "audit", "verify", *p, "--json")["ok"] is True
    assert run(capsys, "audit", *p, "verify", "--json")["records"] == 3  # -p before verify
    log = open_audit(Project(root))
    lines = log.path.read_bytes().splitlines(keepends=True)
    record = orjson.loads(lines[1])
    record["data"]["name"] = "superuser"
    lines[1] = orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n"
    log.path.write_bytes(b"".join(lines))
    result = run(capsys, "audit", "verify", *p, "--json", code=1)
    assert result["ok"] is False and result["problems"] == ["record 2: its content was edited"]
    assert "record 2: its content was edited" in run(capsys, "audit", "verify", *p, code=1)
