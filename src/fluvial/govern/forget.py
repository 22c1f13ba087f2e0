"""Right to be forgotten: remove one user's rows from every place Fluvial keeps data.

``fluvial forget --user-id ID`` first identifies the :class:`~fluvial.govern.subject.Subject`
(the user id, and the anonymous ids of the devices stitched to it: ``refined.identities``,
and the devices the user's own events name), then removes their rows, in an order that
keeps them from flowing back:

1. **the event log** — retained records become tombstones at the same offsets (see
   :mod:`fluvial.log.embedded.redact`), so the archiver and pipelines cannot bring them
   back; the topics' writer locks are taken before anything else changes, and forget
   refuses while a collector is running. Kafka and Kinesis have no per-record delete:
   forget refuses unless told to leave the log to its retention or compaction
   (``keep_log``);
2. **stream files** — checkpoints' outboxes and the ``filesystem`` sink's part files
   (:mod:`fluvial.govern.erasure`); operator state that holds the user is reported;
3. **the lake** — every table of every zone (quarantine included): one Iceberg commit per
   table deletes the rows (copy-on-write: files are rewritten without them) and carries the
   manifests forward, then every older snapshot is expired and unreferenced files removed,
   so no data file or manifest that held the rows remains;
4. **the warehouse** — rows deleted, then the DuckDB file rewritten (copied into a new file
   that replaces it) since DuckDB keeps freed blocks;
5. **the operational store** — rows whose key or value holds an id, expired ones included,
   then the backend reclaims the space (SQLite ``VACUUM``).

The report counts rows per place and table and is written to the audit log as a
``forget`` record. The audit record names the subject by the SHA-256 of the user id, not
by the id itself: the audit log must not become the one file that still holds it.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import FluvialError, UsageError
from fluvial.govern.subject import Subject

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from fluvial.lake.catalog import Lake
    from fluvial.log.base import EventLog
    from fluvial.project import Project

__all__ = ["ForgetReport", "Removal", "forget", "identify"]

IDENTITIES = "refined.identities"
#: snapshot summary key marking forget's commits
FORGET_KEY = "fluvial.forget"
_CHUNK = 200_000


@dataclass(frozen=True)
class Removal:
    """Rows of the subject removed (or, in a dry run, found) in one table or topic."""

    place: str  # log | files | lake | warehouse | store
    name: str
    rows: int
    columns: tuple[str, ...] = ()
    detail: str = ""


@dataclass
class ForgetReport:
    """What ``fluvial forget`` found and removed."""

    user_id: str
    anonymous_ids: list[str]
    dry_run: bool
    removals: list[Removal] = field(default_factory=list)
    files_deleted: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: seconds spent identifying the subject and in each place
    timings: dict[str, float] = field(default_factory=dict)

    def lap(self, what: str, since: float) -> float:
        """Record the seconds since *since* (a perf_counter) as *what*'s; return now."""
        now = time.perf_counter()
        self.timings[what] = round(now - since, 3)
        return now

    def totals(self) -> dict[str, int]:
        """Rows per place."""
        out = {"log": 0, "files": 0, "lake": 0, "warehouse": 0, "store": 0}
        for r in self.removals:
            out[r.place] = out.get(r.place, 0) + r.rows
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return {
            "user_id": self.user_id,
            "anonymous_ids": self.anonymous_ids,
            "dry_run": self.dry_run,
            "totals": self.totals(),
            "removals": [asdict(r) for r in self.removals],
            "files_deleted": self.files_deleted,
            "notes": self.notes,
            "seconds": self.seconds,
            "timings": self.timings,
        }

    def audit_data(self) -> dict[str, Any]:
        """What the audit record holds: counts, never the ids themselves."""
        return {
            "subject_sha256": hashlib.sha256(self.user_id.encode()).hexdigest(),
            "devices": len(self.anonymous_ids),
            "totals": self.totals(),
            "tables": {f"{r.place}:{r.name}": r.rows for r in self.removals if r.rows},
            "files_deleted": self.files_deleted,
            "notes": self.notes,
        }


# ---------------------------------------------------------------- identification


def _embedded_root(log: EventLog) -> Path | None:
    from fluvial.log.embedded.log import EmbeddedLog

    return log.root if isinstance(log, EmbeddedLog) else None


