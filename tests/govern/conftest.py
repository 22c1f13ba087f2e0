"""Governance fixtures: a project with a real lake table of users, roles and principals."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from fluvial.govern.policy import PolicyStore, open_policy
from fluvial.lake.catalog import open_lake
from fluvial.project import Project

USERS = pa.table(
    {
        "user_id": ["u1", "u2", "u3", "u4"],
        "email": ["ann@example.com", "bo@example.org", None, "dee@example.net"],
        "phone": ["+4915112345678", "+33612345678", "+4917000000001", None],
        "country": ["DE", "FR", "DE", "US"],
        "signup_at": [datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3, 4)],
    }
)
COLUMNS = USERS.column_names


@pytest.fixture
def governed(project: Project) -> Project:
    """*project* with ``curated.dim_users`` (4 rows) and ``raw.events`` in its lake."""
    with open_lake(project) as lake:
        lake.create_table("curated.dim_users", USERS.schema, time_column="signup_at").append(USERS)
        events = pa.schema([("event_id", pa.string()), ("at", pa.timestamp("us", tz="UTC"))])
        lake.create_table("raw.events", events, time_column="at")
    return project


@pytest.fixture
def policy(governed: Project) -> PolicyStore:
    return open_policy(governed)
