"""The audit log: append-only, hash-chained, one JSON object per line (our CloudTrail).

Every query (principal, SQL, tables and columns touched, rows returned, decision), every
policy change, every authentication failure and every ``fluvial forget`` is one record.
Each record carries ``seq`` (1, 2, …), ``prev`` (the previous record's hash) and ``hash``
= SHA-256 of its canonical JSON without ``hash``; ``audit.head`` beside the log holds the
last ``seq`` and ``hash``. :meth:`AuditLog.verify` recomputes the chain, so an edited,
inserted, reordered or deleted record — the last ones included, thanks to the head — is
found and named. Appends take an exclusive ``flock``, so the API server, ``fluvial up``'s
workers and the CLI can all write one log.

What it protects against: edits by anyone who cannot also rewrite every later record and
the head consistently. Keep a copy of the head elsewhere (``fluvial audit verify --json``
prints it) to detect even that.

>>> import tempfile, pathlib
>>> log = AuditLog(pathlib.Path(tempfile.mkdtemp()) / "audit.log")
>>> _ = log.append("query", "alice", sql="SELECT 1", decision="allow", rows=1)
>>> _ = log.append("auth_failure", None, reason="unknown key")
>>> [r.kind for r in log.records()]
['query', 'auth_failure']
>>> log.verify().ok
True
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from fluvial.errors import FluvialError

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = ["AUDIT_KINDS", "AuditLog", "AuditRecord", "Verification", "open_audit"]

#: the kinds of record the platform writes
AUDIT_KINDS = ("query", "policy", "principal", "auth_failure", "forget")
GENESIS = "0" * 64


def _canonical(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(payload)).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    """One audit record as written."""

    seq: int
    time: str
    kind: str
    principal: str | None
    data: dict[str, Any]
    prev: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "kind": self.kind,
            "principal": self.principal,
            "data": self.data,
            "prev": self.prev,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class Verification:
    """The outcome of :meth:`AuditLog.verify`: ``ok``, how many records were checked, and
    the first problem found (``seq`` of the record, or None when it is the head)."""

    ok: bool
    records: int
    head_seq: int
    head_hash: str
    problems: list[str] = field(default_factory=list)


class AuditLog:
    """The hash-chained audit log at *path* (``audit.head`` beside it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.head_path = path.with_name(path.name + ".head")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.path.with_name(self.path.name + ".lock"), os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            os.close(lock)

    def _head(self) -> tuple[int, str]:
        if not self.head_path.exists():
            return 0, GENESIS
        head = orjson.loads(self.head_path.read_bytes())
        return int(head["seq"]), str(head["hash"])

    def append(self, kind: str, principal: str | None, **data: Any) -> AuditRecord:
        """Append one record, durably (fsync) before returning it."""
        if kind not in AUDIT_KINDS:
            raise FluvialError(f"unknown audit record kind {kind!r}; expected one of {AUDIT_KINDS}")
        with self._locked():
            seq, prev = self._head()
            payload = {
                "seq": seq + 1,
                "time": datetime.now(UTC).isoformat(timespec="microseconds"),
                "kind": kind,
                "principal": principal,
                "data": orjson.loads(_canonical(data)),  # JSON types only, as read back
                "prev": prev,
            }
            digest = _digest(payload)
            line = _canonical({**payload, "hash": digest}) + b"\n"
            with self.path.open("ab") as out:
                out.write(line)
                out.flush()
                os.fsync(out.fileno())
            tmp = self.head_path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps({"seq": seq + 1, "hash": digest}))
            os.replace(tmp, self.head_path)
        return AuditRecord(hash=digest, **payload)

    def records(
        self,
        *,
        principal: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
    ) -> Iterator[AuditRecord]:
        """The records, oldest first, optionally only one principal's, kind's, or since a time."""
        if not self.path.exists():
            return
        bound = since.isoformat() if since is not None else None
        with self.path.open("rb") as lines:
            for line in lines:
                if not line.strip():
                    continue
                raw = orjson.loads(line)
                if principal is not None and raw.get("principal") != principal:
                    continue
                if kind is not None and raw.get("kind") != kind:
                    continue
                if bound is not None and str(raw.get("time", "")) < bound:
                    continue
                yield AuditRecord(**raw)

    def verify(self) -> Verification:
        """Recompute the chain; every edited, missing, inserted or reordered record is named."""
        problems: list[str] = []
        prev, seq = GENESIS, 0
        if self.path.exists():
            with self.path.open("rb") as lines:
                for number, line in enumerate(lines, 1):
                    try:
                        raw = orjson.loads(line)
                        claimed = raw.pop("hash")
                    except (orjson.JSONDecodeError, KeyError, AttributeError):
                        problems.append(f"line {number}: not an audit record")
                        break
                    if raw.get("seq") != seq + 1:
                        problems.append(
                            f"line {number}: expected record {seq + 1}, found {raw.get('seq')}"
                            " (a record was deleted or inserted)"
                        )
                    if raw.get("prev") != prev:
                        problems.append(f"record {raw.get('seq')}: does not follow its predecessor")
                    if _digest(raw) != claimed:
                        problems.append(f"record {raw.get('seq')}: its content was edited")
                    prev, seq = claimed, int(raw.get("seq", seq + 1))
                    if problems:
                        break
        head_seq, head_hash = self._head()
        if not problems and (head_seq, head_hash) != (seq, prev):
            problems.append(
                f"the head says {head_seq} records ending in {head_hash[:12]}…, the log has "
                f"{seq} ending in {prev[:12]}… (records were removed from the end)"
            )
        return Verification(not problems, seq, head_seq, head_hash, problems)


def open_audit(project: Project) -> AuditLog:
    """The project's audit log, ``<data_dir>/govern/audit.log``."""
    return AuditLog(project.data_dir / "govern" / "audit.log")