def _log_rows(log: EventLog, columns: tuple[str, ...]) -> Iterator[pa.Table]:
    """The retained records' *columns* of every topic that has them all, chunk by chunk."""
    for info in log.list_topics():
        if info.schema is None or not all(c in info.schema.names for c in columns):
            continue
        for part in info.partitions:
            offset = part.start_offset
            while offset < part.end_offset:
                chunk = log.read(info.name, part.partition, offset, _CHUNK)
                if not chunk.num_rows:
                    break
                offset += chunk.num_rows
                yield chunk.select(list(columns))


def identify(project: Project, user_id: str, *, lake: Lake, log: EventLog | None) -> Subject:
    """The subject: *user_id* and the devices stitched to it.

    A device is the user's when ``refined.identities`` stitches it to them, or when the
    user's own events name it and no stitching gives it to someone else.
    """
    from pyiceberg.expressions import EqualTo

    equal_to: Any = EqualTo

    if not user_id.strip():
        raise UsageError("expected a user id, found an empty string")
    seen: set[str] = set()
    stitched_elsewhere: set[str] = set()
    mine: set[str] = set()
    if lake.exists(IDENTITIES):
        ids = lake.table(IDENTITIES).scan(selected_fields=("anonymous_id", "user_id")).to_arrow()
        is_mine = pc.fill_null(pc.equal(ids["user_id"], user_id), False)
        mine.update(v for v in ids["anonymous_id"].filter(is_mine).to_pylist() if v)
        others = ids["anonymous_id"].filter(pc.invert(is_mine)).to_pylist()
        stitched_elsewhere.update(v for v in others if v)
    for name in lake.tables():
        table = lake.table(name)
        names = {f.name for f in table.schema().fields}
        if {"user_id", "anonymous_id"} <= names:
            rows = table.scan(
                row_filter=equal_to("user_id", user_id), selected_fields=("anonymous_id",)
            ).to_arrow()
            seen.update(v for v in rows["anonymous_id"].to_pylist() if v)
    if log is not None:
        for chunk in _log_rows(log, ("user_id", "anonymous_id")):
            hit = pc.fill_null(pc.equal(chunk["user_id"], user_id), False)
            seen.update(v for v in pc.unique(chunk["anonymous_id"].filter(hit)).to_pylist() if v)
    devices = mine | (seen - stitched_elsewhere)
    return Subject(user_id, tuple(sorted(devices)))


# ---------------------------------------------------------------- the lake


def _count(table: Table, subject: Subject) -> tuple[int, dict[str, list[Any]], tuple[str, ...]]:
    schema = table.schema().as_arrow()
    columns = tuple(subject.columns(schema))
    if not columns or table.current_snapshot() is None:
        return 0, {}, columns
    data = table.scan(selected_fields=columns).to_arrow()
    hits = int(pc.sum(subject.mask(data)).as_py() or 0)
    if not hits:
        return 0, {}, columns
    return hits, subject.matching_text(data), subject.matched_by(data)


def _holds(table: Table, uri: str, subject: Subject) -> bool:
    """Whether the Parquet file at *uri* holds a row of *subject*."""
    import pyarrow.parquet as pq

    with table.io.new_input(uri).open() as f:
        data = pq.read_table(f)
    return bool(pc.any(subject.mask(data)).as_py())


def _purge_history(table: Table, subject: Subject, started: float) -> int:
    """Expire every snapshot but the current one, delete what only they referenced, and
    remove orphans written before *started*; return the files deleted.

    An orphan data file is removed only when it holds the subject: a writer running
    meanwhile may have written it and not committed it yet (its commit then fails and
    is redone from the log, where the user is gone); other orphans are left to the
    regular maintenance and its safety margin.
    """
    from fluvial.lake.maintenance import expire_snapshots, remove_orphans

    expiry = expire_snapshots(table, older_than=datetime.now(UTC) + timedelta(seconds=1))
    age = timedelta(seconds=max(time.time() - started, 0.0))
    orphans = remove_orphans(table, older_than=age, dry_run=True)
    doomed = [uri for uri in orphans if not uri.endswith(".parquet") or _holds(table, uri, subject)]
    for uri in doomed:
        table.io.delete(uri)
    return len(expiry.deleted_files) + len(doomed)


