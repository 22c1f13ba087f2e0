"""Shared fixtures: a Marquez-like receiver served by uvicorn on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from tests.lineage.helpers import Receiver


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    """The receiver under uvicorn on a free loopback port, and its base URL."""
    fake = Receiver()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(fake.app, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    assert server.started
    yield fake, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()
