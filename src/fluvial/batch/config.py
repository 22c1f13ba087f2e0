"""A model's configuration: the front matter or sidecar keys, validated with file:line errors.

>>> cfg = parse_config({"materialized": "incremental", "incremental_strategy": "merge",
...                     "unique_key": "event_id"}, zone="refined", where=lambda key: "m.sql:2")
>>> cfg.materialized, cfg.strategy, cfg.unique_key
('incremental', 'merge', ('event_id',))
>>> parse_duration("1h30m")
5400.0
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fluvial.errors import ConfigError, did_you_mean

__all__ = [
    "MATERIALIZATIONS",
    "STRATEGIES",
    "Freshness",
    "ModelConfig",
    "PartitionBy",
    "parse_config",
    "parse_duration",
]

Materialization = Literal["view", "table", "incremental", "snapshot"]
Strategy = Literal["append", "merge", "insert_overwrite"]

MATERIALIZATIONS: tuple[str, ...] = ("view", "table", "incremental", "snapshot")
STRATEGIES: tuple[str, ...] = ("append", "merge", "insert_overwrite")
TRANSFORMS: tuple[str, ...] = ("identity", "hour", "day", "month", "year")

KEYS = (
    "materialized",
    "incremental_strategy",
    "unique_key",
    "partition_by",
    "check_cols",
    "invalidate_hard_deletes",
    "freshness",
    "description",
    "owner",
    "tags",
    "columns",
    "quality",
    "meta",
)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PARTITION = re.compile(r"^\s*(?:(\w+)\s*\(\s*(\w+)\s*\)|(\w+))\s*$")


def parse_duration(value: object) -> float:
    """Seconds in ``"2h"``, ``"1h30m"``, ``"45 s"``, ``"1d"`` or a number of seconds.

    Raises:
        ValueError: the value is not a duration.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as '2h', found {value!r}")
    text = value.strip().lower()
    parts = _DURATION.findall(text)
    if not parts or _DURATION.sub("", text).strip():
        raise ValueError(f"expected a duration such as '2h' or '30m', found {value!r}")
    return sum(float(n) * _UNIT[unit] for n, unit in parts)


@dataclass(frozen=True)
class PartitionBy:
    """How an output table is partitioned: an Iceberg transform of one column."""

    column: str
    transform: str = "identity"

    def __str__(self) -> str:
        return self.column if self.transform == "identity" else f"{self.transform}({self.column})"

    @property
    def is_time(self) -> bool:
        """Whether the transform cuts time into periods (hour, day, month, year)."""
        return self.transform != "identity"


@dataclass(frozen=True)
class Freshness:
    """A freshness SLA: how long after its last successful build a model is stale."""

    warn_after: float | None = None
    error_after: float | None = None


