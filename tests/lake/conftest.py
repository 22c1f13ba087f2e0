"""Lake fixtures: projects with a lake on SQLite, PostgreSQL or Glue, and clickstream events.

The ``any_lake`` fixture runs the catalog behaviour tests against every catalog backend;
adding one adds a name to :data:`CATALOGS` and a branch to :func:`_settings_env`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fluvial.events.envelope import EVENT_SCHEMA, FAILED_SCHEMA
from fluvial.lake import Lake, open_lake
from fluvial.project import Project

CATALOGS = ["sqlite", "postgres", "glue"]
#: the bucket of the Glue catalog's warehouses (on moto's S3)
GLUE_BUCKET = "fluvial-catalog-suite"

_TS = pa.timestamp("ms", tz="UTC")


def _settings_env(backend: str, dsn: str = "") -> dict[str, str]:
    env = {"FLUVIAL_LOG__FSYNC": "never", "FLUVIAL_LOG__PARTITIONS": "3"}
    if backend == "glue":  # dsn: moto's endpoint; a resource prefix no other test uses
        prefix = f"t{uuid.uuid4().hex[:10]}"
        env["FLUVIAL_LAKE__CATALOG_URI"] = "glue"
        env["FLUVIAL_LAKE__WAREHOUSE"] = f"s3://{GLUE_BUCKET}/{prefix}"
        env["FLUVIAL_AWS__ENDPOINT_URL"] = dsn
        env["FLUVIAL_AWS__REGION"] = "us-east-1"
        env["FLUVIAL_AWS__RESOURCE_PREFIX"] = prefix
    if backend == "postgres":
        env["FLUVIAL_LAKE__CATALOG_URI"] = dsn
        # a catalog name no other test uses: tests share the one database
        env["FLUVIAL_LAKE__CATALOG_NAME"] = f"test_{uuid.uuid4().hex[:12]}"
    return env


def make_project(tmp_path: Path, backend: str = "sqlite", dsn: str = "") -> Project:
    """A project whose lake uses *backend*'s catalog (fsync off: tests need no power-loss)."""
    Project.init(tmp_path / "project", exist_ok=True)
    return Project(tmp_path / "project", env=_settings_env(backend, dsn))


def _drop_all(lake: Lake) -> None:
    for name in lake.tables():
        lake.drop_table(name)
    for zone in lake.zones:
        lake.catalog.drop_namespace(zone)


@pytest.fixture(params=CATALOGS)
def any_lake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lake]:
    """A fresh lake on each catalog backend (its tables dropped afterwards)."""
    # the root conftest's postgres_dsn skips (fails under CI=true) without a server
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else ""
    if request.param == "glue":  # Glue and S3 emulated by moto's server on loopback
        import boto3

        dsn = request.getfixturevalue("moto_endpoint")
        s3 = boto3.client("s3", endpoint_url=dsn, region_name="us-east-1")
        s3.create_bucket(Bucket=GLUE_BUCKET)
    lake = open_lake(make_project(tmp_path, request.param, dsn))
    try:
        yield lake
    finally:
        _drop_all(lake)
        lake.close()


@pytest.fixture
def lake_project(tmp_path: Path) -> Project:
    """A project with the embedded defaults (SQLite catalog, local warehouse)."""
    return make_project(tmp_path)


def make_events(n: int, *, seed: int = 0, start_ms: int = 1_795_000_000_000) -> pa.Table:
    """*n* synthetic events of EVENT_SCHEMA over ~3 hours, unique event ids (vectorized)."""
    rng = np.random.default_rng(seed)
    event_time = start_ms + np.sort(rng.integers(0, 3 * 3_600_000, n))
    ts = lambda a: pa.array(a.astype(np.int64)).view(_TS)  # noqa: E731
    ids = pc.binary_join_element_wise(f"e{seed}-", pc.cast(pa.array(np.arange(n)), pa.string()), "")
    users = pc.binary_join_element_wise(
        "u", pc.cast(pa.array(rng.integers(0, 50, n)), pa.string()), ""
    )
    kinds = pa.array(np.array(["page_view", "click", "purchase"])[rng.integers(0, 3, n)])
    null_struct3 = lambda names: pa.StructArray.from_arrays(  # noqa: E731
        [pa.nulls(n, pa.string())] * 3, names=names
    )
    columns = {
        "event_id": ids,
        "event_type": kinds,
        "event_time": ts(event_time),
        "sent_at": ts(event_time + 100),
        "received_at": ts(event_time + 150),
        "derived_time": ts(event_time + 50),
        "app_id": pa.array(["shop"] * n),
        "user_id": users,
        "anonymous_id": users,
        "session_id": pa.nulls(n, pa.string()),
        "page": pa.StructArray.from_arrays(
            [
                pc.binary_join_element_wise(
                    "https://shop.example/p/",
                    pc.cast(pa.array(rng.integers(0, 20, n)), pa.string()),
                    "",
                ),
                pa.nulls(n, pa.string()),
                pa.nulls(n, pa.string()),
            ],
            names=["url", "referrer", "title"],
        ),
        "context": null_struct3(["user_agent", "ip", "locale"]),
        "properties": pa.array(['{"value": 1}'] * n),
        "schema_version": pa.array(np.ones(n, dtype=np.int32)),
        "flags": pa.array([[]] * n, pa.list_(pa.string())),
    }
    return pa.table(columns).cast(EVENT_SCHEMA)


def make_failed(n: int, *, seed: int = 0) -> pa.Table:
    """*n* dead letters of FAILED_SCHEMA."""
    received = pa.array(1_795_000_000_000 + np.arange(n, dtype=np.int64) * 1000).view(_TS)
    return pa.table(
        {
            "payload": pa.array([f"not json {seed}-{i}" for i in range(n)]),
            "reason": pa.array(["payload_format"] * n),
            "error": pa.array(["expected a JSON object"] * n),
            "path": pa.nulls(n, pa.string()),
            "event_id": pa.array([f"f{seed}-{i}" for i in range(n)]),
            "event_type": pa.nulls(n, pa.string()),
            "app_id": pa.array(["shop"] * n),
            "received_at": received,
            "source": pa.array(["load"] * n),
        }
    ).cast(FAILED_SCHEMA)
