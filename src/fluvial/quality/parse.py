"""Parsing quality rules from YAML (already loaded, or a file), with errors that say where.

A rule file is a list of rules (or a mapping with a ``rules:`` list). Each rule is a
mapping with exactly one rule kind as its key, whose value is a column, a list of
columns or a mapping of parameters, plus the optional keys ``severity`` (``error``, the
default, or ``warn``) and ``name``::

    rules:
      - IsComplete: user_id
      - IsUnique: event_id
      - ColumnValues: {column: event_type, in: [page_view, click, purchase]}
      - RowCount: {min: 1, within_pct: 50, last_runs: 7}
        severity: warn

>>> rules = parse_rules([{"IsComplete": "user_id"}, {"IsUnique": ["a", "b"], "severity": "warn"}])
>>> [(r.name, r.severity, r.row_level) for r in rules]
[('IsComplete(user_id)', 'error', True), ('IsUnique(a, b)', 'warn', True)]
>>> parse_rules([{"IsCompleet": "x"}], source="q.yml")
Traceback (most recent call last):
...
fluvial.errors.ConfigError: q.yml: rule 1: unknown rule 'IsCompleet'; did you mean 'IsComplete'?
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from fluvial.errors import ConfigError, did_you_mean
from fluvial.quality.rules import (
    SEVERITIES,
    Bounds,
    ColumnValues,
    CustomSql,
    DataFreshness,
    DetectAnomalies,
    IsComplete,
    IsPrimaryKey,
    IsUnique,
    ReferentialIntegrity,
    RowCount,
    Rule,
)

__all__ = ["PARAMETERS", "RULE_KINDS", "load_rule_file", "parse_duration", "parse_rules"]

_COMMON_KEYS = ("severity", "name")


class _RuleSyntaxError(Exception):
    """Internal: what is wrong with one rule (the parser adds file and index)."""


class _Params:
    """A rule's parameter mapping, consumed key by key; leftovers are reported."""

    def __init__(self, kind: str, value: Any, main: str) -> None:
        self.kind = kind
        if isinstance(value, Mapping):
            self.data = {str(k): v for k, v in value.items()}
        elif value is None:
            self.data = {}
        else:  # the short form: the value of the main parameter
            self.data = {main: value}
        self.allowed: list[str] = []
        known = PARAMETERS[kind]
        unknown = sorted(k for k in self.data if k not in known)
        if unknown:
            raise _RuleSyntaxError(
                f"{kind} has no parameter '{unknown[0]}' (parameters: {', '.join(known)})"
                f"{did_you_mean(unknown[0], known)}"
            )

    def take(self, key: str, default: Any = None) -> Any:
        self.allowed.append(key)
        return self.data.pop(key, default)

    def required(self, key: str) -> Any:
        self.allowed.append(key)
        if key not in self.data:
            raise _RuleSyntaxError(f"{self.kind} needs '{key}'")
        return self.data.pop(key)

    def done(self) -> None:
        if self.data:
            key = sorted(self.data)[0]
            raise _RuleSyntaxError(
                f"{self.kind} has no parameter '{key}' (parameters: {', '.join(self.allowed)})"
                f"{did_you_mean(key, self.allowed)}"
            )


