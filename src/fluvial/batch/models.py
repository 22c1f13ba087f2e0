"""Models: one SELECT per file under ``models/<zone>/``, its settings and what it reads.

A model ``models/refined/clicks.sql`` builds the table ``refined.clicks``. Its settings
come from a leading YAML block comment (``/*--- … ---*/``) or a sidecar ``clicks.yml``;
its dependencies are the tables its SELECT reads (parsed with sqlglot, CTEs excluded).

>>> import pathlib, tempfile
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "refined").mkdir()
>>> _ = (root / "refined" / "clicks.sql").write_text(
...     "/*---\\nmaterialized: table\\n---*/\\n"
...     "WITH c AS (SELECT * FROM raw.events) SELECT * FROM c WHERE event_type = 'click'")
>>> [(m.name, m.config.materialized, m.depends_on) for m in discover(root)]
[('refined.clicks', 'table', ('raw.events',))]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlglot
import yaml
from sqlglot import exp
from sqlglot.optimizer.scope import traverse_scope

from fluvial.batch.config import ModelConfig, parse_config
from fluvial.errors import ConfigError, NotFoundError, SqlError, did_you_mean

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = [
    "MODEL_ZONES",
    "Model",
    "check_dependencies",
    "discover",
    "existing_tables",
    "load_models",
    "parse_model",
]

#: where models may write: the lake's refined and curated zones, and the warehouse's marts
MODEL_ZONES = ("refined", "curated", "marts")

_FRONT = re.compile(r"\A(\s*)/\*---[ \t]*\n(.*?)^[ \t]*---\*/", re.DOTALL | re.MULTILINE)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Model:
    """A model: the table it builds, its SELECT, its settings and the tables it reads."""

    name: str  # zone.table
    path: Path
    sql: str
    config: ModelConfig
    depends_on: tuple[str, ...]
    #: the file line where the SQL starts (after the front matter), for error messages
    sql_line: int = 1

    @property
    def zone(self) -> str:
        """``refined``, ``curated`` or ``marts``."""
        return self.name.partition(".")[0]

    @property
    def table(self) -> str:
        """The table's name within its zone."""
        return self.name.partition(".")[2]

    @property
    def in_lake(self) -> bool:
        """Whether the output is an Iceberg table (refined, curated) rather than a mart."""
        return self.zone != "marts"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "name": self.name,
            "path": str(self.path),
            "depends_on": list(self.depends_on),
            **self.config.as_dict(),
        }


