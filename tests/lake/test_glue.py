"""The lake on S3 with the Glue Data Catalog, against moto's Glue and S3 on a loopback port.

What Athena would see is checked through Glue's own API (boto3): one database per zone
named ``<resource_prefix>_<zone>``, one Iceberg table per lake table pointing at its
current metadata file on S3. Reads go through pyiceberg and ``fluvial sql`` (DuckDB).
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from fluvial.errors import ConfigError, MissingDependencyError, NotFoundError
from fluvial.lake import Archiver, append, open_lake
from fluvial.lake.maintenance import compact, expire_snapshots
from fluvial.project import Project

from .conftest import make_events
from .test_s3 import _sql

BUCKET = "fluvial-glue-lake"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str) -> str:
    import boto3

    boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION).create_bucket(Bucket=BUCKET)
    return moto_endpoint


def glue_project(root: Path, endpoint: str, prefix: str = "") -> Project:
    """A project whose lake is Glue + S3 on moto, under a fresh resource prefix."""
    Project.init(root)
    prefix = prefix or f"t{uuid.uuid4().hex[:8]}"
    (root / "fluvial.toml").write_text(
        "[log]\n"
        'fsync = "never"\n'
        "[lake]\n"
        'catalog_uri = "glue"\n'
        f'warehouse = "s3://{BUCKET}/{prefix}"\n'
        "[aws]\n"
        f'endpoint_url = "{endpoint}"\n'
        f'region = "{REGION}"\n'
        f'resource_prefix = "{prefix}"\n',
        encoding="utf-8",
    )
    return Project(root)


def _glue(endpoint: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("glue", endpoint_url=endpoint, region_name=REGION)


def test_zones_are_prefixed_glue_databases(tmp_path: Path, endpoint: str) -> None:
    project = glue_project(tmp_path / "p", endpoint, prefix="shop")
    other = glue_project(tmp_path / "q", endpoint, prefix="shop2")
    with open_lake(project) as lake, open_lake(other) as neighbour:
        databases = {d["Name"] for d in _glue(endpoint).get_databases()["DatabaseList"]}
        assert {f"shop_{z}" for z in lake.zones} <= databases
        assert {f"shop2_{z}" for z in lake.zones} <= databases
        assert sorted(lake.catalog.list_namespaces()) == sorted((z,) for z in lake.zones)
        events = make_events(50, seed=1)
        table = lake.create_table("refined.things", events.schema, time_column="event_time")
        append(table, events)
        assert lake.tables() == ["refined.things"]
        assert neighbour.tables() == []  # another prefix, another lake
        glue_table = _glue(endpoint).get_table(DatabaseName="shop_refined", Name="things")["Table"]
        params = glue_table["Parameters"]
        assert params["table_type"].upper() == "ICEBERG"
        assert params["metadata_location"] == lake.table("refined.things").metadata_location
        assert params["metadata_location"].startswith(f"s3://{BUCKET}/shop/shop_refined.db/things/")
        with pytest.raises(NotFoundError, match=r"did you mean 'refined\.things'"):
            lake.table("refined.thing")
        lake.drop_table("refined.things")
        assert lake.tables() == []


def test_archive_query_compact_and_expire_on_glue(tmp_path: Path, endpoint: str) -> None:
    project = glue_project(tmp_path / "p", endpoint)
    prefix = project.settings.aws.resource_prefix
    batches = [make_events(300, seed=s) for s in range(4)]
    logged = pa.concat_tables(batches)
    with project.open_log() as log, open_lake(project) as lake:
        log.create_topic("events", 2)
        log.create_topic("events_failed", 1)
        for batch in batches:
            log.append("events", batch, key="user_id")
        stats = Archiver(lake, log, settings=project.settings, buffer_records=400).run(
            until_idle=True
        )
        assert stats.records == {"events": 1_200}
    # a new process finds the table through Glue alone
    with open_lake(project) as lake:
        table = lake.table("raw.events")
        glue_table = _glue(endpoint).get_table(DatabaseName=f"{prefix}_raw", Name="events")
        assert glue_table["Table"]["Parameters"]["metadata_location"] == table.metadata_location
        assert len(table.snapshots()) >= 3  # one commit per buffer of 400
        back = table.scan().to_arrow()
        assert sorted(back["event_id"].to_pylist()) == sorted(logged["event_id"].to_pylist())

        query = "SELECT event_type, count(*) AS n FROM raw.events GROUP BY 1 ORDER BY 1"
        got = _sql(project, query, tmp_path / "q.parquet")
        want = (
            logged.group_by("event_type").aggregate([("event_id", "count")]).sort_by("event_type")
        )
        assert got["event_type"].to_pylist() == want["event_type"].to_pylist()
        assert got["n"].to_pylist() == want["event_id_count"].to_pylist()

        # compaction commits through Glue; expiry deletes the replaced files from S3
        result = compact(table, min_input_files=2)
        assert result.rewritten_files > result.added_files >= 1
        table = lake.table("raw.events")
        current = table.current_snapshot()
        assert current is not None and current.summary is not None
        assert current.summary["fluvial.maintenance"] == "compact"
        expired = expire_snapshots(table, older_than=datetime.now(UTC), retain_last=1)
        assert expired.deleted_data_files == result.rewritten_files
        table = lake.table("raw.events")
        live = {
            f.removeprefix(f"s3://{BUCKET}/")
            for f in table.inspect.files()["file_path"].to_pylist()
        }
        stored = {
            k
            for k in _objects_in(endpoint, table.location().removeprefix(f"s3://{BUCKET}/"))
            if k.endswith(".parquet")
        }
        assert stored == live
        after = _sql(
            project, "SELECT count(DISTINCT event_id) AS d FROM raw.events", tmp_path / "a.parquet"
        )
        assert after["d"].to_pylist() == [1_200]


def _objects_in(endpoint: str, prefix: str) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_glue_settings_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Project.init(tmp_path / "p")
    project = Project(tmp_path / "p", env={"FLUVIAL_LAKE__CATALOG_URI": "gleu"})
    with pytest.raises(ConfigError, match="postgresql\\+psycopg://… or glue, found 'gleu'"):
        open_lake(project)
    monkeypatch.setitem(sys.modules, "boto3", None)
    project = Project(tmp_path / "p", env={"FLUVIAL_LAKE__CATALOG_URI": "glue"})
    with pytest.raises(MissingDependencyError, match=r"pip install 'fluvial\[aws\]'"):
        open_lake(project)


def test_a_zone_database_with_a_location_keeps_its_tables_there(
    tmp_path: Path, endpoint: str
) -> None:
    # as a deployment's template creates it: the zone's database located in its own bucket
    prefix = f"t{uuid.uuid4().hex[:8]}"
    _glue(endpoint).create_database(
        DatabaseInput={"Name": f"{prefix}_curated", "LocationUri": f"s3://{BUCKET}/zone-curated"}
    )
    project = glue_project(tmp_path / "p", endpoint, prefix=prefix)
    with open_lake(project) as lake:
        events = make_events(20, seed=2)
        append(lake.create_table("curated.things", events.schema), events)
        table = lake.table("curated.things")
        assert table.location() == f"s3://{BUCKET}/zone-curated/things"
        assert table.scan().to_arrow().num_rows == 20
        # the other zones, created by Fluvial, live under the warehouse
        other = lake.create_table("refined.things", events.schema)
        assert other.location() == f"s3://{BUCKET}/{prefix}/{prefix}_refined.db/things"
