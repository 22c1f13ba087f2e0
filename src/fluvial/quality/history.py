"""Quality history: every recorded run, its rules' results and its table's metrics.

A SQLite file in the project's data dir (``<data_dir>/quality_history.db``) with three
tables: ``runs`` (one row per evaluation recorded), ``rule_results`` (one per rule of a
run) and ``metrics`` (the table's profile of a run: ``row_count`` and
``null_rate:<column>`` for every column). Relative RowCount rules and DetectAnomalies
read the metrics of earlier runs from here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fluvial.project import Project
    from fluvial.quality.evaluate import QualityReport

__all__ = ["HISTORY_FILE", "History", "open_history", "record"]

#: the history's SQLite file, in the project's data dir
HISTORY_FILE = "quality_history.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,
    table_name   TEXT NOT NULL,
    evaluated_at TEXT NOT NULL,
    evaluated_ms INTEGER NOT NULL,
    passed       INTEGER NOT NULL,
    row_count    INTEGER NOT NULL,
    failing_rows INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_table ON runs (table_name, evaluated_ms);
CREATE TABLE IF NOT EXISTS rule_results (
    run_id       TEXT NOT NULL REFERENCES runs (run_id),
    position     INTEGER NOT NULL,
    rule         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    severity     TEXT NOT NULL,
    passed       INTEGER NOT NULL,
    failing_rows INTEGER NOT NULL,
    message      TEXT NOT NULL,
    metrics      TEXT NOT NULL,
    PRIMARY KEY (run_id, position)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id       TEXT NOT NULL REFERENCES runs (run_id),
    table_name   TEXT NOT NULL,
    metric       TEXT NOT NULL,
    value        REAL NOT NULL,
    evaluated_ms INTEGER NOT NULL,
    PRIMARY KEY (run_id, metric)
);
CREATE INDEX IF NOT EXISTS metrics_by_table ON metrics (table_name, metric, evaluated_ms);
"""


class History:
    """The quality history in one SQLite file (created on first write)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30)) as con:
            con.row_factory = sqlite3.Row
            if write:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA)
            with con:  # one transaction
                yield con

    def record(self, report: QualityReport) -> None:
        """Store a report: its run, every rule's result and the table's metrics.

        Recording the same report again changes nothing.
        """
        at_ms = int(report.evaluated_at.timestamp() * 1000)
        with self._connect(write=True) as con:
            inserted = con.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    report.run_id,
                    report.table,
                    report.evaluated_at.isoformat(),
                    at_ms,
                    int(report.passed),
                    report.rows,
                    report.failing_rows.num_rows,
                ),
            )
            if inserted.rowcount == 0:  # recorded before: recording is idempotent
                return
            con.executemany(
                "INSERT INTO rule_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        report.run_id,
                        i,
                        r.name,
                        r.kind,
                        r.severity,
                        int(r.passed),
                        r.failing_rows,
                        r.message,
                        json.dumps(r.metrics),
                    )
                    for i, r in enumerate(report.results)
                ],
            )
            con.executemany(
                "INSERT INTO metrics VALUES (?, ?, ?, ?, ?)",
                [
                    (report.run_id, report.table, metric, value, at_ms)
                    for metric, value in report.profile.items()
                    if value is not None
                ],
            )

    def metric_history(self, table: str, metric: str, last: int) -> list[float]:
        """The *last* recorded values of *metric* for *table*, oldest first."""
        if not self.path.exists():
            return []
        with self._connect() as con:
            if not _has_tables(con):
                return []
            rows = con.execute(
                "SELECT value FROM metrics WHERE table_name = ? AND metric = ? "
                "ORDER BY evaluated_ms DESC, rowid DESC LIMIT ?",
                (table, metric, last),
            ).fetchall()
        return [float(r[0]) for r in reversed(rows)]

    def runs(self, table: str | None = None, *, limit: int = 20) -> list[dict[str, Any]]:
        """Recorded runs, newest first (of *table*, or of every table)."""
        if not self.path.exists():
            return []
        where, args = ("WHERE table_name = ?", [table]) if table else ("", [])
        with self._connect() as con:
            if not _has_tables(con):
                return []
            rows = con.execute(
                "SELECT run_id, table_name, evaluated_at, passed, row_count, failing_rows, "
                "(SELECT count(*) FROM rule_results r WHERE r.run_id = runs.run_id "
                " AND NOT r.passed AND r.severity = 'error') AS errors, "
                "(SELECT count(*) FROM rule_results r WHERE r.run_id = runs.run_id "
                " AND NOT r.passed AND r.severity = 'warn') AS warnings "
                f"FROM runs {where} ORDER BY evaluated_ms DESC, rowid DESC LIMIT ?",
                [*args, limit],
            ).fetchall()
        return [{**dict(r), "passed": bool(r["passed"])} for r in rows]

    def latest(self) -> list[dict[str, Any]]:
        """The newest run of every table, by table name."""
        if not self.path.exists():
            return []
        with self._connect() as con:
            if not _has_tables(con):
                return []
            tables = [r[0] for r in con.execute("SELECT DISTINCT table_name FROM runs")]
        return [self.runs(t, limit=1)[0] for t in sorted(tables)]

    def rule_results(self, run_id: str) -> list[dict[str, Any]]:
        """The rules' results of one run, in rule order."""
        if not self.path.exists():
            return []
        with self._connect() as con:
            rows = con.execute(
                "SELECT rule, kind, severity, passed, failing_rows, message, metrics "
                "FROM rule_results WHERE run_id = ? ORDER BY position",
                (run_id,),
            ).fetchall()
        return [
            {**dict(r), "passed": bool(r["passed"]), "metrics": json.loads(r["metrics"])}
            for r in rows
        ]


def _has_tables(con: sqlite3.Connection) -> bool:
    row = con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'metrics'").fetchone()
    return bool(row[0])


def open_history(project: Project) -> History:
    """The project's quality history."""
    return History(project.data_dir / HISTORY_FILE)


def record(project: Project, report: QualityReport) -> None:
    """Keep *report* in the project's quality history (runs, rule results, metrics)."""
    open_history(project).record(report)
