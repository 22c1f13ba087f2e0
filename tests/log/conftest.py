"""Event log fixtures: the ``log`` fixture runs the behaviour suite against every backend.

Adding a backend adds one name to :data:`BACKENDS` and one factory to :data:`FACTORIES`
(a function of ``tmp_path`` returning an open :class:`~fluvial.log.EventLog`), or, for a
backend that needs a server the session starts, to :data:`SERVER_FACTORIES` (a function
of ``tmp_path`` and the server's fixture value).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fluvial.log import EventLog
from fluvial.log.embedded import EmbeddedLog

from .kafka_cluster import make_kafka_log
from .kinesis_server import aws_endpoint_session, make_kinesis_log

#: every backend the behaviour suite runs against
BACKENDS = ["embedded", "kafka", "kinesis"]


def make_embedded(tmp_path: Path) -> EventLog:
    """The embedded log as users run it (fsync=batch), in a fresh folder."""
    return EmbeddedLog(tmp_path / "log", partitions=4, fsync="batch")


FACTORIES: dict[str, Callable[[Path], EventLog]] = {
    "embedded": make_embedded,
    "kafka": make_kafka_log,
}

#: backend -> (session fixture it needs, factory of tmp_path and that fixture's value)
SERVER_FACTORIES: dict[str, tuple[str, Callable[[Path, str], EventLog]]] = {
    "kinesis": ("aws_endpoint", lambda _tmp, endpoint: make_kinesis_log(endpoint)),
}


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    """moto's server (Kinesis, DynamoDB) on a free loopback port, with dummy credentials."""
    with aws_endpoint_session() as endpoint:
        yield endpoint


@pytest.fixture(params=BACKENDS)
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventLog]:
    """An open, empty event log of each backend."""
    if request.param in SERVER_FACTORIES:
        fixture, factory = SERVER_FACTORIES[request.param]
        opened = factory(tmp_path, request.getfixturevalue(fixture))
    else:
        opened = FACTORIES[request.param](tmp_path)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def topic_name() -> str:
    """A topic name no other test uses (backends with a shared server keep topics)."""
    return f"t-{uuid.uuid4().hex[:10]}"
