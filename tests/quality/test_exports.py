"""fluvial.quality's public surface is deliberate: pin it."""

from __future__ import annotations

import fluvial.quality


def test_exports_are_sorted_present_and_pinned() -> None:
    exported = fluvial.quality.__all__
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    assert all(hasattr(fluvial.quality, name) for name in exported)
    assert set(exported) == {
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
    }
