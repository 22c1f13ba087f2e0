"""The crawler on a real landing folder: Parquet, CSV, NDJSON and Avro into an Iceberg table.

The files are written here with independent writers (pyarrow, plain text, pyiceberg's Avro
writer) and the table is read back with pyiceberg and DuckDB.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from fluvial.errors import IncompatibleSchemaError, UsageError
from fluvial.lake.crawler import REGISTRY_KEY, crawl
from fluvial.lake.maintenance import compact, expire_snapshots


@pytest.fixture
def catalog(tmp_path: Path) -> SqlCatalog:
    return SqlCatalog("t", uri=f"sqlite:///{tmp_path}/cat.db", warehouse=f"file://{tmp_path}/wh")


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    path = tmp_path / "landing"
    path.mkdir()
    return path


def write_parquet(path: Path, ids: range, **extra: pa.Array) -> None:
    columns = {"id": pa.array(ids, pa.int64()), "name": [f"p{i}" for i in ids], **extra}
    pq.write_table(pa.table(columns), path)


def write_csv(path: Path, ids: range, amount: bool = True) -> None:
    lines = ["id,name,amount" if amount else "id,name"]
    lines += [f"{i},c{i},{i / 4}" if amount else f"{i},c{i}" for i in ids]
    path.write_text("\n".join(lines) + "\n")


def write_ndjson(path: Path, ids: range) -> None:
    path.write_text(
        "".join(json.dumps({"id": i, "name": f"j{i}", "country": "FR"}) + "\n" for i in ids)
    )


def write_avro(path: Path, ids: range) -> None:
    from pyiceberg.avro.file import AvroOutputFile
    from pyiceberg.io.pyarrow import PyArrowFileIO
    from pyiceberg.schema import Schema
    from pyiceberg.typedef import Record
    from pyiceberg.types import LongType, NestedField, StringType

    schema = Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "name", StringType(), required=True),
    )
    with AvroOutputFile[Record](PyArrowFileIO().new_output(str(path)), schema, "row") as out:
        out.write_block([Record(i, f"a{i}") for i in ids])


def scan(catalog: SqlCatalog, name: str = "landing.things") -> pa.Table:
    return catalog.load_table(name).scan().to_arrow().sort_by("id")


def test_crawl_creates_a_table_from_every_format(catalog: SqlCatalog, landing: Path) -> None:
    write_parquet(landing / "a.parquet", range(0, 10))
    write_csv(landing / "b.csv", range(10, 15))
    (landing / "sub").mkdir()
    write_ndjson(landing / "sub" / "c.ndjson", range(15, 18))
    write_avro(landing / "d.avro", range(18, 22))
    (landing / "_SUCCESS").write_text("")
    (landing / "notes.txt").write_text("not data")

    report = crawl(catalog, landing, "landing.things")

    assert report.created and report.changed
    assert report.registered_in_place == [str(landing / "a.parquet")]
    assert sorted(report.converted) == sorted(
        str(landing / p) for p in ("b.csv", "sub/c.ndjson", "d.avro")
    )
    assert report.unsupported == [str(landing / "notes.txt")]
    assert report.rows == 22
    assert sorted(report.added_columns) == ["amount", "country", "id", "name"]
    got = scan(catalog)
    assert got["id"].to_pylist() == list(range(22))
    names = [f"p{i}" for i in range(10)] + [f"c{i}" for i in range(10, 15)]
    names += [f"j{i}" for i in range(15, 18)] + [f"a{i}" for i in range(18, 22)]
    assert got["name"].to_pylist() == names
    assert got["amount"].to_pylist() == [None] * 10 + [i / 4 for i in range(10, 15)] + [None] * 7
    assert got["country"].to_pylist() == [None] * 15 + ["FR"] * 3 + [None] * 4
    # the Parquet file is read where it lies, not copied
    table = catalog.load_table("landing.things")
    paths = {task.file.file_path for task in table.scan().plan_files()}
    assert (landing / "a.parquet").as_uri() in paths
    # DuckDB's Iceberg reader agrees
    import duckdb_extension_avro
    import duckdb_extension_iceberg

    con = duckdb.connect(config={"autoinstall_known_extensions": "false"})
    for module, ext in ((duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")):
        folder = Path(module.__file__).parent / "extensions" / f"v{duckdb.__version__}"
        con.execute(f"LOAD '{folder / f'{ext}.duckdb_extension'}'")
    sql = f"SELECT count(*), sum(id) FROM iceberg_scan('{table.metadata_location}')"
    assert con.execute(sql).fetchone() == (22, sum(range(22)))


def test_crawl_again_changes_nothing_then_picks_up_new_files(
    catalog: SqlCatalog, landing: Path
) -> None:
    write_parquet(landing / "a.parquet", range(0, 5))
    write_csv(landing / "b.csv", range(5, 8), amount=False)
    first = crawl(catalog, landing, "landing.things")
    table = catalog.load_table("landing.things")
    location = table.metadata_location

    again = crawl(catalog, landing, "landing.things")
    assert not again.changed and again.rows == 0
    assert sorted(again.unchanged) == sorted(str(landing / p) for p in ("a.parquet", "b.csv"))
    assert catalog.load_table("landing.things").metadata_location == location
    assert again.snapshot_id == first.snapshot_id

    write_csv(landing / "c.csv", range(8, 10))  # brings a new column
    third = crawl(catalog, landing, "landing.things")
    assert third.converted == [str(landing / "c.csv")] and third.added_columns == ["amount"]
    assert third.rows == 2 and len(third.unchanged) == 2
    got = scan(catalog)
    assert got["id"].to_pylist() == list(range(10))
    assert got["amount"].to_pylist() == [None] * 8 + [2.0, 2.25]
    registry = json.loads(catalog.load_table("landing.things").properties[REGISTRY_KEY])
    assert len(registry) == 3


def test_a_modified_file_is_reported_not_registered_twice(
    catalog: SqlCatalog, landing: Path
) -> None:
    write_csv(landing / "b.csv", range(0, 3))
    crawl(catalog, landing, "landing.things")
    write_csv(landing / "b.csv", range(0, 6))
    os.utime(landing / "b.csv", ns=(1, 1))
    report = crawl(catalog, landing, "landing.things")
    assert report.modified == [str(landing / "b.csv")] and not report.changed
    assert scan(catalog).num_rows == 3


def test_compaction_does_not_make_the_crawler_register_again(
    catalog: SqlCatalog, landing: Path
) -> None:
    for i in range(4):
        write_parquet(landing / f"p{i}.parquet", range(i * 5, i * 5 + 5))
    crawl(catalog, landing, "landing.things")
    table = catalog.load_table("landing.things")
    assert compact(table, target_file_size=1 << 20, min_input_files=2).rewritten_files == 4
    report = crawl(catalog, landing, "landing.things")
    assert not report.changed
    assert scan(catalog)["id"].to_pylist() == list(range(20))
    # expiry forgets the in-place files but never deletes the landing folder's files
    expired = expire_snapshots(catalog.load_table("landing.things"), older_than=timedelta(0))
    assert expired.kept_external_files == 4 and expired.deleted_data_files == 0
    assert all((landing / f"p{i}.parquet").exists() for i in range(4))
    assert not crawl(catalog, landing, "landing.things").changed


def test_types_widen_and_incompatible_files_are_refused(catalog: SqlCatalog, landing: Path) -> None:
    write_parquet(landing / "a.parquet", range(0, 3), n=pa.array([1, 2, 3], pa.int32()))
    crawl(catalog, landing, "landing.things")
    write_parquet(landing / "b.parquet", range(3, 5), n=pa.array([2**40, 5], pa.int64()))
    report = crawl(catalog, landing, "landing.things")
    assert report.widened_columns == ["n"]
    assert scan(catalog)["n"].to_pylist() == [1, 2, 3, 2**40, 5]

    (landing / "c.csv").write_text("id,name\nabc,x\n")  # an id that is text
    with pytest.raises(IncompatibleSchemaError):
        crawl(catalog, landing, "landing.things")
    assert scan(catalog).num_rows == 5


def test_crawl_needs_an_existing_folder(catalog: SqlCatalog, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        crawl(catalog, tmp_path / "nowhere", "landing.things")
