"""boto3 clients for Kinesis and DynamoDB, and AWS errors translated into Fluvial's.

boto3 is imported here, lazily: without it, opening the backend says
``pip install 'fluvial[aws]'``. Every call into AWS goes through :func:`call`, which turns
a botocore failure into a :class:`~fluvial.errors.LogError` that names what was being done
and the AWS error code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fluvial import _deps
from fluvial.errors import LogError, TopicExistsError, TopicNotFoundError

__all__ = ["AwsClients", "call", "error_code"]

T = TypeVar("T")

#: AWS error codes that mean "slow down": the caller backs off and retries
THROTTLED = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "KMSThrottlingException",
    }
)


_sessions: dict[tuple[str, str], Any] = {}
_sessions_lock = threading.Lock()


def _session(boto3: Any, profile: str, region: str) -> Any:
    """One boto3 session per (profile, region) and process: building one takes ~0.3 s."""
    with _sessions_lock:
        session = _sessions.get((profile, region))
        if session is None:
            session = boto3.session.Session(profile_name=profile or None, region_name=region)
            # timestamps stay strings: parsing GetRecords' arrival time of every record
            # (which Fluvial does not use) costs more than decoding the row itself
            parsers = session._session.get_component("response_parser_factory")
            parsers.set_parser_defaults(timestamp_parser=str)
            _sessions[profile, region] = session
        return session


@dataclass
class AwsClients:
    """The Kinesis and DynamoDB clients of one log, built from ``[aws]`` settings."""

    kinesis: Any
    dynamodb: Any
    botocore_exceptions: Any

    @classmethod
    def connect(cls, region: str, endpoint_url: str = "", profile: str = "") -> AwsClients:
        """Clients for *region* (and *endpoint_url*, an emulator, when not empty)."""
        boto3 = _deps.require("boto3", "aws")
        config_mod = _deps.require("botocore.config", "aws")
        exceptions = _deps.require("botocore.exceptions", "aws")
        try:
            session = _session(boto3, profile, region)
            config = config_mod.Config(
                retries={"max_attempts": 5, "mode": "standard"},
                max_pool_connections=16,
                tcp_keepalive=True,
            )
            endpoint = endpoint_url or None
            with _sessions_lock:  # creating clients from one session is not thread-safe
                return cls(
                    session.client("kinesis", endpoint_url=endpoint, config=config),
                    session.client("dynamodb", endpoint_url=endpoint, config=config),
                    exceptions,
                )
        except exceptions.BotoCoreError as exc:
            raise LogError(f"connecting to AWS in region '{region}': {exc}") from exc


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (its class name otherwise)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(exc).__name__))
    return type(exc).__name__


def translate(exc: BaseException, context: str) -> LogError:
    """A :class:`LogError` (subclass where one fits) for a botocore failure."""
    code = error_code(exc)
    message = f"{context}: {exc} ({code})"
    if code == "ResourceInUseException":
        return TopicExistsError(message)
    if code == "ResourceNotFoundException":
        return TopicNotFoundError(message)
    return LogError(message)


def call(clients: AwsClients, context: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """``fn(**kwargs)``, with botocore's failures raised as :class:`LogError`."""
    exceptions = clients.botocore_exceptions
    try:
        return fn(**kwargs)
    except (exceptions.ClientError, exceptions.BotoCoreError) as exc:
        raise translate(exc, context) from exc
