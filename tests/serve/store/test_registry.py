"""``open_store``: the backend from ``[store]`` settings, and clear errors."""

from __future__ import annotations

import sys
import uuid

import pyarrow as pa
import pytest

from fluvial.errors import ConfigError, MissingDependencyError
from fluvial.project import Project
from fluvial.serve.store import open_store
from fluvial.serve.store.sqlite import SQLiteStore


def test_the_default_is_sqlite_in_the_data_dir(project: Project) -> None:
    with open_store(project) as store:
        assert isinstance(store, SQLiteStore)
        assert store.path == project.data_dir / "store" / "store.db"
        assert store.default_ttl is None


def test_settings_pick_backend_and_ttl(project: Project) -> None:
    env = {"FLUVIAL_STORE__DEFAULT_TTL": "1 h", "FLUVIAL_STORE__PATH": "other.db"}
    with open_store(Project(project.root, env=env)) as store:
        assert store.default_ttl == 3600
        assert isinstance(store, SQLiteStore) and store.path.name == "other.db"
    with pytest.raises(ConfigError, match=r"store\.default_ttl"):
        open_store(Project(project.root, env={"FLUVIAL_STORE__DEFAULT_TTL": "soon"}))
    with pytest.raises(ConfigError, match="did you mean 'redis'"):
        open_store(Project(project.root, env={"FLUVIAL_STORE__BACKEND": "rediss"}))
    with pytest.raises(ConfigError, match="postgres_dsn"):
        open_store(Project(project.root, env={"FLUVIAL_STORE__BACKEND": "postgres"}))


@pytest.mark.parametrize(
    ("backend", "module", "extra"),
    [
        ("postgres", "psycopg", "postgres"),
        ("redis", "redis", "redis"),
        ("dynamodb", "boto3", "aws"),
    ],
)
def test_a_missing_extra_says_what_to_install(
    project: Project, monkeypatch: pytest.MonkeyPatch, backend: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    env = {"FLUVIAL_STORE__BACKEND": backend, "FLUVIAL_STORE__POSTGRES_DSN": "postgresql://x"}
    with pytest.raises(MissingDependencyError, match=rf"pip install 'fluvial\[{extra}\]'"):
        open_store(Project(project.root, env=env))


@pytest.mark.service
def test_server_backends_from_settings(project: Project, postgres_dsn: str, redis_url: str) -> None:
    namespace = f"fluvial_test_{uuid.uuid4().hex[:12]}"
    for backend in ("postgres", "redis"):
        env = {
            "FLUVIAL_STORE__BACKEND": backend,
            "FLUVIAL_STORE__POSTGRES_DSN": postgres_dsn,
            "FLUVIAL_STORE__REDIS_URL": redis_url,
            "FLUVIAL_STORE__NAMESPACE": namespace,
        }
        with open_store(Project(project.root, env=env)) as store:
            assert store.name == backend
            store.upsert("t", pa.table({"k": [1]}), ["k"])
            assert [t.name for t in store.tables()] == ["t"]
            store.drop("t")
    import psycopg
    import redis

    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute(f'DROP SCHEMA "{namespace}" CASCADE')
    client = redis.Redis.from_url(redis_url)
    assert list(client.scan_iter(match=f"{namespace}:*")) == []  # drop removed every key
    client.close()


def test_dynamodb_from_settings_with_native_ttl(project: Project, moto_endpoint: str) -> None:
    import boto3

    prefix = f"t{uuid.uuid4().hex[:8]}"
    env = {
        "FLUVIAL_STORE__BACKEND": "dynamodb",
        "FLUVIAL_STORE__DEFAULT_TTL": "1 h",
        "FLUVIAL_AWS__ENDPOINT_URL": moto_endpoint,
        "FLUVIAL_AWS__REGION": "eu-west-1",
        "FLUVIAL_AWS__RESOURCE_PREFIX": prefix,
    }
    clock = lambda: 1_800_000_000.25  # noqa: E731
    with open_store(Project(project.root, env=env), clock=clock) as store:
        assert store.name == "dynamodb" and store.default_ttl == 3600
        store.upsert("t", pa.table({"k": [1, 2], "v": ["a", "b"]}), ["k"])
        assert store.get("t", 2) == {"k": 2, "v": "b"}
    client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="eu-west-1")
    ttl = client.describe_time_to_live(TableName=f"{prefix}-store")["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")
    items = client.scan(TableName=f"{prefix}-store")["Items"]
    rows = [i for i in items if i["p"]["S"] == "fluvial_store#t#t"]
    # DynamoDB's TTL attribute is in seconds, rounded up: never deleted before it expires
    assert {i["expires_at"]["N"] for i in rows} == {str(1_800_000_000 + 3600 + 1)}
    assert {i["e"]["N"] for i in rows} == {str(1_800_003_600_250)}
    client.delete_table(TableName=f"{prefix}-store")