def _forget_lake(
    lake: Lake, subject: Subject, report: ForgetReport, *, dry_run: bool, started: float
) -> None:
    from fluvial.lake.maintenance import commit_with_retry

    for name in lake.tables():
        table = lake.table(name)
        hits, text_hits, columns = _count(table, subject)
        if hits:
            report.removals.append(Removal("lake", name, hits, columns))
        if dry_run:
            continue
        if hits:
            expr = subject.iceberg_filter(table.schema().as_arrow(), text_hits)

            def delete(t: Table, expr: Any = expr) -> None:
                props = {FORGET_KEY: "delete"}
                with t.transaction() as tx, warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    tx.delete(expr, snapshot_properties=props)
                    # a new snapshot on top drops the manifests that list the deleted
                    # files (and their column bounds, which can hold the ids)
                    with tx.update_snapshot(snapshot_properties=props).fast_append():
                        pass

            commit_with_retry(table, delete, what="forget")
            table.refresh()
            # the same filter, now pruned by the files' bounds, must find nothing
            looked_at = tuple(subject.columns(table.schema().as_arrow()))
            left = table.scan(row_filter=expr, selected_fields=looked_at).to_arrow().num_rows
            if left:
                raise FluvialError(
                    f"forget: {left} rows of the subject are still in '{name}' after the "
                    "delete; nothing else was changed in it"
                )
        report.files_deleted += _purge_history(table, subject, started)


# ---------------------------------------------------------------- the warehouse


def _forget_warehouse(
    project: Project, lake: Lake, subject: Subject, report: ForgetReport, *, dry_run: bool
) -> None:
    import duckdb

    from fluvial.batch.warehouse import connect_warehouse, warehouse_path

    path = warehouse_path(project)
    if not path.exists():
        return
    try:
        con = connect_warehouse(project, lake)
    except duckdb.IOException as exc:
        raise FluvialError(
            f"cannot open the warehouse {path} for writing (a batch run or `fluvial up` "
            f"has it open?): {exc}"
        ) from exc
    replaced = False
    try:
        database = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        zones = list(lake.zones)
        tables = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() AND NOT list_contains(?, schema_name) "
            "ORDER BY ALL",
            [zones],
        ).fetchall()
        removed = 0
        for schema, name in tables:
            target = f'"{schema}"."{name}"'
            arrow = con.execute(f"SELECT * FROM {target} LIMIT 0").arrow()
            shape = arrow.schema if isinstance(arrow, pa.Table) else arrow.read_all().schema
            predicate = subject.sql(shape)
            if predicate is None:
                continue
            (hits,) = con.execute(f"SELECT count(*) FROM {target} WHERE {predicate}").fetchone()  # type: ignore[misc]
            if not hits:
                continue
            sample = con.execute(f"SELECT * FROM {target} WHERE {predicate}").arrow()
            rows = sample if isinstance(sample, pa.Table) else sample.read_all()
            report.removals.append(
                Removal("warehouse", f"{schema}.{name}", int(hits), subject.matched_by(rows))
            )
            removed += int(hits)
            if not dry_run:
                con.execute(f"DELETE FROM {target} WHERE {predicate}")
        if removed and not dry_run:
            con.execute("CHECKPOINT")
            fresh = path.with_name(f".{path.name}.forget.tmp")
            fresh.unlink(missing_ok=True)
            con.execute(f"ATTACH '{fresh}' AS forget_fresh")
            con.execute(f'COPY FROM DATABASE "{database}" TO forget_fresh')
            con.execute("DETACH forget_fresh")
            with open(fresh, "rb+") as f:
                os.fsync(f.fileno())
            # replaced while this connection still holds the old file's lock: no batch run
            # can write to the old file meanwhile
            os.replace(fresh, path)
            replaced = True
            report.files_deleted += 1
    finally:
        con.close()
    if replaced:
        from fluvial.log.embedded.durability import fsync_dir

        fsync_dir(path.parent)


# ---------------------------------------------------------------- log and store


def _forget_log(
    log: EventLog, subject: Subject, report: ForgetReport, *, dry_run: bool, locked: bool
) -> None:
    from fluvial.log.embedded.redact import redact_topic

    root = _embedded_root(log)
    if root is None:
        return
    for info in log.list_topics():
        rule = subject.columns(info.schema) if info.schema is not None else {}
        if not rule:
            continue
        # the identity columns; text columns are searched too (e.g. failed events' payloads)
        columns = tuple(c for c, kind in rule.items() if kind != "text") or tuple(rule)
        result = redact_topic(root / info.name, subject.mask, dry_run=dry_run, locked=locked)
        if result.records:
            detail = f"{result.frames} frames in {result.segments} segments"
            if result.relaid:
                detail += f"; {result.relaid} segments laid out anew (restart readers)"
            report.removals.append(Removal("log", info.name, result.records, columns, detail))


