"""Every reading path goes through the enforcement point with real principals and policies:
``fluvial sql`` as FLUVIAL_API_KEY's principal or ``--as NAME``, and ``POST /api/sql``
as the bearer of ``Authorization: Bearer <key>``."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fluvial.cli import main
from fluvial.errors import SqlError
from fluvial.govern.audit import open_audit
from fluvial.govern.model import Mask
from fluvial.govern.policy import open_policy
from fluvial.govern.principals import BOOTSTRAP_ADMIN, open_principals
from fluvial.project import Project

from .world import Governed, governed_world  # noqa: F401

with warnings.catch_warnings():  # Starlette's test client asks for httpx2; httpx works
    warnings.filterwarnings("ignore", message="Using `httpx` with")
    from fastapi.testclient import TestClient


@dataclass
class Keys:
    analyst: str
    admin: str
    salt: str


@pytest.fixture(scope="module")
def keys(governed: Governed) -> Keys:
    """Role ``clerk``: curated.dim_users without phone, email hashed, rows of DE only."""
    project = governed.project
    store = open_principals(project)
    made = store.bootstrap()
    admin = made[1] if made else store.new_key(BOOTSTRAP_ADMIN, keep_old=True)
    policy = open_policy(project)
    store.create_role("clerk")
    _, analyst = store.create("cleo", roles=["clerk"])
    policy.grant(["SELECT"], on="curated.dim_users", to="clerk")
    policy.set_filter("de_only", "clerk", "curated.dim_users", "country = 'DE'", exclude=["phone"])
    policy.set_mask("clerk", "curated.dim_users", "email", Mask("hash"))
    return Keys(analyst, admin, policy.salt)


def _view(governed: Governed, salt: str) -> list[dict[str, Any]]:
    rows = governed.reference(
        f"SELECT user_id, sha256('{salt}' || email) AS email, country, age FROM users "
        "WHERE country = 'DE'"
    )
    names = ("user_id", "email", "country", "age")
    return sorted((dict(zip(names, r, strict=True)) for r in rows), key=lambda r: r["user_id"])


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


QUERY = "SELECT * FROM curated.dim_users ORDER BY user_id"


def test_cli_acts_as_the_key_holder(
    governed: Governed,
    keys: Keys,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLUVIAL_API_KEY", keys.analyst)
    root = str(governed.project.root)
    code, out, _ = _cli(capsys, "sql", QUERY, "--format", "json", "--project", root)
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == _view(governed, keys.salt)
    assert list(open_audit(governed.project).records())[-1].principal == "cleo"
    code, _, err = _cli(capsys, "sql", "SELECT phone FROM curated.dim_users", "--project", root)
    assert code == 1
    assert "permission denied: column curated.dim_users.phone" in err and "role clerk" in err
    code, _, err = _cli(capsys, "sql", QUERY, "--as", "root", "--project", root)
    assert code == 1 and "--as root needs the admin role, which cleo does not hold" in err


def test_cli_admin_acts_as_another_principal(
    governed: Governed,
    keys: Keys,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FLUVIAL_API_KEY", raising=False)
    root = str(governed.project.root)
    code, out, _ = _cli(capsys, "sql", QUERY, "-f", "json", "--as", "cleo", "--project", root)
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == _view(governed, keys.salt)
    assert list(open_audit(governed.project).records())[-1].principal == "cleo"
    # without a key and without --as: the local bootstrap admin, who reads everything
    code, out, _ = _cli(
        capsys,
        "sql",
        "SELECT count(*) AS n FROM curated.dim_users",
        "-f",
        "json",
        "--project",
        root,
    )
    assert code == 0 and json.loads(out) == {"n": governed.users.num_rows}
    assert list(open_audit(governed.project).records())[-1].principal == BOOTSTRAP_ADMIN
    code, _, err = _cli(capsys, "sql", QUERY, "--as", "nobody", "--project", root)
    assert code == 1 and "nobody" in err


def test_cli_row_limit(
    governed: Governed,
    keys: Keys,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLUVIAL_API_KEY", keys.analyst)
    root = str(governed.project.root)
    code, out, err = _cli(capsys, "sql", QUERY, "-f", "csv", "--limit", "3", "--project", root)
    assert code == 0 and len(out.splitlines()) == 1 + 3 and "only the first 3 rows" in err


def _api(project: Project, env: dict[str, str] | None = None, key: str | None = None) -> TestClient:
    from fluvial.serve.api import create_api

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return TestClient(create_api(Project(project.root, env=env)), headers=headers)


def test_api_runs_sql_as_the_bearer(governed: Governed, keys: Keys) -> None:
    with _api(governed.project, key=keys.analyst) as client:
        res = client.post("/api/sql", json={"sql": QUERY})
        assert res.status_code == 200, res.text
        body = res.json()
        names = [c["name"] for c in body["columns"]]
        assert [dict(zip(names, r, strict=True)) for r in body["rows"]] == _view(
            governed, keys.salt
        )
        assert list(open_audit(governed.project).records())[-1].principal == "cleo"
        res = client.post("/api/sql", json={"sql": "SELECT max(phone) FROM curated.dim_users"})
        assert res.status_code == 403 and res.json()["error"] == "PermissionDeniedError"
        assert "column curated.dim_users.phone" in res.json()["message"]
    with _api(governed.project, key=keys.admin) as client:
        res = client.post("/api/sql", json={"sql": "SELECT count(phone) FROM curated.dim_users"})
        assert res.status_code == 200 and res.json()["rows"] == [[governed.users.num_rows]]


def test_api_refuses_missing_and_unknown_keys(governed: Governed, keys: Keys) -> None:
    audit = open_audit(governed.project)
    for key in (None, "fvk_not-a-key", keys.analyst[:-2] + "xx"):
        before = len(list(audit.records(kind="auth_failure")))
        with _api(governed.project, key=key) as client:
            res = client.post("/api/sql", json={"sql": "SELECT 1"})
        assert res.status_code == 401 and res.json()["error"] == "AuthenticationError"
        assert len(list(audit.records(kind="auth_failure"))) == before + 1


def test_api_without_require_auth_is_the_local_admin(governed: Governed, keys: Keys) -> None:
    env = {"FLUVIAL_GOVERN__REQUIRE_AUTH": "false"}
    with _api(governed.project, env=env) as client:
        res = client.post("/api/sql", json={"sql": "SELECT count(phone) FROM curated.dim_users"})
        assert res.status_code == 200 and res.json()["rows"] == [[governed.users.num_rows]]
    with _api(governed.project, env=env, key=keys.analyst) as client:  # a key still counts
        res = client.post("/api/sql", json={"sql": "SELECT count(*) FROM curated.dim_users"})
        assert res.json()["rows"] == [[len(_view(governed, keys.salt))]]


@pytest.mark.parametrize(
    "path", ["/api/lake/tables", "/api/store", "/api/pipelines", "/api/alerts/rules"]
)
def test_every_api_route_needs_a_key(governed: Governed, keys: Keys, path: str) -> None:
    with _api(governed.project) as client:
        res = client.get(path)
        assert res.status_code == 401 and "missing API key" in res.json()["message"]
        assert client.get("/api/health").status_code == 200  # liveness probes need no key
    with _api(governed.project, key=keys.analyst) as client:
        assert client.get(path).status_code == 200


def test_warehouse_marts_are_governed_too(tmp_path: Path) -> None:
    import duckdb

    from fluvial.batch.warehouse import warehouse_path
    from fluvial.errors import PermissionDeniedError
    from fluvial.govern import run_governed

    project = Project.init(tmp_path / "p")
    path = warehouse_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA marts")
    con.execute(
        "CREATE TABLE marts.daily AS SELECT range AS day, range * 2 AS n, 'x' || range AS note "
        "FROM range(5)"
    )
    con.close()
    store = open_principals(project)
    store.create_role("analyst")
    store.create("bob", roles=["analyst"])
    policy = open_policy(project)
    policy.grant(["SELECT"], on="marts.daily", to="analyst")
    policy.set_filter("early", "analyst", "marts.daily", "day < 3", exclude=["note"])
    bob = store.get("bob")
    result = run_governed(project, bob, "SELECT * FROM marts.daily ORDER BY day")
    assert result.table.to_pylist() == [{"day": d, "n": 2 * d} for d in range(3)]
    with pytest.raises(PermissionDeniedError, match=r"column marts\.daily\.note \(no grant\)"):
        run_governed(project, bob, "SELECT note FROM marts.daily")
    # the attached warehouse is reachable only through the governed view
    with pytest.raises(SqlError, match=r"lake tables are named zone\.table"):
        run_governed(project, bob, "SELECT * FROM warehouse.marts.daily")
