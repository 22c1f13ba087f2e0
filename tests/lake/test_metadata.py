"""describe / history / annotate on real pyiceberg tables (SQLite catalog)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform, IdentityTransform

from fluvial.errors import NotFoundError, UsageError
from fluvial.lake.metadata import annotate, describe, history

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("at", pa.timestamp("us", "UTC")),
        ("page", pa.struct([("url", pa.string()), ("title", pa.string())])),
    ]
)


@pytest.fixture
def table(tmp_path: Path) -> Table:
    cat = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/cat.db", warehouse=f"file://{tmp_path}/wh")
    cat.create_namespace("raw")
    t = cat.create_table("raw.events", schema=SCHEMA)
    with t.update_spec() as spec:
        spec.add_field("at", DayTransform(), "at_day")
    with t.update_sort_order() as order:
        order.asc("at", IdentityTransform())
    return t


def rows(n: int, first: int = 0) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(first, first + n), pa.int64()),
            "at": pa.array([datetime(2024, 1, 1 + i % 3, tzinfo=UTC) for i in range(n)]),
            "page": pa.array([{"url": f"/p/{i}", "title": None} for i in range(n)]),
        },
        schema=SCHEMA,
    )


def test_describe_matches_the_files_on_disk(table: Table) -> None:
    table.append(rows(30))
    table.append(rows(12, first=30))
    info = describe(table.refresh())
    files = [task.file.file_path.removeprefix("file://") for task in table.scan().plan_files()]
    assert info.rows == sum(pq.read_metadata(p).num_rows for p in files) == 42
    assert info.data_files == len(files) == 6  # 3 days x 2 appends
    assert info.bytes == sum(Path(p).stat().st_size for p in files)
    assert info.name == "raw.events" and info.snapshots == 2
    assert [c.name for c in info.columns] == ["id", "at", "page", "page.url", "page.title"]
    assert info.column("page.url").type == "string"
    assert info.partition_spec == [{"name": "at_day", "source": "at", "transform": "day"}]
    assert info.sort_order[0]["source"] == "at" and info.sort_order[0]["direction"] == "asc"
    snap = table.current_snapshot()
    assert snap is not None and info.current_snapshot_id == snap.snapshot_id
    assert info.freshness == datetime.fromtimestamp(snap.timestamp_ms / 1000, UTC).isoformat()
    assert json.loads(json.dumps(info.to_dict()))["columns"][0]["name"] == "id"
    with pytest.raises(NotFoundError, match=r"did you mean 'page\.url'"):
        info.column("page.ur")


def test_describe_an_empty_table(table: Table) -> None:
    info = describe(table)
    assert info.rows == 0 and info.current_snapshot_id is None and info.freshness is None


def test_history_lists_snapshots_oldest_first(table: Table) -> None:
    table.append(rows(3))
    table.append(rows(3, first=3))
    table.delete("id < 2")
    snaps = history(table.refresh())
    ids = [s.snapshot_id for s in table.snapshots()]
    assert sorted(s.snapshot_id for s in snaps) == sorted(ids)
    assert [s.operation for s in snaps][:2] == ["append", "append"]
    assert snaps[-1].current and all(s.in_main for s in snaps)
    assert snaps[1].parent_id == snaps[0].snapshot_id
    assert snaps[0].summary["added-records"] == "3"
    assert json.loads(json.dumps(snaps[0].to_dict()))["snapshot_id"] == snaps[0].snapshot_id


def test_annotate_table_and_columns(table: Table) -> None:
    table.append(rows(3))
    info = annotate(
        table, description="every event", owner="data-team", tags={"pii": "no", "tier": "1"}
    )
    assert (info.description, info.owner, info.tags) == (
        "every event",
        "data-team",
        {"pii": "no", "tier": "1"},
    )
    info = annotate(table, column="page.url", description="the page address", tags={"pii": "yes"})
    assert info.column("page.url").doc == "the page address"
    assert info.column("page.url").tags == {"pii": "yes"}
    assert info.column("id").tags == {}
    # stored where other engines look: Iceberg field docs and table properties
    reloaded = table.refresh()
    assert reloaded.schema().find_field("page.url").doc == "the page address"
    assert reloaded.properties["comment"] == "every event"
    assert reloaded.properties["fluvial.column.page.url.tag.pii"] == "yes"
    # None removes a tag, an empty description removes it
    info = annotate(table, tags={"tier": None}, description="")
    assert info.tags == {"pii": "no"} and info.description is None
    # the data did not move
    assert table.refresh().scan().to_arrow().num_rows == 3


def test_annotate_refuses_what_it_cannot_store(table: Table) -> None:
    with pytest.raises(NotFoundError, match=r"did you mean 'page\.url'"):
        annotate(table, column="page.urls", description="x")
    with pytest.raises(UsageError, match="owner"):
        annotate(table, column="id", owner="someone")
    with pytest.raises(UsageError, match="tag key"):
        annotate(table, tags={"bad key": "x"})
