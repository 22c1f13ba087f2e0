"""Grants, tags, tag grants, filters and masks resolve to the TableAccess the ADR describes.

Where an access decision has a visible effect on data (row filters, masks), the test runs
the TableAccess over the real table's rows in DuckDB and compares with hand-computed rows.
"""

from __future__ import annotations

import hashlib
from typing import Any

import duckdb
import pytest

from fluvial.errors import NotFoundError, PermissionDeniedError, UsageError
from fluvial.govern.audit import open_audit
from fluvial.govern.model import Mask, Principal, TableAccess
from fluvial.govern.policy import PolicyStore
from fluvial.govern.principals import open_principals
from fluvial.project import Project

from .conftest import COLUMNS, USERS

T = "curated.dim_users"


def apply(access: TableAccess, salt: str) -> list[tuple[Any, ...]]:
    """What a principal with *access* reads of USERS (ordered by user_id), via DuckDB."""
    con = duckdb.connect()
    con.register("t", USERS)
    select = ", ".join(
        access.masks[c].sql(f'"{c}"', salt=salt) if c in access.masks else f'"{c}"'
        for c in access.columns
    )
    where = f" WHERE {access.row_filter}" if access.row_filter else ""
    result = con.execute(f"SELECT {select} FROM t{where} ORDER BY user_id").to_arrow_table()
    return list(zip(*(col.to_pylist() for col in result.columns), strict=True))


def who(policy: PolicyStore, name: str, *roles: str) -> Principal:
    store = policy.principals
    for role in roles:
        if role not in store.role_names():
            store.create_role(role)
    store.create(name, roles=roles)
    return store.get(name)


def test_admin_reads_everything(policy: PolicyStore) -> None:
    root = policy.principals.local_admin()
    access = policy.access(root, T, COLUMNS)
    assert access.columns == tuple(COLUMNS) and access.row_filter is None and not access.masks


def test_no_grant_is_refused_by_name(policy: PolicyStore) -> None:
    bob = who(policy, "bob")
    with pytest.raises(
        PermissionDeniedError, match=r"no SELECT on table raw.events for principal bob"
    ):
        policy.access(bob, "raw.events", ["event_id", "at"])
    assert policy.explain(bob, T).columns == ()  # explain answers, never raises


def test_grants_union_over_principal_and_transitive_roles(policy: PolicyStore) -> None:
    bob = who(policy, "bob", "analyst")
    policy.principals.create_role("staff")
    policy.principals.grant_role("staff", to="analyst")
    policy.grant("SELECT", on=T, to="staff", columns=["user_id", "country"])
    policy.grant("SELECT", on=T, to="bob", columns=["signup_at"])
    access = policy.access(policy.principals.get("bob"), T, COLUMNS)
    assert access.columns == ("user_id", "country", "signup_at")
    assert access.denied == {"email": "no grant", "phone": "no grant"}
    assert access.sources["country"] == f"grant SELECT on {T}.country to staff"
    assert access.sources["signup_at"] == f"grant SELECT on {T}.signup_at to bob"
    # a role can be explained too: what any holder of it reads
    assert policy.explain("analyst", T).columns == ("user_id", "country")
    assert policy.explain("admin", T).columns == tuple(COLUMNS)
    assert bob.roles == {"analyst"}  # the Principal was read before staff was granted


def test_namespace_grant_covers_every_table(policy: PolicyStore) -> None:
    bob = who(policy, "bob")
    policy.grant(["SELECT", "DESCRIBE"], on="curated", to="bob")
    assert policy.access(bob, T, COLUMNS).columns == tuple(COLUMNS)
    assert policy.privileges(bob, T) == {"SELECT", "DESCRIBE"}
    assert policy.privileges(bob, f"{T}.email") == {"SELECT", "DESCRIBE"}
    assert policy.privileges(bob, "raw.events") == set()
    with pytest.raises(
        PermissionDeniedError, match=r"no DROP on table curated.dim_users for principal bob"
    ):
        policy.check(bob, "DROP", T)


