"""The policy store behind the real enforcement point: what a principal's query returns is
what independent DuckDB SQL over the same rows says its grants, filters and masks allow."""

from __future__ import annotations

import hashlib

import duckdb
import pytest

from fluvial.errors import PermissionDeniedError
from fluvial.govern.enforce import run_governed
from fluvial.govern.model import Mask
from fluvial.govern.policy import PolicyStore
from fluvial.project import Project

from .conftest import USERS

T = "curated.dim_users"


def reference(sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect()
    con.register("users", USERS.select(["user_id", "email", "phone", "country"]))
    return con.execute(sql).fetchall()


def test_grants_tags_filters_and_masks_end_to_end(governed: Project, policy: PolicyStore) -> None:
    people = policy.principals
    for role in ("analyst", "support"):
        people.create_role(role)
    ann, _ = people.create("ann", roles=["analyst"])
    sam, _ = people.create("sam", roles=["support"])
    eve, _ = people.create("eve")
    policy.tag(T, "phone", key="pii", value="phone")
    policy.tag(T, "email", key="pii", value="email")
    policy.grant_on_tags("pii!=*", "SELECT", to="analyst")
    policy.grant("SELECT", on=T, to="analyst", columns=["email"])
    policy.set_filter("de_only", "analyst", T, "country = 'DE'")
    policy.set_mask("analyst", T, "email", Mask("hash"))
    policy.grant("SELECT", on=T, to="support")
    policy.set_mask("support", T, "phone", Mask("partial", keep_last=3))

    got = run_governed(governed, ann, f"SELECT user_id, email FROM {T} ORDER BY user_id")
    salt = policy.salt
    assert got.table.to_pylist() == [
        {
            "user_id": uid,
            "email": None if email is None else hashlib.sha256((salt + email).encode()).hexdigest(),
        }
        for uid, email in reference(
            "SELECT user_id, email FROM users WHERE country = 'DE' ORDER BY user_id"
        )
    ]
    with pytest.raises(PermissionDeniedError, match="phone"):
        run_governed(governed, ann, f"SELECT phone FROM {T}")

    got = run_governed(governed, sam, f"SELECT user_id, phone FROM {T} ORDER BY user_id")
    expected = reference(
        "SELECT user_id, CASE WHEN phone IS NULL THEN NULL ELSE "
        "repeat('*', length(phone) - 3) || right(phone, 3) END FROM users ORDER BY user_id"
    )
    assert [tuple(r.values()) for r in got.table.to_pylist()] == expected

    with pytest.raises(
        PermissionDeniedError, match=r"no SELECT on table curated\.dim_users for principal eve"
    ):
        run_governed(governed, eve, f"SELECT count(*) FROM {T}")
