"""moto's server on a loopback port: Kinesis and DynamoDB for the tests, no internet.

:func:`aws_endpoint_session` starts one ``ThreadedMotoServer`` on a free port with dummy
credentials in the environment; :func:`make_kinesis_log` opens a
:class:`~fluvial.log.kinesis.KinesisLog` on it with a fresh resource prefix, so every log
has its own bookkeeping table and streams.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from fluvial.log.kinesis import KinesisLog

__all__ = ["REGION", "aws_endpoint_session", "make_kinesis_log"]

REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def aws_endpoint_session() -> Iterator[str]:
    """moto's server on a free loopback port, with dummy AWS credentials set meanwhile."""
    pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
    server.start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            mp.delenv(name, raising=False)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()


def make_kinesis_log(
    endpoint: str, *, prefix: str | None = None, partitions: int = 4
) -> KinesisLog:
    """A :class:`KinesisLog` on moto at *endpoint*, with its own resource prefix."""
    from fluvial.log.kinesis import KinesisLog

    return KinesisLog(
        region=REGION,
        endpoint_url=endpoint,
        resource_prefix=prefix or f"t{uuid.uuid4().hex[:8]}",
        partitions=partitions,
    )
