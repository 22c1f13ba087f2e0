"""The engine interface: run one model's SELECT over named inputs, return Arrow.

An engine reads each table the SELECT names from *inputs* when it is there: an Arrow
table (read as is), a :class:`IcebergInput` (an Iceberg table's metadata file, optionally
pinned to a snapshot), or a string (an Iceberg ``…metadata.json`` location, or Parquet
files: a path or a glob). The SQL is in DuckDB's dialect, as models are written.
Engines are looked up by name in :mod:`fluvial.batch.engines`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeAlias

import pyarrow as pa

if TYPE_CHECKING:
    from fluvial.batch.warehouse import Warehouse
    from fluvial.lake.catalog import Lake
    from fluvial.project import Project

__all__ = ["Engine", "IcebergInput", "Input"]


@dataclass(frozen=True)
class IcebergInput:
    """An Iceberg table as of its metadata file (and a snapshot of it, when pinned)."""

    metadata_location: str
    snapshot_id: int | None = None


#: what a table name in a model's SELECT may be bound to
Input: TypeAlias = pa.Table | IcebergInput | str


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

    def close(self) -> None:  # noqa: B027 - engines without resources need nothing
        """Release what the engine holds (sessions, connections)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
