"""A governed project for the enforcement tests: lake tables with personal data, a resolver
with grants, filters and masks, and a DuckDB reference over the very same rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from fluvial.errors import PermissionDeniedError
from fluvial.govern.model import Mask, Principal, TableAccess
from fluvial.project import Project

SALT = "s3cret-salt"
COUNTRIES = ["DE", "FR", "US", "NL"]


class DictResolver:
    """An AccessResolver over a dict: (role, table) -> the role's TableAccess."""

    def __init__(self, grants: Mapping[tuple[str, str], TableAccess], salt: str = SALT) -> None:
        self.grants = dict(grants)
        self.salt = salt

    def access(self, principal: Principal, table: str, columns: Sequence[str]) -> TableAccess:
        for role in sorted(principal.roles):
            if (role, table) in self.grants:
                return self.grants[(role, table)]
        raise PermissionDeniedError(f"table {table} (no SELECT grant) for {principal.name}")


def users_table(n: int = 200, seed: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1)
    return pa.table(
        {
            "user_id": pa.array(ids, pa.int64()),
            "email": pa.array([f"user{i}@example.com" for i in ids]),
            "phone": pa.array([f"+49 170 {i:07d}" for i in ids]),
            "country": pa.array(np.array(COUNTRIES)[rng.integers(0, len(COUNTRIES), n)]),
            "age": pa.array(rng.integers(18, 80, n), pa.int64()),
        }
    )


def orders_table(users: pa.Table, n: int = 1000, seed: int = 5) -> pa.Table:
    rng = np.random.default_rng(seed)
    user = rng.integers(1, users.num_rows + 1, n)
    countries = np.array(users["country"].to_pylist())[user - 1]
    return pa.table(
        {
            "order_id": pa.array(np.arange(n), pa.int64()),
            "user_id": pa.array(user, pa.int64()),
            "amount": pa.array(np.round(rng.uniform(1, 500, n), 2)),
            "country": pa.array(countries),
        }
    )


USER_COLUMNS = ("user_id", "email", "phone", "country", "age")
ANALYST_USERS = TableAccess(
    "curated.dim_users",
    ("user_id", "email", "country", "age"),
    denied={"phone": "tag pii"},
    row_filter="country = 'DE'",
    masks={"email": Mask("hash")},
)
ANALYST_ORDERS = TableAccess(
    "curated.fact_orders", ("order_id", "user_id", "amount", "country"), row_filter="country = 'DE'"
)
ANALYST = Principal("ann", roles=frozenset({"analyst"}))
ADMIN = Principal("root", admin=True)
OUTSIDER = Principal("eve", roles=frozenset({"nobody"}))


@dataclass
class Governed:
    """The project, the resolver, and a DuckDB reference over the same rows."""

    project: Project
    resolver: DictResolver
    users: pa.Table
    orders: pa.Table

    def reference(self, sql: str) -> list[tuple[object, ...]]:
        """*sql* over plain tables ``users`` and ``orders`` (no governance), sorted rows."""
        con = duckdb.connect()
        con.register("users", self.users)
        con.register("orders", self.orders)
        rows = con.execute(sql).fetchall()
        con.close()
        return sorted(rows, key=repr)


@pytest.fixture(scope="package", name="governed")
def governed_world(tmp_path_factory: pytest.TempPathFactory) -> Governed:
    from fluvial.lake import append, open_lake

    root: Path = tmp_path_factory.mktemp("govern") / "shop"
    project = Project.init(root)
    users = users_table()
    orders = orders_table(users)
    with open_lake(project) as lake:
        append(lake.create_table("curated.dim_users", users.schema), users)
        append(lake.create_table("curated.fact_orders", orders.schema), orders)
    resolver = DictResolver(
        {
            ("analyst", "curated.dim_users"): ANALYST_USERS,
            ("analyst", "curated.fact_orders"): ANALYST_ORDERS,
        }
    )
    return Governed(Project(root), resolver, users, orders)
