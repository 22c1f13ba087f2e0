"""Schema evolution: new columns, safe widenings, refusals that name the column."""

from __future__ import annotations

import decimal

import pyarrow as pa
import pytest

from fluvial.errors import IncompatibleSchemaError
from fluvial.lake import Lake, append, open_lake, plan_changes, schema_history
from fluvial.project import Project


@pytest.fixture
def lake(lake_project: Project) -> Lake:
    return open_lake(lake_project)


def test_union_by_name_adds_columns_and_widens(lake: Lake) -> None:
    first = pa.table(
        {
            "id": pa.array([1, 2], pa.int32()),
            "score": pa.array([0.5, 1.5], pa.float32()),
            "price": pa.array([decimal.Decimal("1.25"), None], pa.decimal128(5, 2)),
            "page": pa.array([{"url": "a"}, {"url": "b"}]),
        }
    )
    table = lake.create_table("refined.t", first.schema)
    append(table, first)
    second = pa.table(
        {
            "id": pa.array([3_000_000_000], pa.int64()),  # needs a long
            "score": pa.array([2.5], pa.float64()),
            "price": pa.array([decimal.Decimal("123456.75")], pa.decimal128(10, 2)),
            "page": pa.array([{"url": "c", "title": "C"}]),  # a new nested field
            "country": pa.array(["DE"]),  # a new column
        }
    )
    result = append(table, second)
    assert sorted(str(c) for c in result.schema_changes) == sorted(
        [
            "widen id: int -> long",
            "widen score: float -> double",
            "widen price: decimal(5, 2) -> decimal(10, 2)",
            "add page.title: string",
            "add country: string",
        ]
    )
    schema = lake.table("refined.t").schema()
    assert str(schema.find_field("id").field_type) == "long"
    assert str(schema.find_field("price").field_type) == "decimal(10, 2)"
    back = lake.table("refined.t").scan().to_arrow().sort_by("id")
    assert back["id"].to_pylist() == [1, 2, 3_000_000_000]
    assert back["country"].to_pylist() == [None, None, "DE"]
    assert back["page"].to_pylist() == [
        {"url": "a", "title": None},
        {"url": "b", "title": None},
        {"url": "c", "title": "C"},
    ]
    assert back["price"].to_pylist()[2] == decimal.Decimal("123456.75")
    # narrower data and missing columns fit without a change
    third = pa.table({"id": pa.array([7], pa.int32()), "country": ["FR"]})
    assert append(lake.table("refined.t"), third).schema_changes == ()
    assert lake.table("refined.t").scan().to_arrow().num_rows == 4


@pytest.mark.parametrize(
    ("new_type", "column"),
    [
        (pa.schema([("id", pa.string())]), "id"),
        (pa.schema([("score", pa.int64())]), "score"),
        (pa.schema([("price", pa.decimal128(10, 3))]), "price"),
        (pa.schema([("page", pa.list_(pa.string()))]), "page"),
        (pa.schema([("page", pa.struct([("url", pa.int32())]))]), "page.url"),
        (pa.schema([("at", pa.timestamp("us"))]), "at"),
    ],
)
def test_incompatible_changes_name_the_column(new_type: pa.Schema, column: str) -> None:
    table_schema = pa.schema(
        [
            ("id", pa.int64()),
            ("score", pa.float64()),
            ("price", pa.decimal128(10, 2)),
            ("page", pa.struct([("url", pa.string())])),
            ("at", pa.timestamp("us", tz="UTC")),
        ]
    )
    with pytest.raises(IncompatibleSchemaError, match=f"column '{column}'") as info:
        plan_changes(table_schema, new_type)
    assert info.value.field == column


def test_a_refused_append_changes_nothing(lake: Lake) -> None:
    table = lake.create_table("refined.t", pa.schema([("id", pa.int64())]))
    append(table, pa.table({"id": [1]}))
    before = table.metadata.current_schema_id, len(table.metadata.snapshots)
    with pytest.raises(IncompatibleSchemaError):
        append(table, pa.table({"id": ["x"], "new": [1]}))
    table = lake.table("refined.t")
    assert (table.metadata.current_schema_id, len(table.metadata.snapshots)) == before
    assert "new" not in table.schema().column_names


def test_schema_history_lists_each_version(lake: Lake) -> None:
    table = lake.create_table("refined.t", pa.schema([("id", pa.int32())]))
    append(table, pa.table({"id": pa.array([1], pa.int32())}))
    append(table, pa.table({"id": pa.array([2], pa.int64()), "name": ["b"]}))
    versions = schema_history(lake.table("refined.t"))
    assert [v.changes for v in versions] == [
        ("create",),
        ("widen id: int -> long", "add name: string"),
    ]
    assert versions[-1].current and not versions[0].current
    snapshots = lake.table("refined.t").metadata.snapshots
    assert versions[1].first_snapshot_id == snapshots[1].snapshot_id
