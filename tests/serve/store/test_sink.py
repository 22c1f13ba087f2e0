"""``'connector' = 'store'``: a stream sink that applies changelogs exactly once."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

from fluvial.errors import SqlError
from fluvial.project import Project
from fluvial.serve.store import open_store
from fluvial.stream.connectors import ConnectorContext
from fluvial.stream.connectors.options import Options
from fluvial.stream.connectors.store import StoreSink
from fluvial.stream.sql.ast import CreateTable
from fluvial.stream.sql.parser import parse_script

DDL = """
CREATE TABLE totals (
  user_id STRING,
  day DATE,
  clicks BIGINT,
  revenue DECIMAL(12, 2),
  PRIMARY KEY (user_id, day) NOT ENFORCED
) WITH ('connector' = 'store', 'table' = 'user_totals'{extra})
"""


def table(ddl: str) -> CreateTable:
    (statement,) = parse_script(ddl).statements
    assert isinstance(statement, CreateTable)
    return statement


def sink_for(project: Project, extra: str = "") -> StoreSink:
    t = table(DDL.format(extra=extra))
    Options(t).check(StoreSink.required_options, StoreSink.optional_options)
    sink = StoreSink(t, t.options, ConnectorContext(project=project))
    sink.open()
    return sink


def rows(sink: StoreSink, data: dict[str, list[object]], ops: list[int] | None = None) -> pa.Table:
    data = {**data, "revenue": [Decimal(str(v)) for v in data["revenue"]]}
    out = pa.table(data).cast(sink.schema)
    if ops is not None:
        out = out.append_column("_op", pa.array(ops, pa.int8()))
    return out


def test_commits_apply_once_and_replays_are_skipped(project: Project) -> None:
    import datetime as dt

    day = dt.date(2026, 1, 2)
    sink = sink_for(project)
    sink.write(
        rows(sink, {"user_id": ["a", "b"], "day": [day, day], "clicks": [1, 2], "revenue": [1, 2]})
    )
    sink.commit(1)
    # a changelog: b retracted and updated, a deleted, c inserted
    sink.write(
        rows(
            sink,
            {
                "user_id": ["b", "b", "a", "c"],
                "day": [day] * 4,
                "clicks": [2, 5, 1, 9],
                "revenue": [2, 7, 1, 0],
            },
            [1, 2, 3, 0],
        )
    )
    sink.commit(2)
    sink.close()

    expected = [("b", 5), ("c", 9)]
    with open_store(project) as store:
        assert [
            (r["user_id"], r["clicks"]) for r in store.scan("user_totals").to_pylist()
        ] == expected
        assert store.table("user_totals").key == ("user_id", "day")
    # a restart replays checkpoint 2: the sink knows it was applied
    again = sink_for(project)
    assert again.last_committed == 2
    again.write(rows(again, {"user_id": ["z"], "day": [day], "clicks": [0], "revenue": [0]}))
    again.commit(2)
    again.close()
    with open_store(project) as store:
        assert [
            (r["user_id"], r["clicks"]) for r in store.scan("user_totals").to_pylist()
        ] == expected


def test_ttl_option_and_transactional_id(project: Project) -> None:
    import datetime as dt

    sink = sink_for(project, ", 'ttl' = '90 s', 'sink.transactional-id-prefix' = 'v2'")
    assert sink.ttl_seconds == 90 and sink.sink_id == "user_totals.v2"
    assert StoreSink.accepts_updates
    sink.write(
        rows(sink, {"user_id": ["a"], "day": [dt.date(2026, 1, 1)], "clicks": [1], "revenue": [1]})
    )
    sink.commit(7)
    sink.close()
    with open_store(project) as store:
        assert store.last_checkpoint("user_totals.v2") == 7
        store.clock = lambda: 10**10  # far in the future: the row has expired
        assert store.count("user_totals") == 0


def test_a_primary_key_is_required(project: Project) -> None:
    t = table("CREATE TABLE t (a INT, b INT) WITH ('connector' = 'store', 'table' = 'x')")
    with pytest.raises(SqlError, match=r"declare PRIMARY KEY \(…\) NOT ENFORCED") as info:
        StoreSink(t, t.options, ConnectorContext(project=project))
    assert info.value.line == 1
    with pytest.raises(SqlError, match="option 'ttl'"):
        sink_for(project, ", 'ttl' = 'soon'")
