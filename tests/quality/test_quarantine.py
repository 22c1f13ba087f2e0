"""Quarantine: failing rows land in quarantine.<zone>__<name>, passing rows + them = input."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest
from tests.quality.conftest import make_orders, multiset

from fluvial.errors import UsageError
from fluvial.lake import append, connect, open_lake
from fluvial.project import Project
from fluvial.quality import evaluate, parse_rules, passing_rows, quarantine

TABLE = "refined.orders"
RULES = [
    {"IsPrimaryKey": ["order_id", "line"]},
    {"ColumnValues": {"column": "kind", "in": ["web", "app", "store"]}},
    {"ReferentialIntegrity": {"columns": "user_id", "references": "curated.dim_users.user_id"}},
]


def test_quarantine_then_write_keeps_every_row_once(quality_project: Project) -> None:
    data = make_orders(300, seed=11, duplicates=20)
    report = evaluate(quality_project, TABLE, data, parse_rules(RULES))
    assert not report.passed and report.failing_rows.num_rows > 0
    at = datetime(2026, 2, 1, 12, tzinfo=UTC)
    assert quarantine(quality_project, TABLE, report.failing_rows, at=at) == len(
        report.failing_index
    )
    passing = passing_rows(report, data)
    with open_lake(quality_project) as lake:
        append(lake.create_table(TABLE, data.schema, time_column="at"), passing)
        quarantined = lake.table("quarantine.refined__orders")
        assert [str(f.transform) for f in quarantined.spec().fields] == ["day"]
        con = connect(lake)
        stored = con.sql("SELECT * FROM quarantine.refined__orders").to_arrow_table()
        written = con.sql("SELECT * FROM refined.orders").to_arrow_table()
    assert stored.column_names == [*data.column_names, "_rule", "_quarantined_at"]
    assert set(stored.column("_quarantined_at").to_pylist()) == {at}
    # the stored rows and reasons are exactly the report's
    assert multiset(stored.drop_columns(["_quarantined_at"]).cast(report.failing_rows.schema)) == (
        multiset(report.failing_rows)
    )
    # what the lake holds, written + quarantined, is the input exactly (as multisets)
    back = stored.select(data.column_names).cast(data.schema)
    assert multiset(written.cast(data.schema)) + multiset(back) == multiset(data)


def test_quarantine_appends_and_evolves(quality_project: Project) -> None:
    first = make_orders(40, seed=1, duplicates=0)
    rules = parse_rules([{"ColumnValues": {"column": "kind", "in": ["web"]}}])
    r1 = evaluate(None, TABLE, first, rules)
    n1 = quarantine(quality_project, TABLE, r1.failing_rows)
    second = make_orders(40, seed=2, duplicates=0)
    second = second.append_column("channel", pa.array(["email"] * second.num_rows))
    r2 = evaluate(None, TABLE, second, rules)
    n2 = quarantine(quality_project, TABLE, r2.failing_rows)
    assert n1 > 0 and n2 > 0
    assert quarantine(quality_project, TABLE, r2.failing_rows.slice(0, 0)) == 0
    with open_lake(quality_project) as lake:
        stored = lake.table("quarantine.refined__orders").scan().to_arrow()
    assert stored.num_rows == n1 + n2
    assert stored.column("channel").null_count == n1
    assert set(stored.column("_rule").to_pylist()) == {"ColumnValues(kind)"}


def test_quarantine_needs_failing_rows(quality_project: Project) -> None:
    with pytest.raises(UsageError, match="_rule"):
        quarantine(quality_project, TABLE, make_orders(3))
