"""Collector test helpers: events, a running app in-process, reading topics back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pyarrow as pa
import pytest

from fluvial.collector.app import create_app
from fluvial.collector.keys import KeyStore
from fluvial.errors import TopicNotFoundError
from fluvial.log.base import EventLog
from fluvial.project import Project


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_event(**overrides: Any) -> dict[str, Any]:
    """A valid page_view event (a fresh event_id each time)."""
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": "page_view",
        "event_time": "2026-01-02T03:04:05.678Z",
        "sent_at": "2026-01-02T03:04:06Z",
        "anonymous_id": "anon-1",
        "session_id": "s1",
        "page": {"url": "https://shop.example/", "referrer": None, "title": "Home"},
        "properties": {"path": "/"},
    }
    event.update(overrides)
    return event


def read_topic(log: EventLog, topic: str) -> pa.Table | None:
    """Every retained row of *topic* (None if the topic does not exist)."""
    try:
        log.topic(topic)
    except TopicNotFoundError:
        return None
    tables = []
    with log.consumer(topic) as consumer:
        while (table := consumer.poll(timeout=0)) is not None:
            tables.append(table)
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables)


def count_rows(log: EventLog, topic: str) -> int:
    table = read_topic(log, topic)
    return 0 if table is None else table.num_rows


class Running:
    """An app with its lifespan started, an httpx client on it, and a valid key."""

    def __init__(self, app: Any, client: httpx.AsyncClient, log: EventLog, secret: str) -> None:
        self.app = app
        self.client = client
        self.log = log
        self.secret = secret

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


@pytest.fixture
def log(project: Project) -> Iterator[EventLog]:
    with project.open_log() as opened:
        yield opened


@pytest.fixture
def keys(project: Project) -> KeyStore:
    return KeyStore.for_project(project, reload_interval=0.0)


@pytest.fixture
async def running(project: Project, log: EventLog, keys: KeyStore) -> AsyncIterator[Running]:
    _, secret = keys.create("shop")
    app = create_app(project, log=log, keys=keys)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            yield Running(app, client, log, secret)
