"""The audit log's hash chain finds every edit, insertion, reordering and deletion."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fluvial.govern.audit import AuditLog


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    audit = AuditLog(tmp_path / "audit.log")
    for n in range(5):
        audit.append("query", f"p{n}", sql=f"SELECT {n}", rows=n, decision="allow")
    return audit


def _lines(log: AuditLog) -> list[bytes]:
    return log.path.read_bytes().splitlines(keepends=True)


def test_intact_log_verifies(log: AuditLog) -> None:
    result = log.verify()
    assert result.ok and result.records == 5 and result.head_seq == 5


def test_filters(log: AuditLog) -> None:
    assert [r.principal for r in log.records(principal="p3")] == ["p3"]
    assert len(list(log.records(kind="query"))) == 5
    assert list(log.records(kind="forget")) == []


def test_edited_record_is_found(log: AuditLog) -> None:
    lines = _lines(log)
    record = orjson.loads(lines[2])
    record["data"]["rows"] = 999
    lines[2] = orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n"
    log.path.write_bytes(b"".join(lines))
    result = log.verify()
    assert not result.ok and "record 3: its content was edited" in result.problems


def test_deleted_middle_record_is_found(log: AuditLog) -> None:
    lines = _lines(log)
    del lines[1]
    log.path.write_bytes(b"".join(lines))
    result = log.verify()
    assert not result.ok and "expected record 2, found 3" in result.problems[0]


def test_deleted_last_record_is_found(log: AuditLog) -> None:
    log.path.write_bytes(b"".join(_lines(log)[:-1]))
    result = log.verify()
    assert not result.ok and "removed from the end" in result.problems[0]


def test_reordered_records_are_found(log: AuditLog) -> None:
    lines = _lines(log)
    lines[1], lines[2] = lines[2], lines[1]
    log.path.write_bytes(b"".join(lines))
    assert not log.verify().ok


def test_appends_continue_the_chain_across_instances(log: AuditLog) -> None:
    again = AuditLog(log.path)
    record = again.append("policy", "admin", action="grant")
    assert record.seq == 6 and record.prev == list(log.records())[4].hash
    assert again.verify().ok


def test_unknown_kind_is_refused(log: AuditLog) -> None:
    from fluvial.errors import FluvialError

    with pytest.raises(FluvialError, match="unknown audit record kind"):
        log.append("bogus", None)
