"""A Fluvial project: a folder with ``fluvial.toml``, ``pipelines/``, ``models/``, ``schemas/``.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp()) / "shop"
>>> p = Project.init(root)
>>> sorted(x.name for x in root.iterdir())
['.gitignore', 'fluvial.toml', 'models', 'pipelines', 'schemas']
>>> p.settings.log.backend
'embedded'
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from fluvial.config import CONFIG_FILE, Settings, load_settings, render_default_toml
from fluvial.errors import NotFoundError, UsageError, did_you_mean

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from fluvial.log import EventLog

__all__ = ["Project"]

PROJECT_DIRS = ("pipelines", "models", "schemas")
#: what ``Project.init(root, example=...)`` copies from a packaged example
EXAMPLE_DIRS = ("pipelines", "models", "quality", "schemas")
EXAMPLE_FILES = ("metrics.toml",)


def example_names() -> list[str]:
    """The examples packaged with Fluvial (folders of ``fluvial.examples``).

    >>> "clickstream" in example_names()
    True
    """
    from importlib.resources import files

    package = files("fluvial.examples")
    return sorted(
        p.name for p in package.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
    )


def _copy_tree(source: Traversable, target: Path) -> None:
    """Copy a packaged folder; files that already exist in *target* are kept."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name.startswith(("_", ".")):
            continue
        if entry.is_dir():
            _copy_tree(entry, target / entry.name)
        elif not (target / entry.name).exists():
            (target / entry.name).write_bytes(entry.read_bytes())


def _copy_example(example: str, root: Path) -> None:
    from importlib.resources import files

    source = files("fluvial.examples") / example
    for folder in EXAMPLE_DIRS:
        if (source / folder).is_dir():
            _copy_tree(source / folder, root / folder)
    for name in EXAMPLE_FILES:
        if (source / name).is_file() and not (root / name).exists():
            (root / name).write_bytes((source / name).read_bytes())


class Project:
    """A project folder and its settings; the entry point to its log, schemas and keys."""

    def __init__(self, root: Path | str = ".", env: Mapping[str, str] | None = None) -> None:
        self.root = Path(root).resolve()
        self._env = env

    @classmethod
    def init(
        cls, root: Path | str, *, exist_ok: bool = False, example: str | None = None
    ) -> Project:
        """Write a new project: ``fluvial.toml`` with every default, and its folders.

        With *example* (e.g. ``"clickstream"``), the packaged example's pipelines, models,
        quality rules and schemas are copied in (files already there are kept).

        Raises:
            UsageError: the folder already has ``fluvial.toml`` (without *exist_ok*).
            NotFoundError: there is no such example.
        """
        root = Path(root)
        config = root / CONFIG_FILE
        if config.exists() and not exist_ok:
            raise UsageError(f"{config} already exists; refusing to overwrite it")
        if example is not None and example not in (names := example_names()):
            raise NotFoundError(
                f"there is no example '{example}' (examples: {', '.join(names)})"
                f"{did_you_mean(example, names)}"
            )
        root.mkdir(parents=True, exist_ok=True)
        for name in PROJECT_DIRS:
            (root / name).mkdir(exist_ok=True)
        if not config.exists():
            config.write_text(render_default_toml(), encoding="utf-8")
        ignore = root / ".gitignore"
        if not ignore.exists():
            ignore.write_text(
                "# embedded state: event log, lake, stores\n/data/\n", encoding="utf-8"
            )
        if example is not None:
            _copy_example(example, root)
        return cls(root)

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.root, self._env)

    @property
    def data_dir(self) -> Path:
        """Where embedded state lives (created on first use)."""
        path = self.root / self.settings.project.data_dir
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def schemas_dir(self) -> Path:
        return self.root / self.settings.schemas.dir

    def open_log(self) -> EventLog:
        """Open the configured event log backend."""
        from fluvial.log import open_log

        return open_log(self.settings, self.data_dir)
