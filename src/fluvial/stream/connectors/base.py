"""Sources and sinks of stream pipelines: one small interface each, and a registry.

A table's ``WITH ('connector' = 'name', …)`` picks the connector; its options are passed
as given (Flink's option names). A source produces Arrow tables of the table's *physical*
columns (computed columns and watermarks are the engine's business) from one or more
*splits* (a log partition, a file), so the engine can keep a watermark per split.

Positions are what a checkpoint stores: after a restore, ``open(position)`` resumes right
after the last row of the checkpointed batches. Sinks are exactly-once by being
idempotent per checkpoint: ``commit(checkpoint_id)`` makes everything written since the
last commit visible, and a commit whose id was already committed is skipped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

if TYPE_CHECKING:
    from fluvial.project import Project
    from fluvial.stream.sql.ast import CreateTable

__all__ = ["CONNECTORS", "ConnectorContext", "Sink", "Source", "SourceBatch"]


@dataclass(frozen=True)
class ConnectorContext:
    """What a connector may need besides its options."""

    project: Project | None = None
    #: where to start when there is no checkpoint: "earliest" | "latest"
    start: str = "earliest"
    #: read unbounded sources only up to the end they had at ``open`` (then ``finished()``)
    until_idle: bool = False


@dataclass(frozen=True)
class SourceBatch:
    """Rows of one split, in order; ``position`` is the split's position after them."""

    split: str
    table: pa.Table
    position: Any


class Source(ABC):
    """A table read by a pipeline."""

    #: a bounded source ends (files); an unbounded one waits for more (a topic)
    bounded: ClassVar[bool] = False

    def __init__(
        self, table: CreateTable, options: Mapping[str, str], context: ConnectorContext
    ) -> None:
        self.table = table
        self.options = dict(options)
        self.context = context
        self.schema = table.physical_schema()

    @abstractmethod
    def open(self, positions: Mapping[str, Any] | None = None) -> None:
        """Start reading, from *positions* (per split, from a checkpoint) if given."""

    @abstractmethod
    def splits(self) -> list[str]:
        """The source's splits (known after :meth:`open`)."""

    @abstractmethod
    def poll(self, max_rows: int = 65_536, timeout: float = 0.0) -> list[SourceBatch]:
        """The next rows of any splits (empty when nothing is ready within *timeout*)."""

    @abstractmethod
    def finished(self) -> bool:
        """True once a bounded source has produced everything (with ``until_idle``, an
        unbounded one once it has reached the end offsets it saw at :meth:`open`)."""

    def positions(self) -> dict[str, Any]:
        """Every split's current position (JSON-serializable), for checkpoints."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files and connections."""


class Sink(ABC):
    """A table written by a pipeline."""

    #: whether the sink accepts updates (a changelog with ``_op``) rather than appends only
    accepts_updates: ClassVar[bool] = False
    #: rows become visible at ``commit``: the runtime keeps them in the checkpoint until
    #: then and writes them just before the commit (False: written as they come)
    transactional: ClassVar[bool] = True

    def __init__(
        self, table: CreateTable, options: Mapping[str, str], context: ConnectorContext
    ) -> None:
        self.table = table
        self.options = dict(options)
        self.context = context
        self.schema = table.physical_schema()

    def open(self, last_committed: int | None = None) -> None:  # noqa: B027 - optional hook
        """Prepare to write; *last_committed* is the checkpoint id a restore resumes from."""

    @abstractmethod
    def write(self, table: pa.Table) -> None:
        """Stage rows (of exactly :attr:`schema`) for the next commit."""

    @abstractmethod
    def commit(self, checkpoint_id: int) -> None:
        """Make staged rows visible, once per checkpoint id (a repeated id is skipped)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files and connections (staged, uncommitted rows are discarded)."""


#: connector name -> "module:Class" for sources and sinks; adding one adds an entry
CONNECTORS: dict[str, dict[str, str]] = {
    "source": {
        "fluvial": "fluvial.stream.connectors.fluvial:LogSource",
        "filesystem": "fluvial.stream.connectors.filesystem:FileSource",
        "nexmark": "fluvial.stream.connectors.nexmark:NexmarkSource",
    },
    "sink": {
        "fluvial": "fluvial.stream.connectors.fluvial:LogSink",
        "filesystem": "fluvial.stream.connectors.filesystem:FileSink",
        "print": "fluvial.stream.connectors.printing:PrintSink",
        "blackhole": "fluvial.stream.connectors.blackhole:BlackholeSink",
        "store": "fluvial.stream.connectors.store:StoreSink",
        "lake": "fluvial.stream.connectors.lake:LakeSink",
    },
}