def test_tags_and_tag_grants(policy: PolicyStore) -> None:
    bob = who(policy, "bob", "analyst")
    policy.tag("curated", key="domain", value="customers")
    policy.tag(T, "email", key="pii", value="email")
    policy.tag(T, "phone", key="pii", value="phone")
    policy.grant_on_tags("domain=customers AND pii!=*", "SELECT", to="analyst")
    access = policy.access(bob, T, COLUMNS)
    assert access.columns == ("user_id", "country", "signup_at")
    assert access.denied == {
        "email": "tag domain=customers, pii=email",
        "phone": "tag domain=customers, pii=phone",
    }
    assert (
        access.sources["user_id"]
        == "tag grant SELECT on domain = 'customers' AND pii != * to analyst"
    )
    # a second tag grant adds email only
    policy.grant_on_tags("pii IN (email)", "SELECT", to="bob")
    assert policy.access(bob, T, COLUMNS).denied == {"phone": "tag domain=customers, pii=phone"}
    # a column's own tag overrides the same key inherited from its table or namespace
    policy.tag(T, "country", key="domain", value="geo")
    assert "country" not in policy.access(bob, T, COLUMNS).columns
    # tags reach the privileges check at the level they are on
    assert policy.privileges(bob, T) == {"SELECT"}
    assert policy.privileges(bob, f"{T}.phone") == set()
    assert [(t.object, t.key) for t in policy.tags(T)] == [
        (f"{T}.country", "domain"),
        (f"{T}.email", "pii"),
        (f"{T}.phone", "pii"),
    ]
    policy.untag(T, "country", key="domain")
    assert "country" in policy.access(bob, T, COLUMNS).columns
    with pytest.raises(NotFoundError, match="has no tag 'domain'"):
        policy.untag(T, "country", key="domain")
    assert policy.revoke_on_tags("pii IN (email)", "SELECT", from_="bob") == 1
    assert "email" not in policy.access(bob, T, COLUMNS).columns


def test_row_filter_and_column_subset(policy: PolicyStore) -> None:
    bob = who(policy, "bob", "analyst")
    policy.grant("SELECT", on=T, to="analyst")
    policy.set_filter("de_only", "analyst", T, "country = 'DE'", exclude=["phone"])
    access = policy.access(bob, T, COLUMNS)
    assert access.row_filter == "country = 'DE'"
    assert access.columns == ("user_id", "email", "country", "signup_at")
    assert access.denied == {"phone": "no grant"}
    assert access.sources["filter"] == "filter de_only for analyst: country = 'DE'"
    assert access.sources["email"] == f"grant SELECT on {T} to analyst through filter de_only"
    assert [r[0] for r in apply(access, policy.salt)] == ["u1", "u3"]
    # a second filter of the same grantee adds rows (OR); columns stay those both give
    policy.set_filter("us_only", "analyst", T, "country = 'US'", include=["user_id", "country"])
    access = policy.access(bob, T, COLUMNS)
    assert access.row_filter == "(country = 'DE') OR (country = 'US')"
    assert access.columns == ("user_id", "country")
    assert access.denied["email"] == "readable only on the rows of filter de_only"
    assert apply(access, policy.salt) == [("u1", "DE"), ("u3", "DE"), ("u4", "US")]
    policy.drop_filter("us_only")
    assert policy.access(bob, T, COLUMNS).row_filter == "country = 'DE'"
    assert [f.name for f in policy.filters(T)] == ["de_only"]


def test_unfiltered_grant_from_another_role_wins_rows_but_not_filtered_columns(
    policy: PolicyStore,
) -> None:
    carol = who(policy, "carol", "analyst", "support")
    policy.grant("SELECT", on=T, to="analyst")
    policy.set_filter("de_only", "analyst", T, "country = 'DE'")
    policy.grant("SELECT", on=T, to="support", columns=["user_id", "country"])
    access = policy.access(carol, T, COLUMNS)
    assert access.row_filter is None  # support sees every row of its two columns
    assert access.columns == ("user_id", "country")
    # email was granted to analyst for German rows only: never shown on the others
    assert access.denied["email"] == "readable only on the rows of filter de_only"
    assert len(apply(access, policy.salt)) == 4


def test_masks_resolve_and_apply(policy: PolicyStore) -> None:
    bob = who(policy, "bob", "analyst")
    policy.grant("SELECT", on=T, to="analyst")
    policy.set_mask("analyst", T, "email", Mask("hash"))
    policy.set_mask("analyst", T, "phone", Mask("partial", keep_last=3))
    access = policy.access(bob, T, COLUMNS)
    assert access.masks == {"email": Mask("hash"), "phone": Mask("partial", keep_last=3)}
    assert access.sources["mask:email"] == "mask hash on email for analyst"
    rows = {r[0]: r for r in apply(access, policy.salt)}
    salted = hashlib.sha256((policy.salt + "ann@example.com").encode()).hexdigest()
    assert rows["u1"][1] == salted and rows["u3"][1] is None  # NULL stays NULL
    assert rows["u2"][2] == "*********678" and rows["u4"][2] is None
    assert [m.column for m in policy.masks(T)] == ["email", "phone"]
    policy.drop_mask("analyst", T, "phone")
    assert set(policy.access(bob, T, COLUMNS).masks) == {"email"}


