"""Ingestor and load_file against the real embedded event log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest

from fluvial.errors import UsageError
from fluvial.events import EVENT_SCHEMA, FAILED_SCHEMA, Ingestor, load_file
from fluvial.log import partition_for
from fluvial.log.base import EventLog
from fluvial.project import Project

from .conftest import RECEIVED_MS, dumps, make_event


@pytest.fixture
def log(project: Project) -> Iterator[EventLog]:
    with project.open_log() as opened:
        yield opened


def read_all(log: EventLog, topic: str) -> pa.Table:
    info = log.topic(topic)
    parts = [log.read(topic, p.partition, p.start_offset, 1_000_000) for p in info.partitions]
    return pa.concat_tables(parts)


def test_ingest_routes_valid_and_failed(project: Project, log: EventLog) -> None:
    events = [make_event(anonymous_id=f"anon-{i % 5}", user_id=f"u{i}") for i in range(20)]
    events[3] = make_event(anonymous_id=None, user_id="only-user")
    payloads = [dumps(e) for e in events] + [b"not json", dumps(make_event(event_type="nope"))]
    with Ingestor.for_project(project, log) as ingestor:
        result = ingestor.ingest(payloads, received_at_ms=RECEIVED_MS, app_id="shop")
    assert (result.accepted, result.rejected) == (20, 2)
    assert result.by_reason == {"payload_format": 1, "schema_violation": 1}
    assert [e.index for e in result.errors] == [20, 21]
    assert log.topic("events").schema == EVENT_SCHEMA
    assert log.topic("events_failed").schema == FAILED_SCHEMA
    stored = read_all(log, "events")
    assert sorted(stored["event_id"].to_pylist()) == sorted(e["event_id"] for e in events)
    # each row sits in the partition of coalesce(anonymous_id, user_id)
    keys = [r["anonymous_id"] or r["user_id"] for r in stored.to_pylist()]
    expected = partition_for(pa.array(keys), log.topic("events").num_partitions)
    assert np.array_equal(stored["_partition"].to_numpy(), expected)
    failed = read_all(log, "events_failed")
    assert sorted(failed["reason"].to_pylist()) == ["payload_format", "schema_violation"]
    assert set(failed["payload"].to_pylist()) == {"not json", payloads[21].decode()}


def test_ingest_of_nothing_appends_nothing(project: Project, log: EventLog) -> None:
    ingestor = Ingestor(log, Ingestor.for_project(project, log).validator, partitions=2)
    result = ingestor.ingest([])
    assert (result.accepted, result.rejected, result.by_reason) == (0, 0, {})
    assert log.topic("events").records == 0


def test_load_file(project: Project, tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    good = [make_event(anonymous_id=f"a{i}") for i in range(25)]
    lines = [dumps(e) for e in good]
    lines.insert(4, b"{broken")
    lines.insert(10, b"")  # blank lines are skipped, numbering is kept
    lines.insert(17, dumps(make_event(properties={"product_id": "p", "quantity": 1})))
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = load_file(project, path, batch_size=7)
    assert (result.accepted, result.rejected) == (25, 2)
    assert result.by_reason == {"payload_format": 1, "schema_violation": 1}
    assert [(e.index, e.path) for e in result.errors] == [(4, None), (17, "properties.price")]
    with project.open_log() as log:
        assert sorted(read_all(log, "events")["event_id"].to_pylist()) == sorted(
            e["event_id"] for e in good
        )
        failed = read_all(log, "events_failed")
        assert set(failed["source"].to_pylist()) == {"load"}
        assert failed.num_rows == 2


def test_load_file_into_another_topic(project: Project, tmp_path: Path) -> None:
    path = tmp_path / "e.ndjson"
    path.write_bytes(dumps(make_event()) + b"\n")
    assert load_file(project, path, topic="backfill").accepted == 1
    with project.open_log() as log:
        assert log.topic("backfill").records == 1
        assert "events" not in {t.name for t in log.list_topics()}
        assert log.topic("events_failed").records == 0
    with pytest.raises(UsageError, match="expected an NDJSON file"):
        load_file(project, tmp_path / "missing.ndjson")


def test_failed_rows_keep_the_original_text(project: Project, log: EventLog) -> None:
    weird = orjson.dumps(make_event(event_time="yesterday"), option=orjson.OPT_INDENT_2)
    with Ingestor.for_project(project, log) as ingestor:
        ingestor.ingest([weird, b"\xff\xfe{}"])
    failed = read_all(log, "events_failed").to_pylist()
    texts = {f["payload"] for f in failed}
    assert weird.decode() in texts and "\ufffd\ufffd{}" in texts
