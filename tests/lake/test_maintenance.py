"""Lake maintenance against real pyiceberg tables in a SQLite catalog, read back by DuckDB.

Every check compares with an independent truth: the rows the test itself appended, the
files on disk, or what DuckDB's Iceberg reader finds.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform, IdentityTransform

from fluvial.errors import UsageError
from fluvial.lake.maintenance import (
    commit_with_retry,
    compact,
    expire_snapshots,
    remove_orphans,
    retain,
    time_column,
)

SCHEMA = pa.schema([("id", pa.int64()), ("at", pa.timestamp("us", "UTC")), ("v", pa.string())])
BASE = datetime(2024, 1, 1, tzinfo=UTC)


def make_catalog(tmp: Path) -> SqlCatalog:
    return SqlCatalog("t", uri=f"sqlite:///{tmp}/cat.db", warehouse=f"file://{tmp}/wh")


@pytest.fixture
def catalog(tmp_path: Path) -> SqlCatalog:
    cat = make_catalog(tmp_path)
    cat.create_namespace("ns")
    return cat


def make_table(catalog: SqlCatalog, name: str = "ns.events", *, partitioned: bool = True) -> Table:
    table = catalog.create_table(name, schema=SCHEMA)
    if partitioned:
        with table.update_spec() as spec:
            spec.add_field("at", DayTransform(), "at_day")
    return table


def batch(first: int, n: int, start: datetime, step: timedelta = timedelta(minutes=7)) -> pa.Table:
    ids = pa.array(range(first, first + n), pa.int64())
    at = pa.array([start + step * i for i in range(n)], pa.timestamp("us", "UTC"))
    return pa.table({"id": ids, "at": at, "v": pc.cast(ids, pa.string())}, schema=SCHEMA)


def data_files(table: Table) -> list[str]:
    return sorted(task.file.file_path for task in table.refresh().scan().plan_files())


def local(uri: str) -> str:
    return uri.removeprefix("file://")


def duck() -> duckdb.DuckDBPyConnection:
    """DuckDB with its Iceberg reader loaded from the installed packages (never downloaded)."""
    import duckdb_extension_avro
    import duckdb_extension_iceberg

    con = duckdb.connect(
        config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}
    )
    for module, name in ((duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")):
        path = Path(module.__file__).parent / "extensions" / f"v{duckdb.__version__}"
        con.execute(f"LOAD '{path / f'{name}.duckdb_extension'}'")
    return con


def fill(table: Table, batches: int = 12, rows: int = 50) -> pa.Table:
    """Append *batches* small batches spread over 3 days; return everything appended."""
    parts = [batch(i * rows, rows, BASE + timedelta(hours=6 * i)) for i in range(batches)]
    for part in parts:
        table.append(part)
    return pa.concat_tables(parts).sort_by("id")


# ---------------------------------------------------------------- compaction


def test_compaction_drops_file_count_and_keeps_exactly_the_rows(catalog: SqlCatalog) -> None:
    table = make_table(catalog)
    expected = fill(table)
    before_files = data_files(table)
    old_snapshot = table.current_snapshot()
    assert old_snapshot is not None
    days = set(pc.floor_temporal(expected["at"], unit="day").to_pylist())

    result = compact(table, target_file_size=1 << 20, min_input_files=2)

    after_files = data_files(table)
    assert len(after_files) == len(days) < len(before_files)
    assert result.rewritten_files == len(before_files)
    assert result.added_files == len(after_files)
    assert result.rows == expected.num_rows
    assert table.scan().to_arrow().sort_by("id").equals(expected)
    # DuckDB's reader sees the same rows through the new metadata file
    got = duck().execute(
        f"""SELECT id, "at", v FROM iceberg_scan('{table.metadata_location}') ORDER BY id"""
    )
    assert got.to_arrow_table().cast(SCHEMA).equals(expected)
    # compaction deletes nothing: the old snapshot still reads its files
    assert all(os.path.exists(local(p)) for p in before_files)
    assert (
        table.scan(snapshot_id=old_snapshot.snapshot_id).to_arrow().sort_by("id").equals(expected)
    )
    # each new file holds exactly one day
    for task in table.scan().plan_files():
        at = pa.parquet.read_table(local(task.file.file_path))["at"]
        assert len(set(pc.floor_temporal(at, unit="day").to_pylist())) == 1


def test_compaction_leaves_big_files_and_lonely_small_ones(catalog: SqlCatalog) -> None:
    table = make_table(catalog, partitioned=False)
    fill(table, batches=4)
    files = data_files(table)
    sizes = [os.path.getsize(local(p)) for p in files]
    # target so small that every file counts as big: nothing to do
    nothing = compact(table, target_file_size=min(sizes), min_input_files=2)
    assert nothing.rewritten_files == 0 and data_files(table) == files
    # more inputs required than there are files: nothing to do either
    assert compact(table, target_file_size=1 << 30, min_input_files=5).rewritten_files == 0
    # a target that fits two files per bin: 4 files -> 2
    two = compact(table, target_file_size=2 * max(sizes) + 1, min_input_files=2)
    assert two.rewritten_files == 4 and len(data_files(table)) == 2


def test_compaction_sorts_by_the_declared_sort_order(catalog: SqlCatalog) -> None:
    table = make_table(catalog, partitioned=False)
    with table.update_sort_order() as order:
        order.desc("id", IdentityTransform())
    for i in range(3):
        table.append(batch(i * 10, 10, BASE))
    compact(table, target_file_size=1 << 20, min_input_files=2)
    (path,) = data_files(table)
    ids = pa.parquet.read_table(local(path))["id"].to_pylist()
    assert ids == sorted(ids, reverse=True) and len(ids) == 30


def test_compaction_rejects_nonsense() -> None:
    with pytest.raises(UsageError):
        compact(None, target_file_size=0)  # type: ignore[arg-type]


# ---------------------------------------------------------------- concurrency


def test_writer_and_readers_survive_compaction_and_expiry(tmp_path: Path) -> None:
    """A writer appends and two readers (pyiceberg, DuckDB) scan while maintenance runs."""
    setup = make_catalog(tmp_path)
    setup.create_namespace("ns")
    make_table(setup)
    rows, batches = 20, 40
    appended: list[int] = []
    failures: list[str] = []
    seen: dict[str, int] = {"pyiceberg": 0, "duckdb": 0}
    done = threading.Event()

    def check(who: str, ids: list[int]) -> None:
        # batches land whole and in order: a snapshot holds exactly ids 0..n-1
        if sorted(ids) != list(range(len(ids))) or len(ids) % rows:
            failures.append(f"{who} read {len(ids)} rows that are not ids 0..n-1")
        if len(ids) < seen[who]:
            failures.append(f"{who} saw the row count go down: {seen[who]} -> {len(ids)}")
        seen[who] = max(seen[who], len(ids))

    def writer() -> None:
        table = make_catalog(tmp_path).load_table("ns.events")
        try:
            for i in range(batches):
                part = batch(i * rows, rows, BASE + timedelta(hours=5 * i), timedelta(minutes=1))
                commit_with_retry(table, lambda t, p=part: t.append(p), what="append")
                appended.extend(range(i * rows, (i + 1) * rows))
                time.sleep(0.03)
        except Exception as exc:
            failures.append(f"writer: {exc!r}")
        finally:
            done.set()

    def py_reader() -> None:
        table = make_catalog(tmp_path).load_table("ns.events")
        while not done.is_set():
            try:
                check("pyiceberg", table.refresh().scan().to_arrow()["id"].to_pylist())
            except Exception as exc:
                failures.append(f"pyiceberg reader: {exc!r}")
                return

    def duck_reader() -> None:
        cat = make_catalog(tmp_path)
        con = duck()
        while not done.is_set():
            try:
                location = cat.load_table("ns.events").metadata_location
                got = con.execute(f"SELECT id FROM iceberg_scan('{location}')").fetchall()
                check("duckdb", [r[0] for r in got])
            except Exception as exc:
                failures.append(f"duckdb reader: {exc!r}")
                return

    threads = [threading.Thread(target=f) for f in (writer, py_reader, duck_reader)]
    for t in threads:
        t.start()
    table = make_catalog(tmp_path).load_table("ns.events")
    compacted = expired = 0
    try:
        while not done.is_set():
            compacted += compact(table, target_file_size=1 << 20, min_input_files=3).rewritten_files
            expired += len(expire_snapshots(table, older_than=timedelta(seconds=2)).deleted_files)
            time.sleep(0.05)
    finally:
        for t in threads:
            t.join(timeout=60)
    assert not failures, failures[:5]
    assert compacted > 0 and seen["pyiceberg"] > 0 and seen["duckdb"] > 0
    final = compact(table, target_file_size=1 << 20, min_input_files=2)
    assert len(data_files(table)) < batches
    ids = table.scan().to_arrow()["id"].to_pylist()
    assert sorted(ids) == sorted(appended) == list(range(rows * batches)), final
    assert expired > 0  # expiry deleted replaced files while the readers read


# ---------------------------------------------------------------- expiry


def all_files(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if p.is_file()}


def referenced_by(table: Table, snapshot_id: int) -> set[str]:
    """Data files, manifests and the manifest list one snapshot reads (via pyiceberg)."""
    snap = table.snapshot_by_id(snapshot_id)
    assert snap is not None
    manifests = snap.manifests(table.io)
    files = {local(snap.manifest_list)} | {local(m.manifest_path) for m in manifests}
    files |= {
        local(task.file.file_path) for task in table.scan(snapshot_id=snapshot_id).plan_files()
    }
    return files


def test_expiry_deletes_only_files_no_snapshot_references(catalog: SqlCatalog) -> None:
    table = make_table(catalog)
    expected = fill(table, batches=8)
    compact(table, target_file_size=1 << 20, min_input_files=2)
    table.append(batch(10_000, 5, BASE))
    expected = pa.concat_tables([expected, batch(10_000, 5, BASE)]).sort_by("id")
    snapshots = [s.snapshot_id for s in table.snapshots()]
    keep = snapshots[-2:]
    still_needed = set().union(*(referenced_by(table, s) for s in keep))
    old = set().union(*(referenced_by(table, s) for s in snapshots[:-2]))
    root = Path(local(table.location()))
    before = all_files(root)

    result = expire_snapshots(table, older_than=timedelta(0), retain_last=2)

    table.refresh()
    assert sorted(result.expired_snapshots) == sorted(snapshots[:-2])
    assert [s.snapshot_id for s in table.snapshots()] == keep
    deleted = before - all_files(root)
    assert deleted == old - still_needed  # exactly the unreferenced ones
    assert {local(p) for p in result.deleted_files} == deleted
    assert result.deleted_data_files == 8  # the small files compaction replaced
    assert all(os.path.exists(p) for p in still_needed)
    for sid in keep:
        assert table.scan(snapshot_id=sid).to_arrow().num_rows > 0
    assert table.scan().to_arrow().sort_by("id").equals(expected)
    got = duck().execute(f"SELECT count(*) FROM iceberg_scan('{table.metadata_location}')")
    assert got.fetchone() == (expected.num_rows,)


def test_expiry_keeps_recent_snapshots_and_counts_from_replacement(catalog: SqlCatalog) -> None:
    table = make_table(catalog)
    fill(table, batches=3)
    # everything was replaced just now: nothing is older than a minute
    assert expire_snapshots(table, older_than=timedelta(minutes=1)).expired_snapshots == []
    # retain_last protects the newest snapshots whatever their age
    result = expire_snapshots(table, older_than=datetime.now(UTC), retain_last=3)
    assert result.expired_snapshots == [] and len(table.refresh().snapshots()) == 3
    with pytest.raises(UsageError):
        expire_snapshots(table, older_than=timedelta(0), retain_last=0)


def test_expiry_counts_age_from_when_a_snapshot_stopped_being_current(
    catalog: SqlCatalog,
) -> None:
    table = make_table(catalog)
    table.append(batch(0, 5, BASE))
    table.append(batch(5, 5, BASE))  # replaces the first at once
    time.sleep(1.2)
    table.append(batch(10, 5, BASE))  # replaces the second, created 1.2 s ago, only now
    first, second, third = (s.snapshot_id for s in table.snapshots())
    result = expire_snapshots(table, older_than=timedelta(seconds=1))
    assert result.expired_snapshots == [first]
    assert [s.snapshot_id for s in table.refresh().snapshots()] == [second, third]
    assert table.scan(snapshot_id=second).to_arrow().num_rows == 10


# ---------------------------------------------------------------- orphans


def test_remove_orphans_only_old_unreferenced_files(catalog: SqlCatalog) -> None:
    table = make_table(catalog)
    expected = fill(table, batches=4)
    root = Path(local(table.location()))
    legit = all_files(root)
    stale = root / "data" / "at_day=2024-01-01" / "crashed-writer.parquet"
    fresh = root / "data" / "in-flight.parquet"
    stale_meta = root / "metadata" / "abandoned-m0.avro"
    for path in (stale, fresh, stale_meta):
        path.write_bytes(b"x")
    week_ago = time.time() - 7 * 86400
    for path in (stale, stale_meta, *map(Path, legit)):
        os.utime(path, (week_ago, week_ago))  # old legit files must survive too

    found = remove_orphans(table, dry_run=True)
    assert {local(p) for p in found} == {str(stale), str(stale_meta)}
    assert stale.exists()
    removed = remove_orphans(table)
    assert {local(p) for p in removed} == {str(stale), str(stale_meta)}
    assert all_files(root) == legit | {str(fresh)}
    assert table.refresh().scan().to_arrow().sort_by("id").equals(expected)
    # the fresh one goes once old enough
    assert {local(p) for p in remove_orphans(table, older_than=timedelta(0))} == {str(fresh)}


# ---------------------------------------------------------------- retention


def test_retention_drops_old_partitions_and_trims_the_boundary(catalog: SqlCatalog) -> None:
    table = make_table(catalog)
    expected = fill(table)  # 3 days of data
    now = BASE + timedelta(days=3, hours=12)
    cutoff = now - timedelta(days=2)  # 2024-01-02T12:00: mid-day 2
    files_day1 = [p for p in data_files(table) if "at_day=2024-01-01" in p]
    assert time_column(table) == "at"

    result = retain(table, days=2, now=now)

    keep = expected.filter(
        pc.greater_equal(expected["at"], pa.scalar(cutoff, SCHEMA.field("at").type))
    )
    got = table.scan().to_arrow().sort_by("id")
    assert got.equals(keep)
    assert result.deleted_rows == expected.num_rows - keep.num_rows > 0
    assert result.column == "at"
    # day 1 went as whole files (never rewritten), day 2 was trimmed
    assert not any("at_day=2024-01-01" in p for p in data_files(table))
    assert all(os.path.exists(local(p)) for p in files_day1)  # still there for old readers
    assert result.removed_files >= len(files_day1)
    # running again changes nothing
    again = retain(table, days=2, now=now)
    assert again.deleted_rows == 0 and table.scan().to_arrow().num_rows == keep.num_rows


def test_retention_needs_a_time_column(catalog: SqlCatalog) -> None:
    table = catalog.create_table("ns.plain", schema=pa.schema([("id", pa.int64())]))
    table.append(pa.table({"id": pa.array([1, 2], pa.int64())}))
    with pytest.raises(UsageError, match="time"):
        retain(table, days=1)
    with pytest.raises(UsageError, match="expected a date or a timestamp"):
        retain(table, days=1, column="id")


def test_commit_with_retry_gives_up_with_a_fluvial_error(catalog: SqlCatalog) -> None:
    from pyiceberg.exceptions import CommitFailedException

    from fluvial.errors import CommitConflictError

    table = make_table(catalog)
    calls: list[Any] = []

    def always_loses(t: Table) -> None:
        calls.append(t)
        raise CommitFailedException("someone else won")

    with pytest.raises(CommitConflictError, match="3 times"):
        commit_with_retry(table, always_loses, what="test", attempts=3)
    assert len(calls) == 3