def _forget_store(
    project: Project, subject: Subject, report: ForgetReport, *, dry_run: bool
) -> None:
    from fluvial.serve.store import open_store

    with open_store(project) as store:
        removed = store.forget(subject.mask, dry_run=dry_run)
        for name, rows in sorted(removed.items()):
            report.removals.append(Removal("store", name, rows, (), store.name))


def _forget_files(
    project: Project, subject: Subject, report: ForgetReport, *, dry_run: bool
) -> None:
    import re

    from fluvial.govern.erasure import forget_checkpoints, forget_sink_files

    data_dir = project.data_dir
    pattern = re.compile(subject.pattern.encode())
    skip = (data_dir / "log", data_dir / "lake")
    for kind, found in (
        ("checkpoint", forget_checkpoints(data_dir, subject.mask, pattern, dry_run=dry_run)),
        (
            "sink file",
            forget_sink_files(data_dir, subject.mask, pattern, skip=skip, dry_run=dry_run),
        ),
    ):
        for path, rows in found.rows.items():
            name = str(Path(path).relative_to(data_dir))
            report.removals.append(Removal("files", name, rows, (), kind))
        for path in found.removed:
            name = str(Path(path).relative_to(data_dir))
            report.removals.append(Removal("files", name, 0, (), "older checkpoint removed"))
        for path in found.untouched:
            name = str(Path(path).relative_to(data_dir))
            report.notes.append(
                f"{name} holds the user but cannot be edited ({kind}): "
                + (
                    "reset the stream job (remove its checkpoints) to forget its state"
                    if kind == "checkpoint"
                    else "remove or rewrite the file"
                )
            )


# ---------------------------------------------------------------- forget

#: how each log backend without a per-record delete lets records go
_EXPIRY = {
    "kafka": "the topic's retention (retention.ms) or, for a topic keyed by user id with "
    "cleanup.policy=compact, compaction after a null-value record for the key",
    "kinesis": "the stream's retention period (24 hours by default, up to 365 days)",
}


def _log_expiry(backend: str) -> str:
    return _EXPIRY.get(backend, "the log's retention")


def forget(
    project: Project,
    user_id: str,
    *,
    principal: str = "local",
    dry_run: bool = False,
    keep_log: bool = False,
) -> ForgetReport:
    """Remove every row of *user_id* (and of the devices stitched to it); see the module.

    Raises:
        UsageError: the log has no per-record delete (Kafka, Kinesis) and *keep_log* is
            not set, or the id is empty.
        LogError: a topic's writer lock is held by another process (stop the collector).
        FluvialError: the warehouse is open for writing elsewhere.
    """
    from fluvial.govern.audit import open_audit
    from fluvial.lake.catalog import open_lake
    from fluvial.log.embedded.redact import lock_topic

    started = time.time()
    clock = time.perf_counter()
    with open_lake(project) as lake, project.open_log() as log:
        root = _embedded_root(log)
        if root is None and not keep_log:
            raise UsageError(
                f"the {log.name} event log has no per-record delete, so forget cannot remove "
                f"the user's retained records; they leave with {_log_expiry(log.name)}. Run "
                "with --keep-log to forget everywhere else and leave the log to retention"
            )
        locks = []
        try:
            if root is not None and not dry_run:  # before anything changes: refuse early
                for info in log.list_topics():
                    locks.append(lock_topic(root / info.name))
            subject = identify(project, user_id, lake=lake, log=log)
            report = ForgetReport(user_id, list(subject.anonymous_ids), dry_run)
            lap = report.lap("identify", clock)
            if root is None:
                report.notes.append(
                    f"the {log.name} log keeps the user's records (it has no per-record "
                    f"delete) until {_log_expiry(log.name)} removes them"
                )
            _forget_log(log, subject, report, dry_run=dry_run, locked=True)
            lap = report.lap("log", lap)
            _forget_files(project, subject, report, dry_run=dry_run)
            lap = report.lap("files", lap)
        finally:
            for lock in locks:
                lock.release()
        _forget_lake(lake, subject, report, dry_run=dry_run, started=started)
        lap = report.lap("lake", lap)
        _forget_warehouse(project, lake, subject, report, dry_run=dry_run)
        lap = report.lap("warehouse", lap)
    _forget_store(project, subject, report, dry_run=dry_run)
    report.lap("store", lap)
    report.seconds = round(time.perf_counter() - clock, 3)
    if not dry_run:
        open_audit(project).append("forget", principal, **report.audit_data())
    return report
