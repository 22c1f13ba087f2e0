"""The lake sink: tables created in their zone's layout, one Iceberg commit per checkpoint,
replayed ids skipped (also after snapshot expiry and against a concurrent twin), schema
evolution, positioned option errors, and a pipeline's lake table equal to DuckDB batch."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from fluvial.errors import SqlError
from fluvial.lake import append, open_lake
from fluvial.lake.maintenance import expire_snapshots
from fluvial.project import Project
from fluvial.stream.connectors import CONNECTORS, ConnectorContext, create_sink
from fluvial.stream.connectors.lake import (
    CHECKPOINT_KEY,
    SINK_ID_KEY,
    LakeSink,
    committed_checkpoint,
)
from fluvial.stream.job import plan_text
from fluvial.stream.runtime import run_job

from ..helpers import SOURCE, expected_con, make_rows, multiset, write_json
from .conftest import table

ENTRY = "fluvial.stream.connectors.lake:LakeSink"
DDL = """
CREATE TABLE out (
  user_id STRING,
  amount DOUBLE,
  ts TIMESTAMP(3)
) WITH ('connector' = 'lake', 'table' = '{name}'{extra})
"""


@pytest.fixture(autouse=True)
def lake_connector() -> Iterator[None]:
    """Register ``'connector' = 'lake'`` (a no-op once the registry has the entry)."""
    added = "lake" not in CONNECTORS["sink"]
    CONNECTORS["sink"].setdefault("lake", ENTRY)
    try:
        yield
    finally:
        if added:
            CONNECTORS["sink"].pop("lake", None)


def sink_for(project: Project, name: str = "refined.out", extra: str = "") -> LakeSink:
    sink = create_sink(table(DDL.format(name=name, extra=extra)), ConnectorContext(project))
    assert isinstance(sink, LakeSink)
    return sink


def rows(n: int, start: int = 0) -> pa.Table:
    base = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)
    return pa.table(
        {
            "user_id": [f"u{i}" for i in range(start, start + n)],
            "amount": [float(i) for i in range(start, start + n)],
            "ts": pa.array(
                [base + i * 3_600_000 for i in range(start, start + n)], pa.timestamp("ms")
            ),
        }
    )


def lake_rows(project: Project, name: str = "refined.out") -> list[str]:
    with open_lake(project) as lake:
        return sorted(lake.table(name).scan().to_arrow()["user_id"].to_pylist())


def test_creates_the_table_in_its_zone_and_commits_once_per_checkpoint(project: Project) -> None:
    sink = sink_for(project, "raw.out", ", 'time-column' = 'ts'")
    sink.open()
    assert sink.last_committed is None
    with open_lake(project) as lake:
        created = lake.table("raw.out")
        assert [str(f.transform) for f in created.spec().fields] == ["hour"]
        assert created.properties["fluvial.zone"] == "raw"
    sink.write(rows(3))
    sink.write(rows(2, start=3))
    sink.commit(1)
    sink.commit(2)  # nothing staged: no snapshot
    sink.write(rows(4, start=5))
    sink.commit(3)
    sink.close()
    with open_lake(project) as lake:
        iceberg = lake.table("raw.out")
        summaries = [s.summary for s in iceberg.snapshots()]
        assert [(s[SINK_ID_KEY], s[CHECKPOINT_KEY]) for s in summaries] == [  # type: ignore[index]
            ("raw.out", "1"),
            ("raw.out", "3"),
        ]
        assert [s["added-records"] for s in summaries] == ["5", "4"]  # type: ignore[index]
        assert committed_checkpoint(iceberg, "raw.out") == 3
        assert committed_checkpoint(iceberg, "raw.out.other") is None
    assert lake_rows(project, "raw.out") == sorted(f"u{i}" for i in range(9))


def test_a_replayed_checkpoint_is_skipped_after_a_restart(project: Project) -> None:
    first = sink_for(project)
    first.open()
    first.write(rows(5))
    first.commit(7)
    first.close()  # the process dies after the Iceberg commit
    again = sink_for(project)
    again.open(last_committed=7)
    assert again.last_committed == 7
    again.write(rows(5))  # the restore hands the checkpoint's rows over again
    again.commit(7)
    again.write(rows(2, start=5))
    again.commit(8)
    again.close()
    assert lake_rows(project) == sorted(f"u{i}" for i in range(7))


def test_the_committed_id_survives_snapshot_expiry(project: Project) -> None:
    sink = sink_for(project)
    sink.open()
    sink.write(rows(3))
    sink.commit(4)
    sink.close()
    with open_lake(project) as lake:  # another writer appends; expiry drops the sink's snapshot
        iceberg = lake.table("refined.out")
        append(iceberg, rows(1, start=100))
        expire_snapshots(iceberg, older_than=datetime.now(UTC), retain_last=1)
        iceberg = lake.table("refined.out")
        assert all(s.summary[SINK_ID_KEY] is None for s in iceberg.snapshots())  # type: ignore[index]
        assert committed_checkpoint(iceberg, "refined.out") == 4
    again = sink_for(project)
    again.open()
    again.write(rows(3))
    again.commit(4)
    again.close()
    assert lake_rows(project) == ["u0", "u1", "u100", "u2"]


def test_a_concurrent_twin_committing_the_same_id_is_not_duplicated(project: Project) -> None:
    """Two processes of one sink (a zombie and its replacement) replay the same id: the
    loser of the commit race sees the id in the winner's snapshot and skips it; a sink
    with another id rebases on the winner and keeps both."""
    zombie, twin, other = (
        sink_for(project),
        sink_for(project),
        sink_for(project, extra=", 'sink.transactional-id-prefix' = 'b'"),
    )
    for s in (zombie, twin, other):
        s.open()
    zombie.write(rows(3))
    zombie.commit(5)
    twin.write(rows(3))
    twin.commit(5)  # its table metadata is stale: the exclusive commit fails, then skips
    assert twin.last_committed == 5
    other.write(rows(2, start=10))
    other.commit(5)
    for s in (zombie, twin, other):
        s.close()
    assert lake_rows(project) == ["u0", "u1", "u10", "u11", "u2"]


def test_schema_evolves_and_incompatible_tables_are_refused(project: Project) -> None:
    with open_lake(project) as lake:
        lake.create_table("refined.out", pa.schema([("user_id", pa.string())]))
        lake.create_table("refined.bad", pa.schema([("amount", pa.string())]))
    sink = sink_for(project)
    sink.open()
    sink.write(rows(2))
    sink.commit(1)
    sink.close()
    with open_lake(project) as lake:
        back = lake.table("refined.out").scan().to_arrow()
        assert back.column_names == ["user_id", "amount", "ts"]
        assert sorted(back["amount"].to_pylist()) == [0.0, 1.0]
    bad = sink_for(project, "refined.bad")
    with pytest.raises(SqlError, match=r"table 'out'.*refined\.bad.*amount") as info:
        bad.open()
    assert info.value.line is not None
    bad.close()


@pytest.mark.parametrize(
    ("name", "extra", "message"),
    [
        ("out", "", r"zone\.table"),
        ("gold.out", "", r"zone 'gold'"),
        ("raw.out", ", 'time-column' = 'tss'", r"'time-column' names 'tss'"),
        ("raw.out", ", 'time-column' = 'amount'", r"TIMESTAMP.*'amount'"),
        ("raw.out", ", 'partition' = 'x'", r"unknown option 'partition'"),
    ],
)
def test_option_errors_are_positioned(
    project: Project, name: str, extra: str, message: str
) -> None:
    with pytest.raises(SqlError, match=message) as info:
        sink_for(project, name, extra)
    assert info.value.line is not None


def test_a_pipeline_into_the_lake_equals_duckdb_batch(tmp_path: Path, project: Project) -> None:
    data = make_rows(1200, seed=3)
    src = write_json(tmp_path / "clicks.json", data)
    sql = (
        SOURCE.format(path=src)
        + """
