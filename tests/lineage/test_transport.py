"""Transports: the durable NDJSON file, and HTTP to a Marquez-like receiver on loopback."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from tests.lineage.helpers import Receiver, spec_errors

from fluvial.errors import ConfigError, LineageError
from fluvial.lineage import (
    FileTransport,
    HttpTransport,
    emit,
    events_path,
    new_run_id,
    open_transport,
    read_events,
    run_event,
)
from fluvial.project import Project


def _event(job: str = "refined.orders", event_type: str = "COMPLETE") -> dict:
    return run_event(
        event_type,  # type: ignore[arg-type]
        job,
        new_run_id(),
        ["raw.orders"],
        [job],
        sql="SELECT id, amount FROM raw.orders",
    )


def test_file_transport_is_the_default_and_appends_json_lines(project: Project) -> None:
    assert isinstance(open_transport(project), FileTransport)
    first, second = _event("refined.a"), _event("refined.b", "START")
    emit(project, first)
    emit(project, second)
    path = events_path(project)
    assert path == project.data_dir / "lineage" / "events.ndjson"
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3  # one line per event, newline-terminated
    assert [json.loads(x) for x in lines[:2]] == [first, second]
    assert list(read_events(path)) == [first, second]


def test_file_transport_fsyncs_before_returning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    path = tmp_path / "events.ndjson"
    FileTransport(path).emit(_event())
    assert synced == [path.stat().st_size]  # the whole line was written, then synced


def test_concurrent_writers_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    transport = FileTransport(path)
    events = [_event(f"refined.t{i}") for i in range(40)]

    def write(chunk: list[dict]) -> None:
        for e in chunk:
            transport.emit(e)

    threads = [threading.Thread(target=write, args=(events[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = list(read_events(path))
    assert sorted(e["job"]["name"] for e in got) == sorted(e["job"]["name"] for e in events)


def test_a_torn_last_line_is_skipped_a_torn_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    good = _event()
    path.write_text(json.dumps(good) + "\n" + json.dumps(good)[:50])
    assert list(read_events(path)) == [good]
    path.write_text(json.dumps(good)[:50] + "\n" + json.dumps(good) + "\n")
    with pytest.raises(LineageError, match=":1:"):
        list(read_events(path))
    assert list(read_events(tmp_path / "missing.ndjson")) == []


def test_unwritable_file_is_a_lineage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "lineage"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(LineageError, match="cannot append"):
        FileTransport(blocker / "events.ndjson").emit(_event())


def test_http_transport_posts_to_the_lineage_endpoint(
    receiver: tuple[Receiver, str], tmp_path: Path
) -> None:
    fake, url = receiver
    project = Project(
        tmp_path, env={"FLUVIAL_LINEAGE__TRANSPORT": "http", "FLUVIAL_LINEAGE__URL": url + "/"}
    )
    assert isinstance(open_transport(project), HttpTransport)
    events = [_event("refined.a", "START"), _event("refined.a")]
    for e in events:
        emit(project, e)
    assert fake.events == events
    assert all(ct.startswith("application/json") for ct in fake.content_types)
    assert all(spec_errors(e) == [] for e in fake.events)
    assert not events_path(project).exists()  # nothing written locally


def test_http_refusal_and_unreachable_server_are_lineage_errors(
    receiver: tuple[Receiver, str],
) -> None:
    fake, url = receiver
    fake.status = 422
    with pytest.raises(LineageError, match="422"):
        HttpTransport(url).emit(_event())
    with pytest.raises(LineageError, match="cannot POST"):
        HttpTransport("http://127.0.0.1:9", timeout=2).emit(_event())


def test_bad_lineage_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'http'"):
        open_transport(Project(tmp_path, env={"FLUVIAL_LINEAGE__TRANSPORT": "htp"}))
    with pytest.raises(ConfigError, match=r"lineage\.url"):
        open_transport(Project(tmp_path, env={"FLUVIAL_LINEAGE__TRANSPORT": "http"}))


def test_events_move_to_the_project_namespace(tmp_path: Path) -> None:
    named = Project(tmp_path, env={"FLUVIAL_LINEAGE__NAMESPACE": "shop"})
    event = _event()
    emit(named, event)
    (stored,) = read_events(events_path(named))
    assert stored["job"]["namespace"] == "shop"
    assert {d["namespace"] for d in stored["inputs"] + stored["outputs"]} == {"shop"}
    fields = stored["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert {f["namespace"] for v in fields.values() for f in v["inputFields"]} == {"shop"}
    assert event["job"]["namespace"] == "fluvial"  # the caller's event is left as it was
    by_name = Project(tmp_path / "p2", env={"FLUVIAL_PROJECT__NAME": "acme"})
    emit(by_name, _event())
    assert next(read_events(events_path(by_name)))["job"]["namespace"] == "acme"
