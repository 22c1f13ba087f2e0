"""Data quality (our Glue Data Quality / Deequ): rules, evaluation, history, quarantine.

Rules are YAML in the spirit of DQDL (:mod:`fluvial.quality.rules`, read by
:mod:`fluvial.quality.parse`), found beside a
model or under ``quality/`` (:func:`load_rules`). :func:`evaluate` checks them on an Arrow
table with one DuckDB query per rule and returns a :class:`QualityReport`;
:func:`record` keeps it in the history that relative row counts and anomaly detection
read; :func:`quarantine` appends the failing rows to ``quarantine.<zone>__<name>`` and
:func:`passing_rows` gives the rest. See ``docs/quality.md``.
"""

from __future__ import annotations

from fluvial.quality.evaluate import QualityReport, RuleResult, evaluate, passing_rows
from fluvial.quality.files import load_rules, rule_sources, tables_with_rules
from fluvial.quality.history import History, open_history, record
from fluvial.quality.parse import RULE_KINDS, load_rule_file, parse_rules
from fluvial.quality.quarantine import quarantine, quarantine_table
from fluvial.quality.rules import (
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

__all__ = [
    "RULE_KINDS",
    "Bounds",
    "ColumnValues",
    "CustomSql",
    "DataFreshness",
    "DetectAnomalies",
    "History",
    "IsComplete",
    "IsPrimaryKey",
    "IsUnique",
    "QualityReport",
    "ReferentialIntegrity",
    "RowCount",
    "Rule",
    "RuleResult",
    "evaluate",
    "load_rule_file",
    "load_rules",
    "open_history",
    "parse_rules",
    "passing_rows",
    "quarantine",
    "quarantine_table",
    "record",
    "rule_sources",
    "tables_with_rules",
]
