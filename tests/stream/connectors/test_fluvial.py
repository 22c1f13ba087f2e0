"""The log connector: the events topic read by name, positions, and the exactly-once sink."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fluvial.errors import SqlError
from fluvial.project import Project
from fluvial.stream.connectors import ConnectorContext, Source, create_sink, create_source
from fluvial.stream.connectors.fluvial import LogSink, find_run

from .conftest import table

EVENTS_DDL = """
CREATE TABLE ev (
  event_id STRING,
  event_time TIMESTAMP_LTZ(3),
  derived_time TIMESTAMP(3),
  page ROW<title STRING, url STRING>,
  flags ARRAY<STRING>,
  _partition INT,
  _offset BIGINT,
  WATERMARK FOR derived_time AS derived_time - INTERVAL '5' SECOND
) WITH ('connector' = 'fluvial', 'topic' = 'events'{extra})
"""


def events_table(extra: str = "") -> Any:
    return table(EVENTS_DDL.format(extra=extra))


def drain(source: Source) -> pa.Table:
    tables = []
    while not source.finished():
        tables.extend(b.table for b in source.poll(max_rows=97, timeout=0.5))
    return pa.concat_tables(tables) if tables else source.schema.empty_table()


def by_id(t: pa.Table) -> pa.Table:
    return t.sort_by("event_id")


def test_events_topic_is_read_by_name_with_timestamps_converted(events_project: Project) -> None:
    ctx = ConnectorContext(project=events_project, until_idle=True)
    source = create_source(events_table(), ctx)
    source.open()
    assert source.splits() == [f"events/{p}" for p in range(4)]
    got = by_id(drain(source))
    source.close()
    with events_project.open_log() as log:
        expected = by_id(log.snapshot("events"))
    assert got.schema == events_table().physical_schema()
    assert got.num_rows == expected.num_rows > 300
    # LTZ taken as is; TIMESTAMP is the same instant as naive UTC wall-clock time
    assert got["event_time"].equals(expected["event_time"])
    naive = [v.replace(tzinfo=None) for v in expected["derived_time"].to_pylist()]
    assert got["derived_time"].to_pylist() == naive
    assert got["page"].to_pylist() == [
        {"title": p["title"], "url": p["url"]} for p in expected["page"].to_pylist()
    ]
    assert got["_offset"].equals(expected["_offset"])
    assert got["_partition"].equals(expected["_partition"])
    assert source.positions() == {f"events/{p}": end for p, end in log_ends(events_project).items()}


def log_ends(project: Project) -> dict[int, int]:
    with project.open_log() as log:
        return log.topic("events").end_offsets


def test_missing_column_names_the_topic_columns(events_project: Project) -> None:
    ddl = "CREATE TABLE ev (\n  evnt_time TIMESTAMP(3)\n) WITH ('connector' = 'fluvial', 'topic' = 'events')"
    source = create_source(table(ddl), ConnectorContext(project=events_project))
    with pytest.raises(SqlError) as info:
        source.open()
    message = str(info.value)
    assert message.startswith("1:1: table 'ev'")
    assert "'evnt_time'" in message and "did you mean 'event_time'" in message
    assert "event_id, event_type, event_time" in message


def test_missing_topic_suggests_a_name(events_project: Project) -> None:
    ddl = "CREATE TABLE t (a STRING) WITH ('connector' = 'fluvial', 'topic' = 'evnts')"
    source = create_source(table(ddl), ConnectorContext(project=events_project))
    with pytest.raises(SqlError, match="did you mean 'events'"):
        source.open()


def test_resume_from_positions_reads_each_row_once(events_project: Project) -> None:
    ctx = ConnectorContext(project=events_project, until_idle=True)
    first = create_source(events_table(), ctx)
    first.open()
    part = pa.concat_tables(b.table for b in first.poll(max_rows=150))
    saved = first.positions()
    first.close()
    assert 0 < part.num_rows <= 150
    second = create_source(events_table(), ctx)
    second.open(saved)
    rest = drain(second)
    second.close()
    ids = pa.concat_tables([part, rest])["event_id"]
    assert len(ids) == pc.count_distinct(ids).as_py() == sum(log_ends(events_project).values())


def test_startup_modes(events_project: Project) -> None:
    total = sum(log_ends(events_project).values())
    latest = create_source(
        events_table(", 'scan.startup.mode' = 'latest-offset'"),
        ConnectorContext(project=events_project),
    )
    latest.open()
    assert latest.poll(timeout=0.05) == []
    assert not latest.finished()  # unbounded without until_idle
    with events_project.open_log() as log:
        log.append(
            "events",
            log.read("events", 0, 0, 3).drop_columns(["_partition", "_offset", "_timestamp"]),
            partition=0,
        )
    got = [b for b in latest.poll(timeout=2.0)]
    assert sum(b.table.num_rows for b in got) == 3 and got[0].split == "events/0"
    latest.close()

    ctx = ConnectorContext(project=events_project, until_idle=True)
    future = create_source(
        events_table(
            ", 'scan.startup.mode' = 'timestamp', 'scan.startup.timestamp-millis' = '32503680000000'"
        ),
        ctx,
    )
    future.open()
    assert future.finished() or drain(future).num_rows == 0
    past = create_source(
        events_table(", 'scan.startup.mode' = 'timestamp', 'scan.startup.timestamp-millis' = '0'"),
        ctx,
    )
    past.open()
    assert drain(past).num_rows == total + 3
    with pytest.raises(SqlError, match=r"scan\.startup\.timestamp-millis"):
        create_source(events_table(", 'scan.startup.mode' = 'timestamp'"), ctx)
    with pytest.raises(SqlError, match="did you mean 'latest-offset'"):
        create_source(events_table(", 'scan.startup.mode' = 'latest-ofset'"), ctx)


SINK_DDL = """
CREATE TABLE out (
  k STRING, n BIGINT, ts TIMESTAMP(3), p ROW<a INT, b STRING>
) WITH ('connector' = 'fluvial', 'topic' = 'out'{extra})
"""


def rows(start: int, count: int) -> pa.Table:
    schema = table(SINK_DDL.format(extra="")).physical_schema()
    n = list(range(start, start + count))
    return pa.table(
        {
            "k": [f"k{i % 5}" for i in n],
            "n": n,
            "ts": pa.array([i * 1000 for i in n], pa.timestamp("ms")),
            "p": [{"a": i, "b": None if i % 3 else "x"} for i in n],
        },
        schema=schema,
    )


def topic_rows(project: Project, topic: str = "out") -> pa.Table:
    with project.open_log() as log:
        data = log.snapshot(topic)
    return data.drop_columns(["_partition", "_offset", "_timestamp"]).sort_by("n")


def open_sink(project: Project, extra: str = "") -> LogSink:
    sink = create_sink(table(SINK_DDL.format(extra=extra)), ConnectorContext(project=project))
    assert isinstance(sink, LogSink)
    sink.open()
    return sink


def test_sink_commits_once_per_checkpoint_id(project: Project) -> None:
    sink = open_sink(project)
    sink.write(rows(0, 10))
    assert topic_rows(project).num_rows == 0  # staged, not visible before the commit
    sink.commit(1)
    sink.write(rows(0, 10))  # a replay of checkpoint 1
    sink.commit(1)
    sink.close()
    restarted = open_sink(project)  # the state file survives a restart
    assert restarted.last_committed == 1
    restarted.write(rows(0, 10))
    restarted.commit(1)
    restarted.write(rows(10, 5))
    restarted.commit(2)
    restarted.close()
    assert topic_rows(project).equals(rows(0, 15))
    state = project.data_dir / "stream" / "sinks" / "out.json"
    assert '"checkpoint_id": 2' in state.read_text()


def test_a_crash_after_the_append_does_not_duplicate(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = open_sink(project)
    sink.write(rows(0, 4))
    sink.commit(1)
    with project.open_log() as other:  # another writer appends meanwhile
        other.append("out", rows(100, 2), partition=0)

    def crash(self: LogSink, checkpoint_id: int) -> None:
        raise KeyboardInterrupt("crash before the id is recorded")

    sink.write(rows(4, 6))
    monkeypatch.setattr(LogSink, "_write_state", crash)
    with pytest.raises(KeyboardInterrupt):
        sink.commit(2)
    sink.close()
    monkeypatch.undo()
    assert topic_rows(project).num_rows == 12
    again = open_sink(project)  # recovery finds checkpoint 2's rows in the topic
    assert again.last_committed == 2
    again.write(rows(4, 6))
    again.commit(2)  # the engine's replay: skipped
    again.close()
    assert topic_rows(project).equals(pa.concat_tables([rows(0, 10), rows(100, 2)]).sort_by("n"))


def test_a_crash_before_the_append_finishes_the_commit_on_restart(project: Project) -> None:
    sink = open_sink(project, ", 'key.fields' = 'k'")
    sink.write(rows(0, 3))
    sink.commit(1)
    assert sink.log is not None

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("crash before the append")

    sink.log.append = crash  # type: ignore[method-assign]
    sink.write(rows(3, 20))
    with pytest.raises(KeyboardInterrupt):
        sink.commit(2)
    sink.close()
    assert topic_rows(project).num_rows == 3
    again = open_sink(project, ", 'key.fields' = 'k'")
    assert again.last_committed == 2
    again.close()
    data = topic_rows(project)
    assert data.equals(rows(0, 23))
    with project.open_log() as log:  # key.fields routes: one key, one partition
        snap = log.snapshot("out")
    pairs = set(zip(snap["k"].to_pylist(), snap["_partition"].to_pylist(), strict=True))
    assert len(pairs) == len({k for k, _ in pairs}) == 5


def test_find_run() -> None:
    hay = rows(0, 20)
    assert find_run(hay, rows(7, 5)) == 7
    assert find_run(hay, rows(18, 5)) is None
    assert find_run(hay, pa.concat_tables([rows(3, 1), rows(5, 1)])) is None


def test_sink_needs_a_project() -> None:
    sink = create_sink(table(SINK_DDL.format(extra="")), ConnectorContext())
    with pytest.raises(SqlError, match="needs a project"):
        sink.open()


def test_sink_key_fields_must_be_columns(project: Project) -> None:
    with pytest.raises(SqlError, match=r"'key\.fields' names 'kk'"):
        create_sink(
            table(SINK_DDL.format(extra=", 'key.fields' = 'kk'")), ConnectorContext(project=project)
        )


def test_sink_into_the_events_topic_schema(project: Project) -> None:
    """A sink whose table is a subset of an existing topic fills the rest with nulls."""
    with project.open_log() as log:
        log.create_topic("wide", schema=pa.schema([("n", pa.int64()), ("extra", pa.string())]))
    ddl = "CREATE TABLE w (n BIGINT) WITH ('connector' = 'fluvial', 'topic' = 'wide')"
    sink = create_sink(table(ddl), ConnectorContext(project=project))
    sink.open()
    sink.write(pa.table({"n": [1, 2]}))
    sink.commit(1)
    sink.close()
    got = topic_rows(project, "wide")
    assert got.to_pylist() == [{"n": 1, "extra": None}, {"n": 2, "extra": None}]