SET 'execution.checkpointing.interval' = '0';
SET 'table.exec.mini-batch.size' = '100';
CREATE TABLE per_page (
  window_start TIMESTAMP(3), page STRING, n BIGINT, total DOUBLE
) WITH ('connector' = 'lake', 'table' = 'curated.per_page', 'time-column' = 'window_start');
CREATE TABLE big (user_id STRING, amount DOUBLE, ts TIMESTAMP(3))
WITH ('connector' = 'lake', 'table' = 'refined.big');
INSERT INTO per_page
SELECT window_start, page, COUNT(*), SUM(amount)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, page;
INSERT INTO big SELECT user_id, amount, ts FROM clicks WHERE amount > 50;
"""
    )
    result = run_job(
        plan_text(sql, source="lake.sql"),
        project=project,
        until_idle=True,
        checkpoint_dir=tmp_path / "checkpoints",
    )
    assert result.checkpoint_id is not None
    con = expected_con(data)
    want_agg = con.execute(
        "SELECT time_bucket(INTERVAL 1 MINUTE, ts), page, count(*), sum(amount) FROM e GROUP BY ALL"
    ).fetchall()
    want_big = con.execute("SELECT user_id, amount, ts FROM e WHERE amount > 50").fetchall()
    with open_lake(project) as lake:
        per_page = lake.table("curated.per_page")
        assert [str(f.transform) for f in per_page.spec().fields] == ["day"]
        got_agg = per_page.scan().to_arrow()
        got_big = lake.table("refined.big").scan().to_arrow()
    as_rows = lambda t: list(zip(*(c.to_pylist() for c in t.columns), strict=True))  # noqa: E731
    assert multiset(as_rows(got_agg)) == multiset(want_agg)
    assert multiset(as_rows(got_big)) == multiset(want_big)
    assert len(want_big) > 100