def test_masks_combine_least_restrictive_unfiltered_most_restrictive_filtered(
    policy: PolicyStore,
) -> None:
    dana = who(policy, "dana", "a", "b")
    policy.grant("SELECT", on=T, to="a")
    policy.grant("SELECT", on=T, to="b")
    policy.set_mask("a", T, "email", Mask("redact"))
    policy.set_mask("b", T, "email", Mask("partial", keep_last=4))
    assert policy.access(dana, T, COLUMNS).masks == {"email": Mask("partial", keep_last=4)}
    policy.principals.create_role("c")
    policy.principals.grant_role("c", to="dana")
    policy.grant("SELECT", on=T, to="c")
    dana = policy.principals.get("dana")
    assert policy.access(dana, T, COLUMNS).masks == {}  # c sees email in clear, every row
    # filtered only: each row may come from either slice, so the stricter mask holds
    policy.set_filter("fa", "a", T, "country = 'DE'")
    policy.set_filter("fb", "b", T, "country = 'FR'")
    policy.revoke("SELECT", on=T, from_="c")
    assert policy.access(dana, T, COLUMNS).masks == {"email": Mask("redact")}


def test_grant_option_is_enforced(policy: PolicyStore) -> None:
    bob = who(policy, "bob")
    carol = who(policy, "carol")
    policy.grant(["SELECT", "DESCRIBE"], on=T, to="bob", grant_option=True)
    policy.grant("INSERT", on=T, to="bob")
    assert policy.grantable(bob, T) == {"SELECT", "DESCRIBE"}
    policy.grant("SELECT", on=T, to="carol", columns=["user_id"], by=bob)  # onward, narrower
    assert policy.access(carol, T, COLUMNS).columns == ("user_id",)
    with pytest.raises(
        PermissionDeniedError, match=r"bob may not grant INSERT on curated.dim_users"
    ):
        policy.grant("INSERT", on=T, to="carol", by=bob)
    with pytest.raises(PermissionDeniedError, match="bob may not grant SELECT on curated"):
        policy.grant("SELECT", on="curated", to="carol", by=bob)
    with pytest.raises(PermissionDeniedError, match="carol may not grant SELECT"):
        policy.grant("SELECT", on=T, to="bob", columns=["user_id"], by=carol)
    with pytest.raises(PermissionDeniedError, match="needs the admin role"):
        policy.tag(T, key="domain", value="x", by=bob)
    with pytest.raises(PermissionDeniedError, match="needs the admin role"):
        policy.set_mask("carol", T, "email", Mask("redact"), by=bob)
    policy.revoke("SELECT", on=T, from_="carol", columns=["user_id"], by=bob)
    with pytest.raises(PermissionDeniedError):
        policy.access(carol, T, COLUMNS)
    policy.revoke(["SELECT", "DESCRIBE"], on=T, from_="bob", grant_option_only=True)
    assert policy.grantable(bob, T) == set() and policy.privileges(bob, T) >= {"SELECT"}
    with pytest.raises(PermissionDeniedError, match="bob may not revoke SELECT"):
        policy.revoke("SELECT", on=T, from_="bob", by=bob)
    denied = [
        (r.principal, r.data["action"])
        for r in policy.audit.records(kind="policy")
        if r.data.get("decision") == "deny"
    ]
    assert denied == [
        ("bob", "grant"),
        ("bob", "grant"),
        ("carol", "grant"),
        ("bob", "tag"),
        ("bob", "set_mask"),
        ("bob", "revoke"),
    ]


def test_grants_listing_names_grantee_kinds(policy: PolicyStore) -> None:
    who(policy, "bob", "analyst")
    policy.grant("SELECT", on="curated", to="analyst", grant_option=True)
    policy.grant("SELECT", on=T, to="bob", columns=["email"])
    listed = [
        (g.grantee, g.grantee_kind, g.privilege, g.object, g.object_kind, g.grant_option)
        for g in policy.grants()
    ]
    assert listed == [
        ("analyst", "role", "SELECT", "curated", "namespace", True),
        ("bob", "principal", "SELECT", f"{T}.email", "column", False),
    ]


