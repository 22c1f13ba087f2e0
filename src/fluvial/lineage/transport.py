"""Where run events go: a durable NDJSON file (default) or HTTP to Marquez.

``[lineage] transport = "file"`` appends one JSON line per event to
``<data_dir>/lineage/events.ndjson`` and fsyncs it before returning; ``"http"`` POSTs each
event to ``<url>/api/v1/lineage`` (Marquez's endpoint; any OpenLineage receiver that
accepts it). :func:`emit` picks the transport from the project's settings.
"""

from __future__ import annotations

import fcntl
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from fluvial.errors import ConfigError, LineageError, did_you_mean
from fluvial.lineage.events import DEFAULT_NAMESPACE, RunEvent

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = [
    "EVENTS_FILE",
    "FileTransport",
    "HttpTransport",
    "Transport",
    "emit",
    "events_path",
    "namespace_of",
    "open_transport",
    "read_events",
]

#: the file transport's events, relative to the project's data_dir
EVENTS_FILE = Path("lineage") / "events.ndjson"
API_PATH = "/api/v1/lineage"


class Transport(ABC):
    """Delivers run events somewhere."""

    #: the ``[lineage] transport`` value that selects this transport
    name: ClassVar[str]

    @abstractmethod
    def emit(self, event: RunEvent) -> None:
        """Deliver *event*; when this returns the event is stored.

        Raises:
            LineageError: the event could not be delivered.
        """


class FileTransport(Transport):
    """Appends events as JSON lines to a file, fsynced: an event returned is on disk."""

    name = "file"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def emit(self, event: RunEvent) -> None:
        line = (json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                # one writer at a time across processes, so lines never interleave
                fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)  # closing releases the lock
        except OSError as exc:
            raise LineageError(f"cannot append a lineage event to {self.path}: {exc}") from exc


class HttpTransport(Transport):
    """POSTs each event as JSON to ``<url>/api/v1/lineage`` (Marquez answers 201)."""

    name = "http"

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"lineage.url: expected an http:// or https:// URL for the http transport, "
                f"found {url!r}"
            )
        self.endpoint = url.rstrip("/") + API_PATH
        self.timeout = timeout

    def emit(self, event: RunEvent) -> None:
        import httpx

        try:
            response = httpx.post(self.endpoint, json=event, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise LineageError(f"cannot POST a lineage event to {self.endpoint}: {exc}") from exc
        if not response.is_success:
            raise LineageError(
                f"{self.endpoint} refused a lineage event: expected a 2xx answer, found "
                f"{response.status_code} {response.text[:200]!r}"
            )


TRANSPORTS: dict[str, type[Transport]] = {t.name: t for t in (FileTransport, HttpTransport)}


def events_path(project: Project) -> Path:
    """The file transport's NDJSON file of *project*."""
    return project.data_dir / EVENTS_FILE


def namespace_of(project: Project) -> str:
    """The project's lineage namespace: ``[lineage] namespace``, else the project's name."""
    return project.settings.lineage.namespace or project.settings.project.name


def open_transport(project: Project) -> Transport:
    """The transport ``[lineage] transport`` names.

    Raises:
        ConfigError: an unknown transport, or http without a valid ``url``.
    """
    settings = project.settings.lineage
    kind = settings.transport.strip().lower()
    if kind == "file":
        return FileTransport(events_path(project))
    if kind == "http":
        return HttpTransport(settings.url)
    raise ConfigError(
        f"lineage.transport: expected one of {', '.join(TRANSPORTS)}, found "
        f"{settings.transport!r}{did_you_mean(kind, TRANSPORTS)}"
    )


def emit(project: Project, event: RunEvent, transport: Transport | None = None) -> None:
    """Deliver *event* through the project's transport (or *transport*).

    An event built in the default namespace (``fluvial``) is moved to the project's
    namespace first, so jobs and datasets of one project meet in one namespace.

    Raises:
        LineageError: the event could not be delivered.
        ConfigError: the ``[lineage]`` settings are invalid.
    """
    namespace = namespace_of(project)
    if namespace != DEFAULT_NAMESPACE:
        event = _rehome(event, namespace)
    (transport or open_transport(project)).emit(event)


def _rehome(value: Any, namespace: str) -> Any:
    """A copy of *value* with every ``namespace`` equal to the default set to *namespace*."""
    if isinstance(value, dict):
        out = {k: _rehome(v, namespace) for k, v in value.items()}
        if out.get("namespace") == DEFAULT_NAMESPACE:
            out["namespace"] = namespace
        return out
    if isinstance(value, list):
        return [_rehome(v, namespace) for v in value]
    return value


def read_events(path: Path | str) -> Iterator[RunEvent]:
    """The events of an NDJSON file, in order (a torn last line, from a crash, is skipped).

    Raises:
        LineageError: a line other than the last is not a JSON object.
    """
    path = Path(path)
    if not path.exists():
        return
    with path.open("rb") as fh:
        lines = fh.read().split(b"\n")
    last = len(lines) - 1
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
        except json.JSONDecodeError as exc:
            if i == last:  # written without its newline: the append was cut short
                return
            raise LineageError(f"{path}:{i + 1}: not a JSON lineage event: {exc}") from exc
        if not isinstance(event, dict):
            raise LineageError(f"{path}:{i + 1}: expected a JSON object, found {raw[:60]!r}")
        yield event
