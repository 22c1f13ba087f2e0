"""``fluvial log``: topics, create, tail, groups, retain, verify."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from fluvial.cli import main
from fluvial.project import Project

TS = pa.timestamp("ms", tz="UTC")


def run(capsys: pytest.CaptureFixture[str], project: Project, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["log", *args, "--project", str(project.root)])
    out, err = capsys.readouterr()
    return code, out, err


def events(n: int, start: int = 0) -> pa.Table:
    return pa.table(
        {
            "user": [f"u{i % 3}" for i in range(start, start + n)],
            "seq": list(range(start, start + n)),
            "at": pa.array([1_700_000_000_000 + i for i in range(start, start + n)]).cast(TS),
            "page": [{"url": f"/p/{i}"} for i in range(start, start + n)],
        }
    )


@pytest.fixture
def filled(project: Project) -> Project:
    with project.open_log() as log:
        log.create_topic("clicks", 2)
        log.append("clicks", events(5), partition=0)
        log.append("clicks", events(3, start=5), partition=1)
    return project


def test_create_and_topics(capsys: pytest.CaptureFixture[str], project: Project) -> None:
    code, out, _ = run(capsys, project, "create", "clicks", "--partitions", "3")
    assert code == 0 and "clicks" in out
    with project.open_log() as log:
        log.append("clicks", events(4), partition=2)
    code, out, _ = run(capsys, project, "topics", "--json")
    assert code == 0
    (topic,) = json.loads(out)
    assert topic["name"] == "clicks" and topic["partitions"] == 3 and topic["records"] == 4
    assert topic["end_offsets"] == {"0": 0, "1": 0, "2": 4}
    assert topic["bytes"] > 0
    code, out, _ = run(capsys, project, "topics")
    assert code == 0 and "clicks" in out and "2:4" in out
    code, _, err = run(capsys, project, "create", "clicks")
    assert code == 1 and "already exists" in err


def test_tail_json_lines(capsys: pytest.CaptureFixture[str], filled: Project) -> None:
    code, out, _ = run(capsys, filled, "tail", "clicks", "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["seq"] for r in rows) == list(range(8))
    first = next(r for r in rows if r["seq"] == 6)
    assert first == {
        "user": "u0",
        "seq": 6,
        "at": datetime.fromtimestamp(1_700_000_000.006, UTC).isoformat(),
        "page": {"url": "/p/6"},
        "_partition": 1,
        "_offset": 1,
    }
    code, out, _ = run(capsys, filled, "tail", "clicks", "--json", "--limit", "3")
    assert len(out.splitlines()) == 3
    code, out, _ = run(capsys, filled, "tail", "clicks", "--json", "--from", "2")
    assert sorted(json.loads(line)["seq"] for line in out.splitlines()) == [2, 3, 4, 7]
    code, out, _ = run(capsys, filled, "tail", "clicks", "--json", "--from", "latest")
    assert code == 0 and out == ""
    code, out, _ = run(capsys, filled, "tail", "clicks", "--json", "--from", "2000-01-01T00:00:00Z")
    assert len(out.splitlines()) == 8


def test_tail_for_people(capsys: pytest.CaptureFixture[str], filled: Project) -> None:
    code, out, _ = run(capsys, filled, "tail", "clicks", "--limit", "8")
    assert code == 0
    assert "p0@4" in out and "p1@2" in out and '"url":"/p/7"' in out


def test_tail_follow(capsys: pytest.CaptureFixture[str], filled: Project) -> None:
    def produce() -> None:
        time.sleep(0.2)
        with filled.open_log() as log:
            log.append("clicks", events(2, start=100), partition=1)

    writer = threading.Thread(target=produce)
    writer.start()
    code, out, _ = run(
        capsys, filled, "tail", "clicks", "--from", "latest", "--follow", "--limit", "2", "--json"
    )
    writer.join()
    assert code == 0
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [100, 101]


def test_tail_errors(capsys: pytest.CaptureFixture[str], filled: Project) -> None:
    code, _, err = run(capsys, filled, "tail", "clics")
    assert code == 1 and "did you mean 'clicks'" in err
    code, _, err = run(capsys, filled, "tail", "clicks", "--from", "yesterday")
    assert code == 2 and "ISO-8601" in err


def test_groups(capsys: pytest.CaptureFixture[str], filled: Project) -> None:
    with filled.open_log() as log:
        log.commit("reporting", "clicks", {0: 4, 1: 1})
    code, out, _ = run(capsys, filled, "groups", "--json")
    assert code == 0
    assert json.loads(out) == [
        {"group": "reporting", "topic": "clicks", "committed": {"0": 4, "1": 1}, "lag": 1 + 2}
    ]
    code, out, _ = run(capsys, filled, "groups")
    assert "reporting" in out and "0:4 1:1" in out


def test_retain_and_verify(capsys: pytest.CaptureFixture[str], filled: Project) -> None:
    code, out, _ = run(capsys, filled, "retain", "--json")
    assert code == 0 and json.loads(out) == {"removed_records": 0}
    code, out, _ = run(capsys, filled, "verify", "--json")
    assert code == 0 and json.loads(out) == {"problems": []}


@pytest.mark.parametrize(
    "command", ["topics", "create", "tail", "groups", "retain", "verify", "load"]
)
def test_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    assert main(["log", command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--project" in out


def test_load_validates_like_the_collector(
    capsys: pytest.CaptureFixture[str], project: Project, tmp_path: Path
) -> None:
    from fluvial.generate import EXPECTED_REASON, ClickstreamConfig, generate_clickstream

    config = ClickstreamConfig(
        events=600, seed=11, start_ms=1_790_000_000_000, invalid_fraction=0.1
    )
    generated = list(generate_clickstream(config))
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(e.line.replace(b"\n", b" ") for e in generated) + b"\n")
    invalid = [e for e in generated if e.kind.startswith("invalid:")]
    assert invalid  # the fraction is large enough to have some of every broad kind

    code, out, _ = run(capsys, project, "load", "events", str(path), "--json")
    assert code == 0
    assert json.loads(out) == {"accepted": 600 - len(invalid), "rejected": len(invalid)}
    with project.open_log() as log:
        assert log.topic("events").records == 600 - len(invalid)
        failed = log.snapshot("events_failed")
    expected = sorted(EXPECTED_REASON[e.kind.split(":", 1)[1]] for e in invalid)
    assert sorted(failed.column("reason").to_pylist()) == expected
    assert set(failed.column("source").to_pylist()) == {"load"}
