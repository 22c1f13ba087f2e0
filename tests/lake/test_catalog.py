"""The lake's catalog on every backend: zones, tables, their layout, errors."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from fluvial.errors import ConfigError, NotFoundError, UsageError
from fluvial.lake import ZONES, Lake, append, open_lake
from fluvial.project import Project

from .conftest import make_events

SCHEMA = pa.schema([("id", pa.int64()), ("at", pa.timestamp("ms", tz="UTC"))])


def test_zones_exist_as_namespaces(any_lake: Lake) -> None:
    namespaces = {ns[0] for ns in any_lake.catalog.list_namespaces()}
    assert set(ZONES) <= namespaces
    assert any_lake.tables() == []


def test_create_table_follows_its_zone(any_lake: Lake) -> None:
    raw = any_lake.create_table("raw.things", SCHEMA, time_column="at")
    curated = any_lake.create_table("curated.things", SCHEMA, time_column="at")
    plain = any_lake.create_table("refined.plain", SCHEMA)
    assert [str(f.transform) for f in raw.spec().fields] == ["hour"]
    assert [str(f.transform) for f in curated.spec().fields] == ["day"]
    assert plain.spec().is_unpartitioned()
    at_id = raw.schema().find_field("at").field_id
    assert [f.source_id for f in raw.sort_order().fields] == [at_id]
    assert raw.properties["fluvial.zone"] == "raw"
    assert raw.properties["fluvial.append-only"] == "true"
    assert curated.properties["fluvial.append-only"] == "false"
    assert str(raw.schema().find_field("at").field_type) == "timestamptz"
    assert any_lake.tables() == ["curated.things", "raw.things", "refined.plain"]


def test_rows_round_trip_through_each_catalog(any_lake: Lake) -> None:
    events = make_events(2_000)
    table = any_lake.create_table("raw.events", events.schema, time_column="event_time")
    result = append(table, events)
    assert result.records == 2_000
    assert result.data_files >= 3  # three hours of events, hourly partitions
    back = any_lake.table("raw.events").scan().to_arrow()
    assert sorted(back.column("event_id").to_pylist()) == sorted(
        events.column("event_id").to_pylist()
    )
    # partition values match each row's hour, computed independently
    files = any_lake.table("raw.events").inspect.files().to_pylist()
    assert sum(f["record_count"] for f in files) == 2_000
    for f in files:
        hour = f["partition"]["event_time_hour"]
        low = f["readable_metrics"]["event_time"]["lower_bound"]
        high = f["readable_metrics"]["event_time"]["upper_bound"]
        assert int(low.timestamp() // 3600) == hour == int(high.timestamp() // 3600)


def test_errors_name_what_is_wrong(any_lake: Lake) -> None:
    any_lake.create_table("raw.events", SCHEMA)
    with pytest.raises(NotFoundError, match=r"did you mean 'raw.events'"):
        any_lake.table("raw.event")
    with pytest.raises(UsageError, match="already exists"):
        any_lake.create_table("raw.events", SCHEMA)
    with pytest.raises(NotFoundError, match=r"zone 'rwa'.*did you mean 'raw'"):
        any_lake.create_table("rwa.x", SCHEMA)
    with pytest.raises(NotFoundError, match=r"time column 'att'.*did you mean 'at'"):
        any_lake.create_table("raw.y", SCHEMA, time_column="att")
    with pytest.raises(UsageError, match=r"zone\.table"):
        any_lake.table("events")


def test_embedded_catalog_lives_in_the_data_dir(lake_project: Project) -> None:
    with open_lake(lake_project) as lake:
        lake.create_table("raw.t", SCHEMA)
        assert lake.warehouse == (lake_project.data_dir / "lake").as_uri()
    assert (lake_project.data_dir / "lake_catalog.db").exists()
    assert list((lake_project.data_dir / "lake" / "raw" / "t" / "metadata").glob("*.json"))
    with open_lake(lake_project) as again:  # persisted, not in memory
        assert again.tables() == ["raw.t"]


def test_bad_catalog_uri_is_a_config_error(tmp_path: Path) -> None:
    Project.init(tmp_path / "p")
    project = Project(tmp_path / "p", env={"FLUVIAL_LAKE__CATALOG_URI": "mysql://x/y"})
    with pytest.raises(ConfigError, match="catalog_uri"):
        open_lake(project)