def test_bad_input_is_refused_clearly(policy: PolicyStore) -> None:
    who(policy, "bob", "analyst")
    with pytest.raises(NotFoundError, match=r"no zone 'curatd'.*did you mean 'curated'"):
        policy.grant("SELECT", on="curatd.dim_users", to="bob")
    with pytest.raises(NotFoundError, match=r"column 'emial'.*did you mean 'email'"):
        policy.grant("SELECT", on=T, to="bob", columns=["emial"])
    with pytest.raises(NotFoundError, match="no principal or role 'bbo'; did you mean 'bob'"):
        policy.grant("SELECT", on=T, to="bbo")
    with pytest.raises(UsageError, match="unknown privilege 'SELEC'"):
        policy.grant("SELEC", on=T, to="bob")
    with pytest.raises(NotFoundError, match="holds no SELECT"):
        policy.revoke("SELECT", on=T, from_="bob")
    cases = {
        "country IN (SELECT 'DE')": "a subquery is not allowed",
        "EXISTS (SELECT 1)": "a subquery is not allowed",
        "count(*) > 1": "an aggregate is not allowed",
        "upper(country)": "expected a boolean expression",
        "country = 'DE'; DROP TABLE x": "expected one boolean expression, found 2 statements",
        "country = ": "does not parse",
        "t.country = 'DE'": "without a table name",
        "country = ?": "a parameter is not allowed",
    }
    for predicate, message in cases.items():
        with pytest.raises(UsageError, match=message):
            policy.set_filter("f", "analyst", T, predicate)
    with pytest.raises(NotFoundError, match="no column 'contry'; did you mean 'country'"):
        policy.set_filter("f", "analyst", T, "contry = 'DE'")
    with pytest.raises(UsageError, match="not both"):
        policy.set_filter("f", "analyst", T, include=["email"], exclude=["phone"])
    with pytest.raises(NotFoundError, match=r"table 'curated.nope' does not exist"):
        policy.set_filter("f", "analyst", "curated.nope", "x = 1")
    with pytest.raises(UsageError, match="tag value"):
        policy.tag(T, key="pii", value="a=b")
    assert policy.filters() == []


def test_every_policy_change_is_audited(governed: Project, policy: PolicyStore) -> None:
    bob = who(policy, "bob", "analyst")
    policy.grant("SELECT", on=T, to="bob", grant_option=True)
    policy.grant("SELECT", on=T, to="analyst", columns=["user_id"], by=bob)
    policy.tag(T, "email", key="pii", value="email")
    policy.grant_on_tags("pii=*", "SELECT", to="analyst")
    policy.set_filter("f", "analyst", T, "country = 'DE'")
    policy.set_mask("analyst", T, "email", Mask("redact"))
    policy.drop_mask("analyst", T, "email")
    policy.drop_filter("f")
    policy.revoke_on_tags("pii=*", "SELECT", from_="analyst")
    policy.untag(T, "email", key="pii")
    policy.revoke("SELECT", on=T, from_="bob")
    records = list(open_audit(governed).records(kind="policy"))
    assert [(r.principal, r.data["action"]) for r in records] == [
        (None, "grant"),
        ("bob", "grant"),
        (None, "tag"),
        (None, "grant_on_tags"),
        (None, "set_filter"),
        (None, "set_mask"),
        (None, "drop_mask"),
        (None, "drop_filter"),
        (None, "revoke_on_tags"),
        (None, "untag"),
        (None, "revoke"),
    ]
    assert records[1].data["objects"] == [f"{T}.user_id"] and records[1].data["to"] == "analyst"
    assert records[4].data["row_filter"] == "country = 'DE'"
    assert open_audit(governed).verify().ok


def test_disabled_principal_is_refused(policy: PolicyStore) -> None:
    who(policy, "bob")
    policy.grant("SELECT", on=T, to="bob")
    disabled = policy.principals.disable("bob")
    with pytest.raises(PermissionDeniedError, match="principal bob is disabled"):
        policy.access(disabled, T, COLUMNS)


def test_salt_is_secret_and_stable(governed: Project, policy: PolicyStore) -> None:
    salt = policy.salt
    assert len(salt) == 64
    from fluvial.govern.policy import open_policy

    assert open_policy(governed).salt == salt
    path = governed.data_dir / "govern" / "mask.salt"
    assert path.stat().st_mode & 0o777 == 0o600
    assert open_principals(governed).db.path.parent == path.parent


def test_warehouse_marts_are_governed_like_lake_tables(
    governed: Project, policy: PolicyStore
) -> None:
    from fluvial.batch.warehouse import warehouse_path

    with duckdb.connect(str(warehouse_path(governed))) as con:
        con.execute("CREATE SCHEMA marts")
        con.execute("CREATE TABLE marts.daily_users (day DATE, country VARCHAR, users BIGINT)")
    bob = who(policy, "bob")
    policy.grant("SELECT", on="marts.daily_users", to="bob", columns=["day", "users"])
    policy.set_filter("de", "bob", "marts.daily_users", "country = 'DE'")
    access = policy.explain("bob", "marts.daily_users")
    assert access.columns == ("day", "users") and access.denied == {"country": "no grant"}
    assert access.row_filter == "country = 'DE'"
    assert bob.name == "bob"
    with pytest.raises(NotFoundError, match=r"'marts.daily_user' does not exist; did you mean"):
        policy.grant("SELECT", on="marts.daily_user.day", to="bob")
