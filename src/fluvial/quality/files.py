"""Where a table's rules live in a project, and which tables have rules.

For the table ``zone.name`` the rules come from exactly one of:

1. ``models/<zone>/<name>.quality.yml`` (or ``.yaml``), beside the model;
2. the ``quality:`` key of the model's front matter (``models/<zone>/<name>.sql``) or of
   its sidecar ``models/<zone>/<name>.yml``;
3. ``quality/<zone>.<name>.yml`` (or ``.yaml``), for tables that are no model (``raw.events``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from fluvial.errors import ConfigError
from fluvial.lake.zones import split_name
from fluvial.quality.parse import load_rule_file, parse_rules
from fluvial.quality.rules import Rule

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = ["MODELS_DIR", "QUALITY_DIR", "load_rules", "rule_sources", "tables_with_rules"]

MODELS_DIR = "models"
QUALITY_DIR = "quality"
_YAML = (".yml", ".yaml")
_FRONT_MATTER = re.compile(r"\A\s*/\*---\s*\n(.*?)\n\s*---\*/", re.DOTALL)


def _front_matter(sql_file: Path) -> Any:
    match = _FRONT_MATTER.match(sql_file.read_text(encoding="utf-8"))
    if match is None:
        return None
    return _yaml(match.group(1), sql_file)


def _yaml(text: str, path: Path) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc


def _quality_key(path: Path) -> Any:
    """The ``quality:`` value of a model's front matter or sidecar, or None."""
    value = _front_matter(path) if path.suffix == ".sql" else _yaml(path.read_text("utf-8"), path)
    return value.get("quality") if isinstance(value, dict) else None


def rule_sources(project: Project, table_name: str) -> list[Path]:
    """The files that define rules for *table_name* (normally zero or one)."""
    zone, name = split_name(table_name)
    model_dir = project.root / MODELS_DIR / zone
    found = [model_dir / f"{name}.quality{ext}" for ext in _YAML]
    found += [model_dir / f"{name}{ext}" for ext in (".sql", *_YAML)]
    found += [project.root / QUALITY_DIR / f"{zone}.{name}{ext}" for ext in _YAML]
    sources = []
    for path in found:
        if not path.is_file():
            continue
        is_model_config = path.parent == model_dir and ".quality" not in path.suffixes
        if is_model_config and _quality_key(path) is None:
            continue
        sources.append(path)
    return sources


def load_rules(project: Project, table_name: str) -> list[Rule]:
    """The rules of *table_name* (empty when it has none).

    Raises:
        ConfigError: a rule file is wrong, or two places define rules for the table.
    """
    sources = rule_sources(project, table_name)
    if not sources:
        return []
    if len(sources) > 1:
        raise ConfigError(
            f"rules for {table_name} are defined in {len(sources)} places "
            f"({', '.join(str(s) for s in sources)}); keep one"
        )
    (path,) = sources
    model_config = path.parent.parent.name == MODELS_DIR and ".quality" not in path.suffixes
    if model_config:
        return parse_rules(_quality_key(path), source=f"{path} (quality)")
    return load_rule_file(path)


def tables_with_rules(project: Project) -> list[str]:
    """Every ``zone.name`` some file in the project gives rules to, sorted."""
    names: set[str] = set()
    models = project.root / MODELS_DIR
    if models.is_dir():
        for zone_dir in (d for d in models.iterdir() if d.is_dir()):
            for path in zone_dir.iterdir():
                if path.name.endswith(tuple(f".quality{e}" for e in _YAML)):
                    names.add(f"{zone_dir.name}.{path.name.split('.quality')[0]}")
                elif path.suffix in (".sql", *_YAML) and _quality_key(path) is not None:
                    names.add(f"{zone_dir.name}.{path.stem}")
    quality = project.root / QUALITY_DIR
    if quality.is_dir():
        for path in quality.iterdir():
            if path.suffix in _YAML and path.stem.count(".") == 1:
                names.add(path.stem)
    return sorted(names)
