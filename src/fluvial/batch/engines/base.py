"""The engine interface: run one model's SELECT over named inputs, return Arrow.

An engine reads each table the SELECT names from *inputs* when it is there: an Arrow
table (read as is), a :class:`IcebergInput` (an Iceberg table's metadata file, optionally
pinned to a snapshot), or a string (an Iceberg ``…metadata.json`` location, or Parquet
files: a path or a glob). The SQL is in DuckDB's dialect, as models are written.
Engines are looked up by name in :mod:`fluvial.batch.engines`.

:meth:`Engine.stage_select` keeps a result with the engine instead of handing it back
whole: a :class:`StagedResult` is read in batches, so a large table is written to the lake
without ever being in memory at once (the DuckDB engine stages into a temporary table,
spilled to disk past ``[batch] memory_limit``; other engines stage the Arrow table).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeAlias

import pyarrow as pa

if TYPE_CHECKING:
    from fluvial.batch.warehouse import Warehouse
    from fluvial.lake.catalog import Lake
    from fluvial.project import Project

__all__ = ["ArrowResult", "Engine", "IcebergInput", "Input", "StagedResult"]


@dataclass(frozen=True)
class IcebergInput:
    """An Iceberg table as of its metadata file (and a snapshot of it, when pinned)."""

    metadata_location: str
    snapshot_id: int | None = None


#: what a table name in a model's SELECT may be bound to
Input: TypeAlias = pa.Table | IcebergInput | str


class StagedResult(ABC):
    """A SELECT's result kept by the engine, read in batches; :meth:`close` frees it."""

    schema: pa.Schema
    num_rows: int

    @abstractmethod
    def batches(self, rows: int) -> Iterator[pa.Table]:
        """The result in tables of at most *rows* rows (may be read more than once)."""

    @abstractmethod
    def key_problems(self, keys: Sequence[str]) -> tuple[int, int]:
        """(rows where a key column is null, rows repeating a key already seen)."""

    def close(self) -> None:  # noqa: B027 - Arrow results need nothing
        """Drop what the engine keeps for the result."""

    def __enter__(self) -> StagedResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ArrowResult(StagedResult):
    """A result that is an Arrow table in memory.

    >>> staged = ArrowResult(pa.table({"k": [1, 1, None]}))
    >>> [t.num_rows for t in staged.batches(2)], staged.key_problems(["k"])
    ([2, 1], (1, 1))
    """

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.schema = table.schema
        self.num_rows = table.num_rows

    def batches(self, rows: int) -> Iterator[pa.Table]:
        """Zero-copy slices of the table."""
        for start in range(0, self.num_rows, rows):
            yield self.table.slice(start, rows)

    def key_problems(self, keys: Sequence[str]) -> tuple[int, int]:
        """Counted with Arrow kernels."""
        nulls = sum(self.table.column(k).null_count for k in keys)
        distinct = self.table.select(list(keys)).group_by(list(keys)).aggregate([]).num_rows
        return nulls, self.num_rows - distinct


class Engine(ABC):
    """Runs a model's SELECT. Subclasses set :attr:`name` and implement :meth:`run_select`.

    Capabilities are data: :attr:`reads_warehouse` says whether the engine reads the
    warehouse's ``marts.*`` tables by name; when it does not, the runner passes them in
    *inputs* as Arrow.
    """

    name: ClassVar[str] = ""
    reads_warehouse: ClassVar[bool] = False

    def __init__(self, project: Project, lake: Lake, warehouse: Warehouse | None = None) -> None:
        self.project = project
        self.lake = lake
        self.warehouse = warehouse

    @abstractmethod
    def run_select(self, sql: str, inputs: Mapping[str, Input]) -> pa.Table:
        """Run one SELECT (DuckDB dialect) with each name in *inputs* bound to that input.

        Raises:
            SqlError: the engine refused or failed the query (its message kept).
            MissingDependencyError: the engine's package is not installed.
        """

    def stage_select(self, sql: str, inputs: Mapping[str, Input]) -> StagedResult:
        """Run one SELECT like :meth:`run_select`, keeping its result to be read in batches."""
        return ArrowResult(self.run_select(sql, inputs))

    def close(self) -> None:  # noqa: B027 - engines without resources need nothing
        """Release what the engine holds (sessions, connections)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
