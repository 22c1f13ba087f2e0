"""Fluvial's exceptions: one root, a small documented hierarchy.

Every error Fluvial raises on purpose is a :class:`FluvialError`. Errors from the
libraries underneath (pyarrow, confluent-kafka, the file system) are translated at the
boundary with ``raise ... from exc`` so callers catch one family::

    FluvialError
    ├── UsageError                     bad arguments or options (the CLI exits with 2)
    ├── ConfigError                    an invalid fluvial.toml or FLUVIAL_* override
    ├── MissingDependencyError         an optional extra is not installed (says what to pip install)
    ├── NotFoundError                  a named thing does not exist (says "did you mean ...?")
    ├── ValidationError                an event does not satisfy its envelope or schema
    ├── SchemaError                    a schema is malformed
    │   └── IncompatibleSchemaError    a new schema version breaks the compatibility mode
    ├── LogError                       the event log failed
    │   ├── TopicNotFoundError         (also a NotFoundError)
    │   ├── TopicExistsError
    │   ├── OffsetOutOfRangeError
    │   └── CorruptLogError            a checksum or framing error outside the recoverable tail
    ├── AuthenticationError            a missing, unknown or revoked write key or API key
    ├── PermissionDeniedError          a principal may not do this (names the grant it lacks)
    ├── OverloadedError                back-pressure: try again later (HTTP 503)
    ├── CommitConflictError            a lake commit kept losing to concurrent writers
    ├── SqlError                       a pipeline's SQL is wrong (says line and column)
    │   └── UnsupportedSqlError        valid SQL that Fluvial refuses by name
    ├── PipelineError                  a stream pipeline failed while planning or running
    ├── LineageError                   a lineage event could not be delivered
    └── BatchError                     a batch model failed while running (says which model)

Messages say what was expected and what was found.

>>> try:
...     raise TopicNotFoundError("topic 'evnts' does not exist; did you mean 'events'?")
... except NotFoundError as exc:
...     print(type(exc).__name__, isinstance(exc, LogError))
TopicNotFoundError True
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "AuthenticationError",
    "BatchError",
    "CommitConflictError",
    "ConfigError",
    "CorruptLogError",
    "FluvialError",
    "IncompatibleSchemaError",
    "LineageError",
    "LogError",
    "MissingDependencyError",
    "NotFoundError",
    "OffsetOutOfRangeError",
    "OverloadedError",
    "PermissionDeniedError",
    "PipelineError",
    "SchemaError",
    "SqlError",
    "TopicExistsError",
    "TopicNotFoundError",
    "UnsupportedSqlError",
    "UsageError",
    "ValidationError",
    "did_you_mean",
]


class FluvialError(Exception):
    """The root of every error Fluvial raises on purpose."""


class UsageError(FluvialError):
    """Bad arguments or options; the CLI exits with code 2."""


class ConfigError(FluvialError):
    """An invalid setting in fluvial.toml or in a FLUVIAL_<SECTION>__<KEY> variable."""


class MissingDependencyError(FluvialError):
    """An optional dependency is missing; the message gives the exact pip command."""

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"this feature needs the '{module}' package: pip install 'fluvial[{extra}]'"
        )


class NotFoundError(FluvialError):
    """A named thing (topic, schema, key, project) does not exist."""


class ValidationError(FluvialError):
    """An event does not satisfy the envelope or its event type's schema."""

    def __init__(self, message: str, *, path: str = "", reason: str = "schema_violation") -> None:
        self.path = path
        self.reason = reason
        super().__init__(message)


class SchemaError(FluvialError):
    """A schema document is malformed or unusable."""


class IncompatibleSchemaError(SchemaError):
    """A new schema version breaks the subject's compatibility mode."""

    def __init__(self, message: str, *, field: str = "") -> None:
        self.field = field
        super().__init__(message)


class LogError(FluvialError):
    """The event log failed."""


class TopicNotFoundError(LogError, NotFoundError):
    """The topic does not exist."""


class TopicExistsError(LogError):
    """The topic already exists."""


class OffsetOutOfRangeError(LogError):
    """The requested offset is outside the partition's retained range."""


class CorruptLogError(LogError):
    """A checksum or framing error in a segment, outside the recoverable tail."""


class AuthenticationError(FluvialError):
    """A missing, unknown or revoked write key (HTTP 401)."""


class PermissionDeniedError(FluvialError):
    """A principal lacks the permission an action needs (HTTP 403); says which and why.

    >>> str(PermissionDeniedError("column curated.dim_users.email (tag pii) for role analyst"))
    'permission denied: column curated.dim_users.email (tag pii) for role analyst'
    """

    def __init__(self, message: str) -> None:
        self.detail = message
        super().__init__(f"permission denied: {message}")


class OverloadedError(FluvialError):
    """The component is saturated; the caller should retry later (HTTP 503)."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class CommitConflictError(FluvialError):
    """An Iceberg commit still conflicted with concurrent writers after its bounded retries."""


class SqlError(FluvialError):
    """A pipeline's SQL is wrong; the message starts with where (line and column, 1-based).

    >>> str(SqlError("unknown table 'bidz'", line=3, column=6, source="q.sql"))
    "q.sql:3:6: unknown table 'bidz'"
    """

    def __init__(
        self, message: str, *, line: int | None = None, column: int | None = None, source: str = ""
    ) -> None:
        self.line = line
        self.column = column
        self.source = source
        self.detail = message
        where = ":".join(str(x) for x in (source or None, line, column) if x not in (None, ""))
        super().__init__(f"{where}: {message}" if where else message)


class UnsupportedSqlError(SqlError):
    """Valid (Flink) SQL that Fluvial does not run, refused by name — never mis-read."""


class PipelineError(FluvialError):
    """A stream pipeline failed while planning or running."""


class LineageError(FluvialError):
    """A lineage run event could not be delivered (file or HTTP transport)."""


class BatchError(FluvialError):
    """A batch model failed while running; the message names the model."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest candidate, or ``""``.

    >>> did_you_mean("evnts", ["events", "events_failed"])
    "; did you mean 'events'?"
    >>> did_you_mean("zzz", ["events"])
    ''
    """
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""
