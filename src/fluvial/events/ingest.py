"""Ingestion: validated events into the log — valid ones to ``events``, the rest to
``events_failed`` — for the collector and for ``fluvial log load``-style file loads.

Every payload ends in exactly one of the two topics. Valid rows are routed by
``coalesce(anonymous_id, user_id)`` (:data:`~fluvial.events.envelope.EVENT_KEY`), so a
device's events stay in order across sign-in.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import UsageError
from fluvial.events.envelope import EVENT_KEY, EVENT_SCHEMA, FAILED_SCHEMA
from fluvial.events.payload import iter_ndjson
from fluvial.events.validate import EventError, EventValidator, ValidationResult

if TYPE_CHECKING:
    from fluvial.log.base import EventLog
    from fluvial.project import Project

__all__ = ["IngestResult", "Ingestor", "load_file"]

#: load_file keeps at most this many EventErrors (the counts in by_reason stay exact)
MAX_KEPT_ERRORS = 1000


@dataclass(frozen=True)
class IngestResult:
    """What an ingest did: counts, the errors (by payload index) and rejections by reason."""

    accepted: int
    rejected: int
    errors: list[EventError] = field(default_factory=list)
    by_reason: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, result: ValidationResult) -> IngestResult:
        return cls(
            result.accepted,
            result.rejected,
            result.errors,
            dict(Counter(e.reason for e in result.errors)),
        )


def routing_key(valid: pa.Table) -> pa.ChunkedArray:
    """The partition key of each event: its first non-null of anonymous_id, user_id."""
    return pc.coalesce(*(valid[name] for name in EVENT_KEY))


class Ingestor:
    """Validates batches and appends them to the event log; durable when it returns.

    Creates both topics if missing (with EVENT_SCHEMA and FAILED_SCHEMA). Use as a context
    manager (or call :meth:`close`) when it was built by :meth:`for_project` without a log:
    it then owns the log it opened.
    """

    def __init__(
        self,
        log: EventLog,
        validator: EventValidator,
        *,
        events_topic: str = "events",
        failed_topic: str = "events_failed",
        partitions: int = 4,
    ) -> None:
        self.log = log
        self.validator = validator
        self.events_topic = events_topic
        self.failed_topic = failed_topic
        self._owns_log = False
        log.create_topic(events_topic, partitions, schema=EVENT_SCHEMA, exist_ok=True)
        log.create_topic(failed_topic, partitions, schema=FAILED_SCHEMA, exist_ok=True)

    @classmethod
    def for_project(
        cls, project: Project, log: EventLog | None = None, *, events_topic: str | None = None
    ) -> Ingestor:
        """An ingestor with the project's validator, topics and partition count."""
        settings = project.settings.log
        owns = log is None
        opened = project.open_log() if log is None else log
        try:
            ingestor = cls(
                opened,
                EventValidator.for_project(project),
                events_topic=events_topic or settings.events_topic,
                failed_topic=settings.failed_topic,
                partitions=settings.partitions,
            )
        except BaseException:
            if owns:
                opened.close()
            raise
        ingestor._owns_log = owns
        return ingestor

    def ingest(
        self,
        payloads: Sequence[bytes],
        *,
        received_at_ms: int | None = None,
        app_id: str | None = None,
        source: str = "collector",
    ) -> IngestResult:
        """Validate *payloads* and append them; returns once both appends are durable."""
        result = self.validator.validate(
            payloads, received_at_ms=received_at_ms, app_id=app_id, source=source
        )
        self.append(result)
        return IngestResult.of(result)

    def append(self, result: ValidationResult) -> None:
        """Append an already validated batch (valid rows keyed, failed rows round-robin)."""
        if result.valid.num_rows:
            self.log.append(self.events_topic, result.valid, key=routing_key(result.valid))
        if result.failed.num_rows:
            self.log.append(self.failed_topic, result.failed)

    def close(self) -> None:
        if self._owns_log:
            self.log.close()
            self._owns_log = False

    def __enter__(self) -> Ingestor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _progress(path: Path, enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn(f"loading {path.name}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=True,
    )


def _renumber(errors: list[EventError], lines: list[int]) -> list[EventError]:
    """Errors indexed by 0-based line number in the file instead of position in a chunk."""
    return [EventError(lines[e.index], e.reason, e.error, e.path, e.event_id) for e in errors]


def load_file(
    project: Project,
    path: Path,
    *,
    topic: str | None = None,
    source: str = "load",
    batch_size: int = 10_000,
    log: EventLog | None = None,
) -> IngestResult:
    """Load an NDJSON file of events: valid ones to *topic* (default: the events topic),
    invalid ones to the failed topic, exactly as the collector would.

    Error ``index`` values are 0-based line numbers in the file; at most
    :data:`MAX_KEPT_ERRORS` errors are kept, while ``by_reason`` counts all of them.
    A Rich progress bar is shown on stderr when it is a terminal.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"cannot load {path}: expected an NDJSON file, found nothing there")
    total = path.stat().st_size
    accepted = rejected = 0
    errors: list[EventError] = []
    by_reason: Counter[str] = Counter()
    with (
        Ingestor.for_project(project, log, events_topic=topic) as ingestor,
        _progress(path, sys.stderr.isatty()) as progress,
    ):
        task = progress.add_task("load", total=total)
        for chunk in iter_ndjson(path, batch_size):
            result = ingestor.ingest(chunk.payloads, source=source)
            accepted += result.accepted
            rejected += result.rejected
            by_reason.update(result.by_reason)
            room = MAX_KEPT_ERRORS - len(errors)
            if room > 0:
                errors += _renumber(result.errors[:room], chunk.lines)
            progress.update(task, completed=chunk.bytes_read)
    return IngestResult(accepted, rejected, errors, dict(by_reason))
