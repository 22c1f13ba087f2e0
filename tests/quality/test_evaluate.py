"""Every rule kind on orders with known defects, against expectations computed in Python."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pytest
from tests.quality.conftest import START, USERS, make_orders, multiset, positions

from fluvial.errors import ConfigError, NotFoundError, SqlError, UsageError
from fluvial.project import Project
from fluvial.quality import evaluate, parse_rules, passing_rows
from fluvial.quality.evaluate import QualityReport

TABLE = "refined.orders"


@pytest.fixture(scope="module")
def orders() -> pa.Table:
    return make_orders(400, seed=7)


def col(data: pa.Table, name: str) -> list[Any]:
    return data.column(name).to_pylist()


def run(data: pa.Table, *rules: dict[str, Any], project: Project | None = None) -> QualityReport:
    return evaluate(project, TABLE, data, parse_rules(list(rules)))


def failing(report: QualityReport, index: int = 0) -> list[int]:
    """Positions of the rows the *index*-th rule failed (only error rules are kept)."""
    name = report.results[index].name
    rules = report.failing_rows.column("_rule").to_pylist()
    rows = report.failing_index.to_pylist()
    return sorted(r for r, names in zip(rows, rules, strict=True) if name in names.split("; "))


def key_counts(data: pa.Table, cols: list[str]) -> tuple[list[tuple[Any, ...]], Counter[Any]]:
    keys = list(zip(*(col(data, c) for c in cols), strict=True))
    return keys, Counter(k for k in keys if None not in k)


def test_is_complete(orders: pa.Table) -> None:
    report = run(orders, {"IsComplete": "kind"})
    expected = positions(v is None for v in col(orders, "kind"))
    assert expected and failing(report) == expected
    result = report.results[0]
    assert not result.passed and result.failing_rows == len(expected)
    assert result.metrics["completeness"] == pytest.approx(1 - len(expected) / orders.num_rows)


@pytest.mark.parametrize("cols", [["order_id"], ["order_id", "line"]])
def test_is_unique_fails_every_copy_and_ignores_null_keys(
    orders: pa.Table, cols: list[str]
) -> None:
    report = run(orders, {"IsUnique": cols if len(cols) > 1 else cols[0]})
    keys, counts = key_counts(orders, cols)
    expected = positions(None not in k and counts[k] > 1 for k in keys)
    assert expected and failing(report) == expected


def test_is_primary_key(orders: pa.Table) -> None:
    report = run(orders, {"IsPrimaryKey": ["order_id", "line"]})
    keys, counts = key_counts(orders, ["order_id", "line"])
    expected = positions(None in k or counts[k] > 1 for k in keys)
    assert failing(report) == expected
    assert any(None in keys[i] for i in expected) and any(None not in keys[i] for i in expected)


def test_column_values_in_and_not_in(orders: pa.Table) -> None:
    allowed = ["web", "app", "store"]
    report = run(
        orders,
        {"ColumnValues": {"column": "kind", "in": allowed}},
        {"ColumnValues": {"column": "kind", "not_in": ["store"]}},
    )
    kinds = col(orders, "kind")
    assert failing(report, 0) == positions(v is not None and v not in allowed for v in kinds)
    assert failing(report, 1) == positions(v == "store" for v in kinds)
    assert report.results[1].name == "ColumnValues(kind) #2"


def test_column_values_between_and_min(orders: pa.Table) -> None:
    report = run(
        orders,
        {"ColumnValues": {"column": "amount", "between": [0, 150]}},
        {"ColumnValues": {"column": "amount", "min": 0, "allow_null": False}},
    )
    amounts = col(orders, "amount")
    assert failing(report, 0) == positions(v is not None and not 0 <= v <= 150 for v in amounts)
    assert failing(report, 1) == positions(v is None or v < 0 for v in amounts)


def test_column_values_between_timestamps(orders: pa.Table) -> None:
    lo, hi = START + timedelta(days=1), START + timedelta(days=3)
    report = run(orders, {"ColumnValues": {"column": "at", "between": [lo.isoformat(), str(hi)]}})
    assert failing(report) == positions(not lo <= v <= hi for v in col(orders, "at"))


def test_column_values_matches_whole_value(orders: pa.Table) -> None:
    pattern = r"u\d+@shop\.example"
    report = run(orders, {"ColumnValues": {"column": "email", "matches": pattern}})
    emails = col(orders, "email")
    expected = positions(v is not None and re.fullmatch(pattern, v) is None for v in emails)
    assert expected and failing(report) == expected
    # a partial match is not enough
    part = run(orders, {"ColumnValues": {"column": "email", "matches": "u"}})
    assert failing(part) == positions(v is not None for v in emails)


def test_referential_integrity(quality_project: Project, orders: pa.Table) -> None:
    report = run(
        orders,
        {"ReferentialIntegrity": {"columns": "user_id", "references": "curated.dim_users.user_id"}},
        project=quality_project,
    )
    users = col(orders, "user_id")
    expected = positions(v is not None and v >= USERS for v in users)
    assert expected and failing(report) == expected
    with pytest.raises(NotFoundError, match=r"did you mean 'curated\.dim_users'"):
        run(
            orders,
            {"ReferentialIntegrity": {"columns": "user_id", "references": "curated.dim_user.id"}},
            project=quality_project,
        )


def test_custom_sql_number(orders: pa.Table) -> None:
    mean = statistics.fmean(v for v in col(orders, "amount") if v is not None)
    sql = "SELECT avg(amount) FROM data"
    ok = run(orders, {"CustomSql": {"sql": sql, "between": [mean - 1, mean + 1]}})
    bad = run(orders, {"CustomSql": {"sql": sql, "max": mean - 1}})
    assert ok.passed and not bad.passed
    assert ok.results[0].metrics["value"] == pytest.approx(mean)
    assert bad.failing_rows.num_rows == 0  # a number fails the batch, not rows


def test_custom_sql_rows_matches_on_returned_columns(orders: pa.Table) -> None:
    report = run(
        orders, {"CustomSql": {"sql": "SELECT order_id FROM data WHERE amount > 190", "rows": True}}
    )
    ids, amounts = col(orders, "order_id"), col(orders, "amount")
    returned = {i for i, a in zip(ids, amounts, strict=True) if a is not None and a > 190}
    expected = positions(i in returned for i in ids)
    assert expected and failing(report) == expected
    star = run(orders, {"CustomSql": {"sql": "SELECT * FROM data WHERE line = 2", "rows": True}})
    assert failing(star) == positions(v == 2 for v in col(orders, "line"))


def test_row_count_bounds(orders: pa.Table) -> None:
    n = orders.num_rows
    assert run(orders, {"RowCount": {"between": [n, n]}}).passed
    assert not run(orders, {"RowCount": {"min": n + 1}}).passed
    assert run(orders, {"RowCount": n}).passed


def test_data_freshness(orders: pa.Table) -> None:
    newest = max(col(orders, "at"))
    rules = parse_rules([{"DataFreshness": {"column": "at", "max_age": "2h"}}])
    fresh = evaluate(None, TABLE, orders, rules, now=newest + timedelta(minutes=119))
    stale = evaluate(None, TABLE, orders, rules, now=newest + timedelta(minutes=121))
    assert fresh.passed and not stale.passed
    assert stale.results[0].metrics["age_seconds"] == pytest.approx(121 * 60)


def test_warn_rules_report_but_do_not_quarantine(orders: pa.Table) -> None:
    report = run(orders, {"IsComplete": "kind", "severity": "warn"})
    assert report.passed and report.warnings and report.failing_rows.num_rows == 0
    assert report.results[0].failing_rows > 0


ALL_ROW_RULES: list[dict[str, Any]] = [
    {"IsComplete": "kind"},
    {"IsUnique": "order_id"},
    {"ColumnValues": {"column": "amount", "min": 0}},
    {"ColumnValues": {"column": "email", "matches": r"u\d+@shop\.example"}},
    {"ColumnValues": {"column": "kind", "in": ["web", "app"]}, "severity": "warn"},
    {"CustomSql": {"sql": "SELECT * FROM data WHERE line = 1 AND amount > 100", "rows": True}},
]


def _expected_rules(data: pa.Table) -> dict[int, list[str]]:
    """For each failing row, the error rules it fails, computed independently in Python."""
    kind, ids = col(data, "kind"), col(data, "order_id")
    amount, email, line = col(data, "amount"), col(data, "email"), col(data, "line")
    counts = Counter(i for i in ids if i is not None)
    checks = {
        "IsComplete(kind)": [k is None for k in kind],
        "IsUnique(order_id)": [i is not None and counts[i] > 1 for i in ids],
        "ColumnValues(amount)": [a is not None and a < 0 for a in amount],
        "ColumnValues(email)": [
            e is not None and re.fullmatch(r"u\d+@shop\.example", e) is None for e in email
        ],
        "CustomSql": [
            ln == 1 and a is not None and a > 100 for ln, a in zip(line, amount, strict=True)
        ],
    }
    out: dict[int, list[str]] = {}
    for name, fails in checks.items():
        for i in positions(fails):
            out.setdefault(i, []).append(name)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_partition_invariant(seed: int) -> None:
    data = make_orders(300, seed=seed, duplicates=25)
    report = run(data, *ALL_ROW_RULES)
    passing = passing_rows(report, data)
    quarantined = report.failing_rows.drop_columns(["_rule"])
    # passing + quarantined rows = the input exactly, as multisets
    assert multiset(passing) + multiset(quarantined) == multiset(data)
    assert passing.num_rows + quarantined.num_rows == data.num_rows
    # each failing row once, naming every error rule it failed, in rule order
    expected = _expected_rules(data)
    got = dict(
        zip(
            report.failing_index.to_pylist(),
            (r.split("; ") for r in report.failing_rows.column("_rule").to_pylist()),
            strict=True,
        )
    )
    assert got == expected
    assert any(len(v) > 1 for v in expected.values())
    assert quarantined.schema == data.schema


def test_no_rules_and_empty_data() -> None:
    data = make_orders(50, seed=4).slice(0, 0)
    report = run(data, {"IsComplete": "kind"}, {"RowCount": {"min": 1}})
    assert report.rows == 0 and not report.passed
    assert passing_rows(report, data).num_rows == 0
    empty = evaluate(None, TABLE, make_orders(5), [])
    assert empty.passed and empty.failing_rows.num_rows == 0
    assert empty.failing_rows.column_names[-1] == "_rule"


def test_errors_name_the_rule(orders: pa.Table) -> None:
    with pytest.raises(ConfigError, match=r"column 'knd' does not exist; did you mean 'kind'"):
        run(orders, {"IsComplete": "knd"})
    with pytest.raises(ConfigError, match=r"rule 'ColumnValues\(amount\)'"):
        run(orders, {"ColumnValues": {"column": "amount", "min": "lots"}})
    with pytest.raises(SqlError, match="expected one number"):
        run(orders, {"CustomSql": {"sql": "SELECT amount FROM data", "min": 0}})
    with pytest.raises(ConfigError, match="not a column of the data"):
        run(orders, {"CustomSql": {"sql": "SELECT 1 AS x FROM data", "rows": True}})
    with pytest.raises(SqlError, match="CustomSql"):
        run(orders, {"CustomSql": {"sql": "SELECT nope FROM data", "min": 0}})
    report = run(orders, {"IsComplete": "kind"})
    with pytest.raises(UsageError, match="the report is of"):
        passing_rows(report, orders.slice(1))


def test_to_dict_is_json_ready(orders: pa.Table) -> None:
    import json

    report = run(orders, {"IsComplete": "kind"}, {"RowCount": {"min": 1}})
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["table"] == TABLE and doc["rows"] == orders.num_rows
    assert [r["name"] for r in doc["results"]] == ["IsComplete(kind)", "RowCount"]
    assert doc["profile"]["row_count"] == orders.num_rows
    nulls = sum(v is None for v in col(orders, "kind"))
    assert doc["profile"]["null_rate:kind"] == pytest.approx(nulls / orders.num_rows)


def test_many_rules_label_rows_across_bit_words(orders: pa.Table) -> None:
    rules: list[dict[str, Any]] = [
        {"ColumnValues": {"column": "order_id", "not_in": [j]}} for j in range(70)
    ]
    rules.append({"ColumnValues": {"column": "order_id", "max": 5}})
    report = run(orders, *rules)
    names = [r.name for r in report.results]
    assert names[1] == "ColumnValues(order_id) #2" and len(set(names)) == 71
    expected = {}
    for i, v in enumerate(col(orders, "order_id")):
        fails = ([names[v]] if v is not None and v < 70 else []) + (
            [names[70]] if v is not None and v > 5 else []
        )
        if fails:
            expected[i] = "; ".join(fails)
    got = dict(
        zip(
            report.failing_index.to_pylist(),
            report.failing_rows.column("_rule").to_pylist(),
            strict=True,
        )
    )
    assert got == expected
    assert any(";" in v for v in expected.values())
