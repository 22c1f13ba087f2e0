"""Batch engines by name: ``duckdb`` (embedded, the default) and ``spark`` (scale-out).

Engines are imported lazily, so a missing optional package only matters when its engine
is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from fluvial.batch.engines.base import Engine, IcebergInput, Input
from fluvial.errors import NotFoundError, did_you_mean

if TYPE_CHECKING:
    from fluvial.batch.warehouse import Warehouse
    from fluvial.lake.catalog import Lake
    from fluvial.project import Project

__all__ = ["ENGINES", "Engine", "IcebergInput", "Input", "create_engine", "engine_class"]

#: engine name -> "module:class", imported on first use
ENGINES: dict[str, str] = {
    "duckdb": "fluvial.batch.engines.duckdb:DuckDbEngine",
    "spark": "fluvial.batch.engines.spark:SparkEngine",
}


def engine_class(name: str) -> type[Engine]:
    """The engine class registered as *name*.

    Raises:
        NotFoundError: no such engine (or its module is not there yet).
    """
    if name not in ENGINES:
        raise NotFoundError(
            f"no batch engine named '{name}' (engines: {', '.join(ENGINES)})"
            f"{did_you_mean(name, ENGINES)}"
        )
    module_name, _, cls_name = ENGINES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise NotFoundError(f"the '{name}' batch engine is not available") from exc
    cls: type[Engine] | None = getattr(module, cls_name, None)
    if cls is None:
        raise NotFoundError(f"the '{name}' batch engine is not available ({ENGINES[name]})")
    return cls


def create_engine(
    name: str, project: Project, lake: Lake, warehouse: Warehouse | None = None
) -> Engine:
    """An engine instance for one run."""
    return engine_class(name)(project, lake, warehouse)
