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
from fluvial.errors import UsageError

if TYPE_CHECKING:
    from fluvial.log import EventLog

__all__ = ["Project"]

PROJECT_DIRS = ("pipelines", "models", "schemas")


class Project:
    """A project folder and its settings; the entry point to its log, schemas and keys."""

    def __init__(self, root: Path | str = ".", env: Mapping[str, str] | None = None) -> None:
        self.root = Path(root).resolve()
        self._env = env

    @classmethod
    def init(cls, root: Path | str, *, exist_ok: bool = False) -> Project:
        """Write a new project: ``fluvial.toml`` with every default, and its folders."""
        root = Path(root)
        config = root / CONFIG_FILE
        if config.exists() and not exist_ok:
            raise UsageError(f"{config} already exists; refusing to overwrite it")
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
