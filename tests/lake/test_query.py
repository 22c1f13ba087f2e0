"""Querying the lake: `fluvial sql` against DuckDB over the same Arrow data, time travel,
the CLI's lake commands, and DuckDB's Iceberg reader against pyiceberg's."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from fluvial.cli import lake as lake_cli
from fluvial.cli import sql as sql_cli
from fluvial.errors import NotFoundError, SqlError
from fluvial.lake import Archiver, connect, open_lake, run_sql
from fluvial.project import Project

from .conftest import make_events, make_failed

QUERY = (
    "SELECT event_type, page.url AS url, count(*) AS n, count(DISTINCT user_id) AS users, "
    "min(event_time) AS first FROM {t} GROUP BY ALL ORDER BY event_type, url"
)


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(lake_cli.app, name="lake")
    sql_cli.register(app)
    return app


@pytest.fixture
def archived(lake_project: Project) -> tuple[Project, pa.Table]:
    """A project whose raw zone holds 6,000 events (two commits) and 50 dead letters."""
    with lake_project.open_log() as log:
        log.create_topic("events")
        log.create_topic("events_failed")
        log.append("events", make_events(3_000, seed=1), key="user_id")
        log.append("events_failed", make_failed(50))
        with open_lake(lake_project) as lake:
            Archiver(lake, log, settings=lake_project.settings).run(until_idle=True)
            log.append("events", make_events(3_000, seed=2), key="user_id")
            Archiver(lake, log, settings=lake_project.settings).run(until_idle=True)
        return lake_project, log.snapshot("events")


def _reference(data: pa.Table, sql: str) -> pa.Table:
    con = duckdb.connect()
    con.register("arrow_events", data)
    return con.sql(sql.format(t="arrow_events")).to_arrow_table()


def test_sql_equals_duckdb_over_the_arrow_data(archived: tuple[Project, pa.Table]) -> None:
    project, logged = archived
    runner = CliRunner()
    out = project.root / "out.parquet"
    result = runner.invoke(
        _app(),
        [
            "sql",
            QUERY.format(t="raw.events"),
            "--format",
            "parquet",
            "--out",
            str(out),
            "--project",
            str(project.root),
        ],
    )
    assert result.exit_code == 0, result.output
    got = pq.read_table(out)
    want = _reference(logged, QUERY)
    assert got.num_rows == want.num_rows > 0
    assert got["n"].to_pylist() == want["n"].to_pylist()
    assert got["users"].to_pylist() == want["users"].to_pylist()
    assert got["url"].to_pylist() == want["url"].to_pylist()
    assert [t.timestamp() for t in got["first"].to_pylist()] == [
        t.timestamp() for t in want["first"].to_pylist()
    ]


def test_sql_formats(archived: tuple[Project, pa.Table]) -> None:
    project, logged = archived
    runner = CliRunner()
    base = ["--project", str(project.root)]
    q = "SELECT event_type, count(*) AS n FROM raw.events GROUP BY 1 ORDER BY 1"
    want = _reference(logged, q.replace("raw.events", "{t}"))
    as_json = runner.invoke(_app(), ["sql", q, "--format", "json", *base])
    assert as_json.exit_code == 0, as_json.output
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert rows == want.to_pylist()
    as_csv = runner.invoke(_app(), ["sql", q, "--format", "csv", *base])
    lines = as_csv.stdout.splitlines()
    assert lines[0] == '"event_type","n"'
    assert len(lines) == 1 + want.num_rows
    table = runner.invoke(_app(), ["sql", q, *base])
    assert table.exit_code == 0 and "page_view" in table.stdout
    bad = runner.invoke(_app(), ["sql", "SELECT nope FROM raw.events", *base])
    assert isinstance(bad.exception, SqlError) and "nope" in str(bad.exception)
    no_out = runner.invoke(_app(), ["sql", q, "--format", "parquet", *base])
    assert no_out.exit_code != 0


def test_time_travel_by_snapshot_and_time(archived: tuple[Project, pa.Table]) -> None:
    project, logged = archived
    with open_lake(project) as lake:
        table = lake.table("raw.events")
        first, second = sorted(table.metadata.snapshots, key=lambda s: s.timestamp_ms)
        first_rows = int(first.summary["added-records"])  # type: ignore[index]
        assert 0 < first_rows < logged.num_rows
        con = connect(lake, snapshot_id=first.snapshot_id)
        assert run_sql(con, "SELECT count(*) AS n FROM raw.events")["n"][0].as_py() == first_rows
        # the other table is read at its current snapshot
        assert run_sql(con, "SELECT count(*) AS n FROM raw.events_failed")["n"][0].as_py() == 50
        between = datetime.fromtimestamp((first.timestamp_ms + 0.5) / 1000, tz=UTC)
        assert second.timestamp_ms > first.timestamp_ms
        con = connect(lake, as_of=between)
        assert run_sql(con, "SELECT count(*) AS n FROM raw.events")["n"][0].as_py() == first_rows
        before = datetime.fromtimestamp((first.timestamp_ms - 60_000) / 1000, tz=UTC)
        con = connect(lake, as_of=before)  # nothing then: an empty table with its columns
        empty = run_sql(con, "SELECT * FROM raw.events")
        assert empty.num_rows == 0 and "event_id" in empty.column_names
        with pytest.raises(NotFoundError, match="snapshot"):
            connect(lake, snapshot_id=12345)
    runner = CliRunner()
    result = runner.invoke(
        _app(),
        [
            "sql",
            "SELECT count(*) AS n FROM raw.events",
            "--format",
            "json",
            "--snapshot",
            str(first.snapshot_id),
            "--project",
            str(project.root),
        ],
    )
    assert json.loads(result.stdout) == {"n": first_rows}


def test_duckdb_reads_the_same_rows_as_pyiceberg(archived: tuple[Project, pa.Table]) -> None:
    """Another Iceberg reader (DuckDB's iceberg_scan) agrees with the writer's own scan."""
    project, _ = archived
    with open_lake(project) as lake:
        for name in ("raw.events", "raw.events_failed"):
            table = lake.table(name)
            mine = table.scan().to_arrow()
            con = connect(lake)
            theirs = run_sql(con, f"SELECT * FROM iceberg_scan('{table.metadata_location}')")
            assert theirs.column_names == mine.column_names
            key = "event_id"
            mine = mine.sort_by(key)
            theirs = theirs.cast(mine.schema).sort_by(key)
            assert theirs.equals(mine)


def test_lake_cli_tables_history_and_archive(lake_project: Project) -> None:
    runner = CliRunner()
    base = ["--project", str(lake_project.root)]
    with lake_project.open_log() as log:
        log.create_topic("events")
        log.append("events", make_events(1_000), key="user_id")
    result = runner.invoke(_app(), ["lake", "archive", "--until-idle", "--json", *base])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["records"] == {"events": 1_000}
    result = runner.invoke(_app(), ["lake", "archive", "--until-idle", *base])
    assert result.exit_code == 0 and "archived 0 record(s)" in result.stdout
    tables = json.loads(runner.invoke(_app(), ["lake", "tables", "--json", *base]).stdout)
    assert [(t["name"], t["records"]) for t in tables] == [("raw.events", 1_000)]
    assert "hour" in tables[0]["partitioning"]
    history = json.loads(
        runner.invoke(_app(), ["lake", "history", "raw.events", "--json", *base]).stdout
    )
    (snap,) = history["snapshots"]
    assert snap["topic"] == "events" and snap["added_records"] == 1_000
    assert sum(json.loads(snap["offsets_to"]).values()) == 1_000
    assert history["schemas"][0]["changes"] == ["create"]
    human = runner.invoke(_app(), ["lake", "history", "raw.events", *base])
    assert human.exit_code == 0 and "schema versions" in human.stdout
    missing = runner.invoke(_app(), ["lake", "history", "raw.evnts", *base])
    assert isinstance(missing.exception, NotFoundError)
    assert "did you mean 'raw.events'" in str(missing.exception)
