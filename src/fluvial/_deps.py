"""Lazy imports of optional dependencies, with the exact install hint when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from fluvial.errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import *module* or raise :class:`MissingDependencyError` naming the extra to install.

    >>> require("json", "core").__name__
    'json'
    >>> require("no_such_module_xyz", "kafka")
    Traceback (most recent call last):
    ...
    fluvial.errors.MissingDependencyError: this feature needs the 'no_such_module_xyz' package: pip install 'fluvial[kafka]'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module, extra) from exc
