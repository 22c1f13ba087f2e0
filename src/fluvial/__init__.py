"""Fluvial: an open data processing and analytics platform.

The public Python API is what ``__all__`` lists; modules starting with ``_`` are private.
"""

from __future__ import annotations

from fluvial.config import Settings, load_settings
from fluvial.errors import FluvialError
from fluvial.project import Project

__all__ = ["FluvialError", "Project", "Settings", "__version__", "load_settings"]

__version__ = "0.1.0"
