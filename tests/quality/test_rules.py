"""Parsing rules from YAML, the errors it gives, and finding a table's rule file."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from tests.quality.conftest import write_rules

from fluvial.errors import ConfigError
from fluvial.project import Project
from fluvial.quality import (
    RULE_KINDS,
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
    load_rule_file,
    load_rules,
    parse_rules,
    tables_with_rules,
)

EVERY_KIND = """
rules:
  - IsComplete: user_id
  - IsUnique: [order_id, line]
  - IsPrimaryKey: order_id
    severity: warn
  - ColumnValues: {column: kind, in: [web, app], matches: '[a-z]+'}
  - ColumnValues: {column: amount, between: [0, 100], allow_null: false}
    name: amount in range
  - RowCount: {min: 1, within_pct: 50, last_runs: 5}
  - ReferentialIntegrity: {columns: user_id, references: curated.dim_users.user_id}
  - ReferentialIntegrity:
      columns: [a, b]
      references: {table: curated.pairs, columns: [x, y]}
  - DataFreshness: {column: at, max_age: 90m}
  - CustomSql: {sql: "SELECT count(*) FROM data WHERE amount < 0;", equals: 0}
  - CustomSql: {sql: SELECT * FROM data WHERE amount < 0, rows: true}
  - DetectAnomalies: {metric: row_count}
  - DetectAnomalies: {metric: null_rate, column: kind, method: iqr, threshold: 3, min_history: 4}
