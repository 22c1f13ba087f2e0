"""Example projects shipped with Fluvial (pipelines today; models and more as they land)."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

__all__ = ["example_pipelines"]


def example_pipelines(example: str = "clickstream") -> dict[str, str]:
    """File name → SQL text of an example's stream pipelines."""
    folder: Traversable = files(__name__) / example / "pipelines"
    return {
        p.name: p.read_text(encoding="utf-8") for p in folder.iterdir() if p.name.endswith(".sql")
    }
