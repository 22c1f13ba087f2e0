"""``fluvial grant|revoke|tags|filters|masks|policy`` end to end, with --json."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fluvial.cli import main
from fluvial.govern.audit import open_audit
from fluvial.govern.principals import open_principals
from fluvial.project import Project

T = "curated.dim_users"


def run(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> Any:
    capsys.readouterr()
    got = main([*args])
    captured = capsys.readouterr()
    assert got == code, captured
    if code != 0:
        return captured.err
    return json.loads(captured.out) if "--json" in args else captured.out


def test_policy_commands_end_to_end(
    governed: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    p = ("--project", str(governed.root))
    store = open_principals(governed)
    store.create_role("analyst")
    _, bob_key = store.create("bob", roles=["analyst"])
    store.create("carol")

    made = run(capsys, "grant", "SELECT,DESCRIBE", "ON", T, "TO", "analyst", *p, "--json")
    assert [(g["privilege"], g["object"], g["grantee_kind"]) for g in made] == [
        ("DESCRIBE", T, "role"),
        ("SELECT", T, "role"),
    ]
    run(capsys, "grant", "SELECT", "ON", T, "TO", "bob", "--with-grant-option", *p)
    run(capsys, "tags", "set", f"{T}.email", "pii=email", *p, "--json")
    run(capsys, "tags", "set", f"{T}.phone", "pii=phone", *p)
    assert run(capsys, "tags", "list", T, *p, "--json") == [
        {"object": f"{T}.email", "key": "pii", "value": "email"},
        {"object": f"{T}.phone", "key": "pii", "value": "phone"},
    ]
    run(capsys, "tags", "grant", "pii!=*", "SELECT", "TO", "carol", *p, "--json")
    filt = run(
        capsys, "filters", "set", "de_only", "--role", "analyst", "--table", T,
        "--where", "country='DE'", "--exclude", "phone", *p, "--json",
    )  # fmt: skip
    assert filt["row_filter"] == "country = 'DE'" and filt["exclude"] == ["phone"]
    run(capsys, "masks", "set", "analyst", T, "email", "partial", "--keep-last", "3", *p, "--json")

    # bob: his own unfiltered grant wins the rows; the mask comes from analyst's filtered
    # slice only, so his own unmasked grant shows email in clear
    bob = run(capsys, "policy", "explain", "bob", T, *p, "--json")
    assert bob["row_filter"] is None and bob["masks"] == {}
    assert bob["sources"]["email"] == f"grant SELECT on {T} to bob"
    carol = run(capsys, "policy", "explain", "carol", T, *p, "--json")
    assert carol["columns"] == ["user_id", "country", "signup_at"]
    assert carol["denied"] == {"email": "tag pii=email", "phone": "tag pii=phone"}
    text = run(capsys, "policy", "explain", "carol", T, *p)
    assert "tag pii=email" in text and "every row" in text

    # acting as bob (grant option on SELECT only)
    monkeypatch.setenv("FLUVIAL_API_KEY", bob_key)
    run(capsys, "grant", "SELECT", "ON", T, "TO", "carol", "--columns", "email", *p)
    err = run(capsys, "grant", "DROP", "ON", T, "TO", "carol", *p, code=1)
    assert "bob may not grant DROP on curated.dim_users" in err
    err = run(capsys, "masks", "drop", "analyst", T, "email", *p, code=1)
    assert "needs the admin role" in err
    monkeypatch.delenv("FLUVIAL_API_KEY")
    assert "email" in run(capsys, "policy", "explain", "carol", T, *p, "--json")["columns"]

    listed = run(capsys, "policy", "grants", "--grantee", "carol", *p, "--json")
    assert [(g["object"], g["granted_by"]) for g in listed] == [(f"{T}.email", "bob")]
    assert run(capsys, "filters", "list", "--table", T, *p, "--json")[0]["name"] == "de_only"
    assert run(capsys, "masks", "list", *p, "--json") == [
        {"grantee": "analyst", "table": T, "column": "email", "mask": "partial", "keep_last": 3}
    ]
    assert run(capsys, "tags", "grants", *p, "--json")[0]["expression"] == "pii != *"
    run(capsys, "revoke", "SELECT", "ON", T, "FROM", "carol", "--columns", "email", *p)
    run(capsys, "tags", "revoke", "pii!=*", "SELECT", "FROM", "carol", *p)
    run(capsys, "filters", "drop", "de_only", *p)
    run(capsys, "masks", "drop", "analyst", T, "email", *p)
    run(capsys, "tags", "unset", f"{T}.email", "pii", *p)
    assert run(capsys, "policy", "explain", "carol", T, *p, "--json")["columns"] == []

    # usage errors are one line, exit 2
    assert "expected 'TO'" in run(capsys, "grant", "SELECT", "ON", T, "FOR", "bob", *p, code=2)
    assert "unknown privilege" in run(capsys, "grant", "READ", "ON", T, "TO", "bob", *p, code=2)
    assert "mask is one of" in run(
        capsys, "masks", "set", "analyst", T, "email", "blur", *p, code=2
    )
    assert "column 1" in run(capsys, "tags", "grant", "=x", "SELECT", "TO", "bob", *p, code=2)

    records = list(open_audit(governed).records(kind="policy"))
    assert [(r.data["action"], r.data.get("decision", "allow")) for r in records] == [
        ("grant", "allow"), ("grant", "allow"), ("tag", "allow"), ("tag", "allow"),
        ("grant_on_tags", "allow"), ("set_filter", "allow"), ("set_mask", "allow"),
        ("grant", "allow"), ("grant", "deny"), ("drop_mask", "deny"), ("revoke", "allow"),
        ("revoke_on_tags", "allow"), ("drop_filter", "allow"), ("drop_mask", "allow"),
        ("untag", "allow"),
    ]  # fmt: skip
    assert "bob may not grant DROP" in records[8].data["reason"]
    by = {r.principal for r in open_audit(governed).records(kind="policy")}
    assert by == {"root", "bob"}
