"""Event log fixtures: the ``log`` fixture runs the behaviour suite against every backend.

Adding a backend adds one name to :data:`BACKENDS` and one factory to :data:`FACTORIES`
(a function of ``tmp_path`` returning an open :class:`~fluvial.log.EventLog`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fluvial.log import EventLog
from fluvial.log.embedded import EmbeddedLog

from .kafka_cluster import make_kafka_log

#: every backend the behaviour suite runs against
BACKENDS = ["embedded", "kafka"]


def make_embedded(tmp_path: Path) -> EventLog:
    """The embedded log as users run it (fsync=batch), in a fresh folder."""
    return EmbeddedLog(tmp_path / "log", partitions=4, fsync="batch")


FACTORIES: dict[str, Callable[[Path], EventLog]] = {
    "embedded": make_embedded,
    "kafka": make_kafka_log,
}


@pytest.fixture(params=BACKENDS)
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventLog]:
    """An open, empty event log of each backend."""
    opened = FACTORIES[request.param](tmp_path)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def topic_name() -> str:
    """A topic name no other test uses (backends with a shared server keep topics)."""
    return f"t-{uuid.uuid4().hex[:10]}"