def _column(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise _RuleSyntaxError(f"expected a column name for '{what}', found {value!r}")
    return value


def _columns(value: Any, what: str) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    cols = tuple(_column(v, what) for v in items)
    if not cols:
        raise _RuleSyntaxError(f"expected at least one column for '{what}'")
    return cols


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _RuleSyntaxError(f"expected a number for '{what}', found {value!r}")
    return float(value)


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _RuleSyntaxError(f"expected an integer >= {minimum} for '{what}', found {value!r}")
    return value


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise _RuleSyntaxError(f"expected true or false for '{what}', found {value!r}")
    return value


def _pair(value: Any, what: str) -> tuple[Any, Any]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _RuleSyntaxError(f"expected [low, high] for '{what}', found {value!r}")
    return value[0], value[1]


def _bounds(params: _Params) -> Bounds:
    lo, hi = params.take("min"), params.take("max")
    between, equals = params.take("between"), params.take("equals")
    if between is not None:
        if lo is not None or hi is not None:
            raise _RuleSyntaxError("give either 'between' or 'min'/'max', not both")
        lo, hi = _pair(between, "between")
    if equals is not None:
        lo = hi = equals
    bounds = Bounds(
        min=None if lo is None else _number(lo, "min"),
        max=None if hi is None else _number(hi, "max"),
    )
    if bounds.min is not None and bounds.max is not None and bounds.min > bounds.max:
        raise _RuleSyntaxError(f"min ({bounds.min:g}) is greater than max ({bounds.max:g})")
    return bounds


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> timedelta:
    """``"90m"``, ``"2h"``, ``"1d"``, ``"1w"`` or a number of seconds, as a timedelta.

    >>> parse_duration("2h"), parse_duration(30)
    (datetime.timedelta(seconds=7200), datetime.timedelta(seconds=30))
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if match is None:
        raise _RuleSyntaxError(f"expected a duration like '30m', '2h' or '1d', found {value!r}")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _is_complete(p: _Params) -> dict[str, Any]:
    return {"column": _column(p.required("column"), "column")}


def _key_rule(p: _Params) -> dict[str, Any]:
    return {"key": _columns(p.required("columns"), "columns")}


def _column_values(p: _Params) -> dict[str, Any]:
    column = _column(p.required("column"), "column")
    out: dict[str, Any] = {"column": column}
    for key, attr in (("in", "in_"), ("not_in", "not_in")):
        values = p.take(key)
        if values is not None:
            if not isinstance(values, list | tuple) or not values:
                raise _RuleSyntaxError(f"expected a non-empty list for '{key}', found {values!r}")
            out[attr] = tuple(values)
    lo, hi, between = p.take("min"), p.take("max"), p.take("between")
    if between is not None:
        if lo is not None or hi is not None:
            raise _RuleSyntaxError("give either 'between' or 'min'/'max', not both")
        lo, hi = _pair(between, "between")
    out["min"], out["max"] = lo, hi
    pattern = p.take("matches")
    if pattern is not None:
        try:
            re.compile(str(pattern))
        except re.error as exc:
            raise _RuleSyntaxError(f"'matches' is not a valid regular expression: {exc}") from None
        out["matches"] = str(pattern)
    allow = p.take("allow_null")
    if allow is not None:
        out["allow_null"] = _bool(allow, "allow_null")
    conditions = ("in_", "not_in", "min", "max", "matches")
    if all(out.get(c) is None for c in conditions) and out.get("allow_null", True):
        raise _RuleSyntaxError(
            "ColumnValues needs a condition: in, not_in, min, max, between, matches "
            "or allow_null: false"
        )
    return out


def _row_count(p: _Params) -> dict[str, Any]:
    out: dict[str, Any] = {"bounds": _bounds(p)}
    pct = p.take("within_pct")
    if pct is not None:
        out["within_pct"] = _number(pct, "within_pct")
        if out["within_pct"] < 0:
            raise _RuleSyntaxError(f"expected a percentage >= 0 for 'within_pct', found {pct!r}")
    for key in ("last_runs", "min_history"):
        value = p.take(key)
        if value is not None:
            out[key] = _int(value, key, minimum=1)
    if out["bounds"].empty and pct is None:
        raise _RuleSyntaxError("RowCount needs min, max, between, equals or within_pct")
    return out


_REF = re.compile(r"^([A-Za-z_]\w*)\.([A-Za-z_]\w*)\.([A-Za-z_]\w*)$")


def _referential(p: _Params) -> dict[str, Any]:
    key = _columns(p.required("columns"), "columns")
    ref = p.required("references")
    ref_key: tuple[str, ...]
    if isinstance(ref, str):
        match = _REF.match(ref)
        if match is None:
            raise _RuleSyntaxError(f"expected 'references: zone.table.column', found {ref!r}")
        table, ref_key = f"{match.group(1)}.{match.group(2)}", (str(match.group(3)),)
    elif isinstance(ref, Mapping) and "table" in ref and "columns" in ref:
        table = str(ref["table"])
        ref_key = _columns(ref["columns"], "references.columns")
    else:
        raise _RuleSyntaxError(
            f"expected 'references: zone.table.column' or {{table: …, columns: […]}}, found {ref!r}"
        )
    if len(ref_key) != len(key):
        raise _RuleSyntaxError(
            f"{len(key)} column(s) cannot reference {len(ref_key)} column(s) of {table}"
        )
    return {"key": key, "ref_table": table, "ref_key": ref_key}


def _freshness(p: _Params) -> dict[str, Any]:
    return {
        "column": _column(p.required("column"), "column"),
        "max_age": parse_duration(p.required("max_age")),
    }


def _custom_sql(p: _Params) -> dict[str, Any]:
    sql = p.required("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise _RuleSyntaxError(f"expected a query for 'sql', found {sql!r}")
    rows = p.take("rows")
    out: dict[str, Any] = {"sql": sql.strip().rstrip(";"), "bounds": _bounds(p)}
    if rows is not None:
        out["rows"] = _bool(rows, "rows")
    if out.get("rows") and not out["bounds"].empty:
        raise _RuleSyntaxError("CustomSql takes either bounds (a number) or rows: true, not both")
    if not out.get("rows") and out["bounds"].empty:
        raise _RuleSyntaxError("CustomSql needs bounds (min, max, between, equals) or rows: true")
    return out


def _anomalies(p: _Params) -> dict[str, Any]:
    metric = p.required("metric")
    if metric not in ("row_count", "null_rate"):
        raise _RuleSyntaxError(
            f"expected metric row_count or null_rate, found {metric!r}"
            f"{did_you_mean(str(metric), ['row_count', 'null_rate'])}"
        )
    out: dict[str, Any] = {"metric": metric}
    column = p.take("column")
    if metric == "null_rate":
        if column is None:
            raise _RuleSyntaxError("DetectAnomalies of null_rate needs 'column'")
        out["column"] = _column(column, "column")
    elif column is not None:
        raise _RuleSyntaxError("DetectAnomalies of row_count takes no 'column'")
    method = p.take("method")
    if method is not None:
        if method not in ("zscore", "iqr"):
            raise _RuleSyntaxError(
                f"expected method zscore or iqr, found {method!r}"
                f"{did_you_mean(str(method), ['zscore', 'iqr'])}"
            )
        out["method"] = method
    for key in ("threshold", "tolerance"):
        value = p.take(key)
        if value is not None:
            out[key] = _number(value, key)
    for key, minimum in (("min_history", 2), ("last_runs", 2)):
        value = p.take(key)
        if value is not None:
            out[key] = _int(value, key, minimum=minimum)
    return out


_Parser = Callable[[_Params], dict[str, Any]]

_BOUNDS = ("min", "max", "between", "equals")
#: the parameters of every rule kind
PARAMETERS: dict[str, tuple[str, ...]] = {
    "IsComplete": ("column",),
    "IsUnique": ("columns",),
    "IsPrimaryKey": ("columns",),
    "ColumnValues": ("column", "in", "not_in", "min", "max", "between", "matches", "allow_null"),
    "RowCount": (*_BOUNDS, "within_pct", "last_runs", "min_history"),
    "ReferentialIntegrity": ("columns", "references"),
    "DataFreshness": ("column", "max_age"),
    "CustomSql": ("sql", *_BOUNDS, "rows"),
    "DetectAnomalies": (
        "metric",
        "column",
        "method",
        "threshold",
        "min_history",
        "last_runs",
        "tolerance",
    ),
}

#: every rule kind: (its class, its parser, the parameter its short form sets)
RULE_KINDS: dict[str, tuple[type[Rule], _Parser, str]] = {
    "IsComplete": (IsComplete, _is_complete, "column"),
    "IsUnique": (IsUnique, _key_rule, "columns"),
    "IsPrimaryKey": (IsPrimaryKey, _key_rule, "columns"),
    "ColumnValues": (ColumnValues, _column_values, "column"),
    "RowCount": (RowCount, _row_count, "equals"),
    "ReferentialIntegrity": (ReferentialIntegrity, _referential, "columns"),
    "DataFreshness": (DataFreshness, _freshness, "column"),
    "CustomSql": (CustomSql, _custom_sql, "sql"),
    "DetectAnomalies": (DetectAnomalies, _anomalies, "metric"),
}


def _parse_one(item: Any) -> Rule:
    if not isinstance(item, Mapping):
        raise _RuleSyntaxError(f"expected a mapping like {{IsComplete: column}}, found {item!r}")
    kinds = [str(k) for k in item if k not in _COMMON_KEYS]
    if len(kinds) != 1:
        found = ", ".join(kinds) or "none"
        raise _RuleSyntaxError(f"expected exactly one rule kind per rule, found {found}")
    kind = kinds[0]
    if kind not in RULE_KINDS:
        raise _RuleSyntaxError(f"unknown rule '{kind}'{did_you_mean(kind, RULE_KINDS)}")
    cls, parser, main = RULE_KINDS[kind]
    params = _Params(kind, item[kind], main)
    fields = parser(params)
    params.done()
    severity = item.get("severity", "error")
    if severity not in SEVERITIES:
        raise _RuleSyntaxError(
            f"expected severity error or warn, found {severity!r}"
            f"{did_you_mean(str(severity), SEVERITIES)}"
        )
    name = item.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip() or ";" in name):
        raise _RuleSyntaxError(f"expected a non-empty name without ';', found {name!r}")
    rule = cls(severity=severity, name=(name or "").strip(), **fields)
    return rule


def parse_rules(value: Any, *, source: str = "rules") -> list[Rule]:
    """Parse rules from already-loaded YAML (a list, or a mapping with a ``rules:`` list).

    Unnamed rules are named after their kind and columns; when two would share a name the
    later ones get ``#2``, ``#3``… Explicit names must be unique.

    Raises:
        ConfigError: ``<source>: rule <n>: <what is wrong>`` (n counts from 1).
    """
    if isinstance(value, Mapping):
        extra = sorted(str(k) for k in value if k != "rules")
        if extra:
            raise ConfigError(
                f"{source}: expected only a 'rules' key, found '{extra[0]}'"
                f"{did_you_mean(extra[0], ['rules'])}"
            )
        value = value.get("rules")
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{source}: expected a list of rules, found {type(value).__name__}")
    rules: list[Rule] = []
    for index, item in enumerate(value, start=1):
        try:
            rules.append(_parse_one(item))
        except _RuleSyntaxError as exc:
            raise ConfigError(f"{source}: rule {index}: {exc}") from None
    return _name(rules, source)


def _name(rules: list[Rule], source: str) -> list[Rule]:
    explicit = [r.name for r in rules if r.name]
    dupes = sorted({n for n in explicit if explicit.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: two rules are named '{dupes[0]}'")
    taken = set(explicit)
    named: list[Rule] = []
    for rule in rules:
        if not rule.name:
            base = candidate = rule.default_name()
            n = 1
            while candidate in taken:
                n += 1
                candidate = f"{base} #{n}"
            rule = replace(rule, name=candidate)
        taken.add(rule.name)
        named.append(rule)
    return named


def load_rule_file(path: Path) -> list[Rule]:
    """Parse the rules of one YAML file.

    Raises:
        ConfigError: the file is not valid YAML or a rule is wrong (file and rule index).
    """
    try:
        value = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read rule file {path}: {exc}") from exc
    return parse_rules(value, source=str(path))