@dataclass(frozen=True)
class ModelConfig:
    """A model's validated configuration."""

    materialized: Materialization = "table"
    strategy: Strategy | None = None
    unique_key: tuple[str, ...] = ()
    partition_by: PartitionBy | None = None
    check_cols: tuple[str, ...] | None = None  # None: every column
    invalidate_hard_deletes: bool = False
    freshness: Freshness | None = None
    description: str = ""
    owner: str = ""
    tags: tuple[str, ...] = ()
    columns: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    quality: Any = None  # applied by fluvial.quality; kept as written
    meta: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (what ``fluvial batch ls --json`` shows)."""
        return {
            "materialized": self.materialized,
            "incremental_strategy": self.strategy,
            "unique_key": list(self.unique_key),
            "partition_by": str(self.partition_by) if self.partition_by else None,
            "check_cols": list(self.check_cols) if self.check_cols is not None else None,
            "invalidate_hard_deletes": self.invalidate_hard_deletes,
            "freshness": (
                {"warn_after": self.freshness.warn_after, "error_after": self.freshness.error_after}
                if self.freshness
                else None
            ),
            "description": self.description,
            "owner": self.owner,
            "tags": list(self.tags),
        }


def _names(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str) and value.strip():
        return (value.strip(),)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(v.strip() for v in value)
    raise ValueError(f"{what}: expected a column name or a list of them, found {value!r}")


def _partition(value: object) -> PartitionBy:
    match = _PARTITION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"partition_by: expected 'column' or 'day(column)', found {value!r}")
    transform, column, plain = match.groups()
    if plain:
        return PartitionBy(plain)
    transform = transform.lower().removesuffix("s")  # days(...) as Iceberg's Java API spells it
    if transform not in TRANSFORMS:
        raise ValueError(
            f"partition_by: unknown transform '{transform}' (one of {', '.join(TRANSFORMS)})"
            f"{did_you_mean(transform, TRANSFORMS)}"
        )
    return PartitionBy(column, transform)


def _freshness(value: object) -> Freshness:
    if not isinstance(value, dict):
        raise ValueError(
            f"freshness: expected {{warn_after: 2h, error_after: 6h}}, found {value!r}"
        )
    unknown = set(value) - {"warn_after", "error_after"}
    if unknown:
        key = sorted(unknown)[0]
        hint = did_you_mean(key, ["warn_after", "error_after"])
        raise ValueError(f"freshness: unknown key '{key}'{hint}")
    warn = value.get("warn_after")
    error = value.get("error_after")
    return Freshness(
        parse_duration(warn) if warn is not None else None,
        parse_duration(error) if error is not None else None,
    )


def _check(raw: Mapping[str, Any], zone: str, at: Callable[[str], str]) -> None:
    for key in raw:
        if key not in KEYS:
            raise ConfigError(f"{at(key)}: unknown model setting '{key}'{did_you_mean(key, KEYS)}")
    materialized = raw.get("materialized", "table")
    if materialized not in MATERIALIZATIONS:
        raise ConfigError(
            f"{at('materialized')}: expected one of {', '.join(MATERIALIZATIONS)}, "
            f"found {materialized!r}{did_you_mean(str(materialized), MATERIALIZATIONS)}"
        )
    if materialized == "view" and zone != "marts":
        raise ConfigError(
            f"{at('materialized')}: a view is only for marts (a DuckDB view in the "
            f"warehouse); a {zone} model must be a table, incremental or snapshot"
        )
    strategy = raw.get("incremental_strategy")
    if strategy is not None and materialized != "incremental":
        raise ConfigError(
            f"{at('incremental_strategy')}: only for materialized: incremental, "
            f"found materialized: {materialized}"
        )
    if strategy is not None and strategy not in STRATEGIES:
        raise ConfigError(
            f"{at('incremental_strategy')}: expected one of {', '.join(STRATEGIES)}, "
            f"found {strategy!r}{did_you_mean(str(strategy), STRATEGIES)}"
        )
    for key in ("check_cols", "invalidate_hard_deletes"):
        if key in raw and materialized != "snapshot":
            raise ConfigError(f"{at(key)}: only for materialized: snapshot")
    needs_key = materialized == "snapshot" or strategy == "merge"
    if needs_key and not raw.get("unique_key"):
        what = "a snapshot" if materialized == "snapshot" else "the merge strategy"
        raise ConfigError(f"{at('materialized')}: {what} needs a unique_key")
    if strategy == "insert_overwrite" and not raw.get("partition_by"):
        raise ConfigError(f"{at('incremental_strategy')}: insert_overwrite needs partition_by")


def parse_config(raw: Mapping[str, Any], *, zone: str, where: Callable[[str], str]) -> ModelConfig:
    """Validate a model's raw settings; *where(key)* says ``file:line`` for error messages.

    Raises:
        ConfigError: an unknown key or an invalid value, with its file and line.
    """
    _check(raw, zone, where)
    key = ""
    try:
        key = "unique_key"
        unique = _names(raw["unique_key"], key) if raw.get("unique_key") else ()
        key = "partition_by"
        partition = _partition(raw["partition_by"]) if raw.get("partition_by") else None
        key = "check_cols"
        check = raw.get("check_cols", "all")
        check_cols = None if check == "all" else _names(check, key)
        key = "invalidate_hard_deletes"
        hard = raw.get("invalidate_hard_deletes", False)
        if not isinstance(hard, bool):
            raise ValueError(f"{key}: expected true or false, found {hard!r}")
        key = "freshness"
        fresh = _freshness(raw["freshness"]) if raw.get("freshness") is not None else None
        key = "tags"
        tags = raw.get("tags") or []
        tags = [tags] if isinstance(tags, str) else tags
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ValueError(f"tags: expected a list of strings, found {raw.get('tags')!r}")
        key = "columns"
        columns = raw.get("columns") or {}
        if not isinstance(columns, dict) or not all(
            isinstance(v, dict | None) for v in columns.values()
        ):
            raise ValueError("columns: expected a mapping of column name to {description, tags}")
        key = "description"
        for text_key in ("description", "owner"):
            key = text_key
            if not isinstance(raw.get(text_key, ""), str):
                raise ValueError(f"{text_key}: expected text, found {raw[text_key]!r}")
    except ValueError as exc:
        raise ConfigError(f"{where(key)}: {exc}") from None
    materialized = raw.get("materialized", "table")
    strategy = raw.get("incremental_strategy")
    if materialized == "incremental" and strategy is None:
        strategy = "append"
    return ModelConfig(
        materialized=materialized,
        strategy=strategy,
        unique_key=unique,
        partition_by=partition,
        check_cols=check_cols,
        invalidate_hard_deletes=hard,
        freshness=fresh,
        description=raw.get("description", "") or "",
        owner=raw.get("owner", "") or "",
        tags=tuple(tags),
        columns={str(k): dict(v or {}) for k, v in columns.items()},
        quality=raw.get("quality"),
        meta=dict(raw.get("meta") or {}),
    )