def _yaml_settings(
    text: str, source: str, first_line: int
) -> tuple[dict[str, Any], dict[str, int]]:
    """The settings in *text* and the file line of each top-level key."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = first_line + mark.line if mark is not None else first_line
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}:{line}: invalid YAML: {problem}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{source}:{first_line}: expected settings as 'key: value' lines")
    lines = {str(k.value): first_line + k.start_mark.line for k, _ in node.value}
    return data, lines


def _front_matter(text: str, source: str) -> tuple[dict[str, Any], dict[str, int], str, int]:
    """(settings, key lines, SQL body, the body's first line) of a model file."""
    match = _FRONT.match(text)
    if match is None:
        return {}, {}, text, 1
    first = match.group(1).count("\n") + 2  # the line after '/*---'
    settings, lines = _yaml_settings(match.group(2), source, first)
    body_line = text.count("\n", 0, match.end()) + 1
    return settings, lines, text[match.end() :], body_line


def _dependencies(sql: str, source: str, line0: int) -> tuple[str, ...]:
    """The tables a SELECT reads, as ``zone.table``; CTEs and table functions excluded."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except sqlglot.errors.ParseError as exc:
        err = exc.errors[0] if exc.errors else {}
        line = err.get("line")
        raise SqlError(
            str(err.get("description") or exc).split("\n")[0],
            line=(line + line0 - 1) if line else None,
            column=err.get("col"),
            source=source,
        ) from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise SqlError(
            f"a model is one SELECT statement, found {len(statements)} statement(s)"
            + (f" starting with {statements[0].key.upper()}" if statements else ""),
            line=line0,
            source=source,
        )
    names: set[str] = set()
    for scope in traverse_scope(statements[0]):
        for node in scope.sources.values():
            if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
                continue
            meta = node.this.meta
            if not node.db or node.catalog:
                raise SqlError(
                    f"name tables as zone.table, found '{node.sql(dialect='duckdb')}'",
                    line=line0 + meta.get("line", 1) - 1,
                    column=meta.get("col"),
                    source=source,
                )
            names.add(f"{node.db}.{node.name}")
    return tuple(sorted(names))


def parse_model(path: Path, models_dir: Path) -> Model:
    """Read one model file (and its sidecar ``<name>.yml``).

    Raises:
        ConfigError: a misplaced file or invalid settings (with file:line).
        SqlError: the SQL does not parse or is not one SELECT (with file:line:column).
    """
    rel = path.relative_to(models_dir)
    source = str(path)
    if len(rel.parts) < 2 or rel.parts[0] not in MODEL_ZONES:
        raise ConfigError(
            f"{source}: models live in models/<zone>/ with zone one of "
            f"{', '.join(MODEL_ZONES)}, found '{rel.as_posix()}'"
        )
    zone, table = rel.parts[0], path.stem
    if not _NAME.match(table):
        raise ConfigError(f"{source}: a model's file name must be an identifier, found '{table}'")
    text = path.read_text(encoding="utf-8")
    settings, lines, body, body_line = _front_matter(text, source)
    where = {k: f"{source}:{v}" for k, v in lines.items()}
    sidecar = path.with_suffix(".yml")
    if sidecar.exists():
        extra, extra_lines = _yaml_settings(sidecar.read_text(encoding="utf-8"), str(sidecar), 1)
        both = sorted(set(extra) & set(settings))
        if both:
            raise ConfigError(
                f"{sidecar}:{extra_lines[both[0]]}: '{both[0]}' is also set in the front "
                f"matter of {source}:{lines[both[0]]}; set it in one place"
            )
        settings = {**settings, **extra}
        where.update({k: f"{sidecar}:{v}" for k, v in extra_lines.items()})
    config = parse_config(
        settings, zone=zone, where=lambda key: where.get(key, f"{source}:{body_line}")
    )
    sql = body.strip().rstrip(";").strip()
    lead = body[: len(body) - len(body.lstrip())].count("\n")
    deps = _dependencies(sql, source, body_line + lead)
    return Model(f"{zone}.{table}", path, sql, config, deps, body_line + lead)


def discover(models_dir: Path) -> list[Model]:
    """Every model under *models_dir* (``**/*.sql``), sorted by name; no table checks.

    Raises:
        ConfigError: two files build the same table, or a file's settings are invalid.
        SqlError: a model's SQL does not parse.
    """
    if not models_dir.is_dir():
        return []
    models: dict[str, Model] = {}
    for path in sorted(models_dir.rglob("*.sql")):
        model = parse_model(path, models_dir)
        if model.name in models:
            raise ConfigError(
                f"{path}: builds {model.name}, like {models[model.name].path}; "
                "a table has one model"
            )
        models[model.name] = model
    return [models[name] for name in sorted(models)]


def existing_tables(project: Project) -> set[str]:
    """The lake's tables and the warehouse's marts that exist now."""
    import duckdb

    from fluvial.lake import open_lake

    with open_lake(project) as lake:
        names = set(lake.tables())
    path = project.data_dir / project.settings.batch.warehouse
    if path.exists():
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.Error:  # another process holds it for writing: marts stay unknown
            return names
        try:
            rows = con.sql(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'marts' "
                "UNION SELECT view_name FROM duckdb_views() WHERE schema_name = 'marts'"
            ).fetchall()
        finally:
            con.close()
        names |= {f"marts.{row[0]}" for row in rows}
    return names


def check_dependencies(models: Iterable[Model], existing: Iterable[str]) -> None:
    """Every table a model reads is a model or an existing table.

    Raises:
        NotFoundError: an unknown table, with the model's file and a suggestion.
    """
    models = list(models)
    known = {m.name for m in models} | set(existing)
    for model in models:
        for dep in model.depends_on:
            if dep not in known:
                line = _line_of(model, dep)
                raise NotFoundError(
                    f"{model.path}:{line}: {model.name} reads '{dep}', which is neither a "
                    f"model nor a table{did_you_mean(dep, sorted(known))}"
                )


def _line_of(model: Model, table: str) -> int:
    zone, _, name = table.partition(".")
    pattern = re.compile(rf"\b{re.escape(zone)}\s*\.\s*{re.escape(name)}\b", re.IGNORECASE)
    for i, line in enumerate(model.sql.splitlines()):
        if pattern.search(line):
            return model.sql_line + i
    return model.sql_line


def load_models(project: Project, existing: Iterable[str] | None = None) -> dict[str, Model]:
    """The project's models by name, each dependency checked against models and tables.

    Raises:
        ConfigError, SqlError: see :func:`discover`.
        NotFoundError: a model reads a table that is neither a model nor existing.
    """
    models = discover(project.root / project.settings.batch.models_dir)
    if existing is None:
        existing = existing_tables(project)
    check_dependencies(models, existing)
    return {m.name: m for m in models}