"""


def test_every_kind_parses(tmp_path: Any) -> None:
    path = tmp_path / "r.yml"
    path.write_text(EVERY_KIND)
    rules = load_rule_file(path)
    assert {type(r) for r in rules} == {cls for cls, _, _ in RULE_KINDS.values()}
    assert rules[0] == IsComplete(column="user_id", name="IsComplete(user_id)")
    assert rules[1] == IsUnique(key=("order_id", "line"), name="IsUnique(order_id, line)")
    assert rules[2] == IsPrimaryKey(
        key=("order_id",), name="IsPrimaryKey(order_id)", severity="warn"
    )
    assert rules[3] == ColumnValues(
        column="kind", in_=("web", "app"), matches="[a-z]+", name="ColumnValues(kind)"
    )
    assert rules[4] == ColumnValues(
        column="amount", min=0, max=100, allow_null=False, name="amount in range"
    )
    assert rules[5] == RowCount(bounds=Bounds(min=1), within_pct=50, last_runs=5, name="RowCount")
    assert isinstance(rules[6], ReferentialIntegrity) and isinstance(rules[7], ReferentialIntegrity)
    assert (rules[6].ref_table, rules[6].ref_key) == ("curated.dim_users", ("user_id",))
    assert (rules[7].key, rules[7].ref_table, rules[7].ref_key) == (
        ("a", "b"),
        "curated.pairs",
        ("x", "y"),
    )
    assert rules[8] == DataFreshness(
        column="at", max_age=timedelta(minutes=90), name="DataFreshness(at)"
    )
    assert isinstance(rules[9], CustomSql) and isinstance(rules[10], CustomSql)
    assert rules[9].sql.endswith("< 0") and rules[9].bounds == Bounds(min=0, max=0)
    assert rules[10].row_level and not rules[9].row_level
    assert (rules[9].name, rules[10].name) == ("CustomSql", "CustomSql #2")
    assert rules[11] == DetectAnomalies(metric="row_count", name="DetectAnomalies(row_count)")
    assert rules[12] == DetectAnomalies(
        metric="null_rate",
        column="kind",
        method="iqr",
        threshold=3,
        min_history=4,
        name="DetectAnomalies(null_rate(kind))",
    )
    assert rules[12].metric_key == "null_rate:kind"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"IsCompleet": "x"}, r"rule 2: unknown rule 'IsCompleet'; did you mean 'IsComplete'\?"),
        ({"IsComplete": "x", "IsUnique": "y"}, "exactly one rule kind per rule"),
        ({"IsComplete": "x", "severity": "fatal"}, "expected severity error or warn"),
        ({"ColumnValues": {"column": "x", "in": []}}, "non-empty list for 'in'"),
        ({"ColumnValues": {"column": "x", "betwen": [1, 2]}}, "did you mean 'between'"),
        ({"ColumnValues": {"column": "x"}}, "ColumnValues needs a condition"),
        ({"ColumnValues": {"column": "x", "matches": "("}}, "not a valid regular expression"),
        ({"RowCount": {"min": 5, "max": 1}}, r"min \(5\) is greater than max \(1\)"),
        ({"RowCount": {"min": "many"}}, "expected a number for 'min'"),
        ({"RowCount": {}}, "RowCount needs"),
        ({"ReferentialIntegrity": {"columns": "x", "references": "users"}}, "zone.table.column"),
        ({"ReferentialIntegrity": {"columns": ["a", "b"], "references": "c.t.x"}}, "2 column"),
        ({"DataFreshness": {"column": "at", "max_age": "soon"}}, "expected a duration"),
        ({"DataFreshness": {"column": "at"}}, "DataFreshness needs 'max_age'"),
        ({"CustomSql": {"sql": "SELECT 1"}}, "CustomSql needs bounds"),
        ({"CustomSql": {"sql": "SELECT 1", "rows": True, "min": 0}}, "not both"),
        ({"DetectAnomalies": {"metric": "nul_rate"}}, "did you mean 'null_rate'"),
        ({"DetectAnomalies": {"metric": "null_rate"}}, "needs 'column'"),
        ({"DetectAnomalies": {"metric": "row_count", "method": "zscor"}}, "did you mean 'zscore'"),
        ({"IsComplete": 3}, "expected a column name"),
        ("IsComplete(x)", "expected a mapping"),
    ],
)
def test_errors_say_file_rule_and_what(rule: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_rules([{"IsComplete": "ok"}, rule], source="models/refined/x.quality.yml")
    assert str(info.value).startswith("models/refined/x.quality.yml: rule 2: ")


def test_file_level_errors(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="two rules are named 'same'"):
        parse_rules([{"IsComplete": "a", "name": "same"}, {"IsComplete": "b", "name": "same"}])
    with pytest.raises(ConfigError, match="did you mean 'rules'"):
        parse_rules({"rule": []})
    bad = tmp_path / "bad.yml"
    bad.write_text("rules:\n  - IsComplete: [a\n")
    with pytest.raises(ConfigError, match=r"bad.yml:\d+:\d+: invalid YAML"):
        load_rule_file(bad)
    assert parse_rules(None) == [] and parse_rules({"rules": []}) == []


def test_where_rules_live(project: Project) -> None:
    write_rules(project, "models/refined/orders.quality.yml", "- IsComplete: order_id\n")
    write_rules(project, "quality/raw.events.yml", "rules:\n  - IsUnique: event_id\n")
    write_rules(
        project,
        "models/curated/fact_orders.sql",
        "/*---\nmaterialized: table\nquality:\n  - RowCount: {min: 1}\n---*/\nSELECT 1 AS x\n",
    )
    write_rules(project, "models/curated/dim_users.yml", "quality:\n  - IsPrimaryKey: user_id\n")
    write_rules(
        project, "models/curated/no_rules.sql", "/*---\nmaterialized: view\n---*/\nSELECT 1"
    )
    assert tables_with_rules(project) == [
        "curated.dim_users",
        "curated.fact_orders",
        "raw.events",
        "refined.orders",
    ]
    assert [r.name for r in load_rules(project, "refined.orders")] == ["IsComplete(order_id)"]
    assert [r.name for r in load_rules(project, "raw.events")] == ["IsUnique(event_id)"]
    assert [r.kind for r in load_rules(project, "curated.fact_orders")] == ["RowCount"]
    assert [r.kind for r in load_rules(project, "curated.dim_users")] == ["IsPrimaryKey"]
    assert load_rules(project, "curated.no_rules") == []
    write_rules(project, "quality/refined.orders.yml", "- IsComplete: x\n")
    with pytest.raises(ConfigError, match="defined in 2 places"):
        load_rules(project, "refined.orders")
