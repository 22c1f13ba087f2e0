"""One store per backend (SQLite file, PostgreSQL schema, Redis prefix, DynamoDB on
moto's server), a movable clock.

Every test gets a fresh namespace (a unique PostgreSQL schema, Redis key prefix or
DynamoDB table), removed afterwards. PostgreSQL and Redis are the real
servers; when one is missing its tests are skipped with the reason (failed under
CI=true). DynamoDB is moto's server on a loopback port, started once per session.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fluvial.serve.store import Store

BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.service),
    pytest.param("redis", marks=pytest.mark.service),
    "dynamodb",
]


class FakeClock:
    """Epoch seconds that move only when told to."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


StoreFactory = Callable[[], Store]


@pytest.fixture(params=BACKENDS)
def open_new(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[StoreFactory]:
    """Opens a new store object on the test's namespace (call it for each instance)."""
    backend: str = request.param
    namespace = f"fluvial_test_{uuid.uuid4().hex[:12]}"
    opened: list[Store] = []
    if backend == "sqlite":
        from fluvial.serve.store.sqlite import SQLiteStore

        def make() -> Store:
            return SQLiteStore(tmp_path / "store.db", clock=clock)

    elif backend == "postgres":
        from fluvial.serve.store.postgres import PostgresStore

        dsn: str = request.getfixturevalue("postgres_dsn")

        def make() -> Store:
            return PostgresStore(dsn, schema=namespace, clock=clock)

    elif backend == "dynamodb":
        from fluvial.serve.store.dynamodb import DynamoDBStore

        endpoint: str = request.getfixturevalue("moto_endpoint")

        def make() -> Store:
            # a DynamoDB table of its own: dropping it is one request
            return DynamoDBStore(namespace, namespace="test", endpoint_url=endpoint, clock=clock)

    else:
        from fluvial.serve.store.redis import RedisStore

        url: str = request.getfixturevalue("redis_url")

        def make() -> Store:
            return RedisStore(url, prefix=namespace, clock=clock)

    def factory() -> Store:
        store = make()
        opened.append(store)
        return store

    yield factory
    if backend == "dynamodb" and opened:
        opened[0]._db.delete_table(TableName=namespace)  # type: ignore[attr-defined]
    for store in opened:
        store.close()
    if backend == "postgres":
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
    elif backend == "redis":
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def store(open_new: StoreFactory) -> Store:
    return open_new()
