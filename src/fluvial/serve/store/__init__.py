"""The operational store (our DynamoDB): keyed tables that stream pipelines upsert into.

Backends are looked up by name (``[store] backend``) and imported lazily; a missing
extra says what to install.

>>> from fluvial.project import Project
>>> import tempfile
>>> with open_store(Project.init(tempfile.mkdtemp() + "/p")) as store:
...     print(store.name, store.tables())
sqlite []
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from fluvial.errors import ConfigError, did_you_mean
from fluvial.serve.store.base import Clock, ScanRange, Store, TableInfo

if TYPE_CHECKING:
    from fluvial.config import Settings
    from fluvial.project import Project

__all__ = [
    "BACKENDS",
    "Clock",
    "ScanRange",
    "Store",
    "TableInfo",
    "open_store",
    "store_from_settings",
]

#: backend name -> "module:class"; adding a backend adds one entry here
BACKENDS: dict[str, str] = {
    "sqlite": "fluvial.serve.store.sqlite:SQLiteStore",
    "postgres": "fluvial.serve.store.postgres:PostgresStore",
    "redis": "fluvial.serve.store.redis:RedisStore",
    "dynamodb": "fluvial.serve.store.dynamodb:DynamoDBStore",
}
#: backends configured by the ``[aws]`` section too
_AWS_BACKENDS = frozenset({"dynamodb"})


def store_from_settings(settings: Settings, data_dir: Path, *, clock: Clock | None = None) -> Store:
    """Open the backend ``[store] backend`` names, embedded files under *data_dir*."""
    name = settings.store.backend
    if name not in BACKENDS:
        raise ConfigError(
            f"unknown store backend '{name}'{did_you_mean(name, BACKENDS)}; "
            f"expected one of {', '.join(BACKENDS)}"
        )
    module, _, cls_name = BACKENDS[name].partition(":")
    cls: type[Store] = getattr(importlib.import_module(module), cls_name)
    if name in _AWS_BACKENDS:
        return cls.from_settings(settings.store, data_dir, clock=clock, aws=settings.aws)  # type: ignore[call-arg]
    return cls.from_settings(settings.store, data_dir, clock=clock)


def open_store(project: Project, *, clock: Clock | None = None) -> Store:
    """Open the project's operational store, as ``[store]`` in fluvial.toml configures it."""
    return store_from_settings(project.settings, project.data_dir, clock=clock)
