"""Shared fixtures: projects in temporary folders, and real services.

A test that needs a server (PostgreSQL, Redis) or Java uses the real thing. When it is
missing the test is skipped with the reason shown (``-ra``), except under CI=true, where a
missing service is a failure: CI must prove what the suite claims.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluvial.project import Project

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip (or, under CI=true, fail) when a required service is unavailable."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required service unavailable under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A fresh project with embedded defaults and fsync on (as users run it)."""
    return Project.init(tmp_path / "project")


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    need(port_open("127.0.0.1", 5432), "PostgreSQL is not listening on 127.0.0.1:5432")
    return "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def redis_url() -> str:
    need(port_open("127.0.0.1", 6379), "Redis is not listening on 127.0.0.1:6379")
    return "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def java() -> str:
    path = shutil.which("java")
    need(path is not None, "Java (a JRE 17) is not on PATH")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server (AWS's APIs emulated: S3, Glue, DynamoDB, Kinesis) on a free loopback
    port for the whole session, with fake credentials in the environment."""
    import logging

    server_mod = pytest.importorskip("moto.server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_DEFAULT_PROFILE"):
            mp.delenv(name, raising=False)
        server.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()
