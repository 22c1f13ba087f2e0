"""Run history: every batch run and every model it built, in ``<data_dir>/batch/history.db``.

A SQLite file with two tables: ``runs`` (one row per run or backfill: selection, engine,
status, times) and ``model_runs`` (one row per model and run: status, timings, attempts,
rows read and written, error and log lines).

>>> import tempfile, pathlib
>>> h = History(pathlib.Path(tempfile.mkdtemp()) / "history.db")
>>> h.start_run("r1", kind="run", selection="", engine="duckdb", full_refresh=False)
>>> h.record_model("r1", ModelRecord("refined.a", "success", rows_written=3))
>>> h.finish_run("r1", "success")
>>> [(r["run_id"], r["status"], r["models"]) for r in h.runs()]
[('r1', 'success', 1)]
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["History", "ModelRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    selection TEXT,
    engine TEXT,
    full_refresh INTEGER,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS model_runs (
    run_id TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    seconds REAL,
    attempts INTEGER,
    rows_in INTEGER,
    rows_written INTEGER,
    quarantined INTEGER,
    error TEXT,
    message TEXT,
    log TEXT,
    PRIMARY KEY (run_id, model)
);
CREATE INDEX IF NOT EXISTS model_runs_by_model ON model_runs (model, finished_at);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class ModelRecord:
    """One model's part in a run."""

    model: str
    status: str  # success | up_to_date | error | skipped
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float = 0.0
    attempts: int = 0
    rows_in: int = 0
    rows_written: int = 0
    quarantined: int = 0
    error: str | None = None
    message: str = ""
    log: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return asdict(self)


class History:
    """The run history database (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            with db:
                yield db
        finally:
            db.close()

    def start_run(
        self, run_id: str, *, kind: str, selection: str, engine: str, full_refresh: bool
    ) -> None:
        """Record that a run started."""
        with self._db() as db:
            db.execute(
                "INSERT INTO runs (run_id, kind, selection, engine, full_refresh, started_at, "
                "status) VALUES (?, ?, ?, ?, ?, ?, 'running')",
                (run_id, kind, selection, engine, int(full_refresh), _now()),
            )

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        """Record how a run ended."""
        with self._db() as db:
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE run_id = ?",
                (status, _now(), error, run_id),
            )

    def record_model(self, run_id: str, rec: ModelRecord) -> None:
        """Record (or update) one model's outcome in a run."""
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO model_runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    rec.model,
                    rec.status,
                    rec.started_at,
                    rec.finished_at,
                    rec.seconds,
                    rec.attempts,
                    rec.rows_in,
                    rec.rows_written,
                    rec.quarantined,
                    rec.error,
                    rec.message,
                    "\n".join(rec.log),
                ),
            )

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest runs first, with how many models each built."""
        with self._db() as db:
            rows = db.execute(
                "SELECT r.*, (SELECT count(*) FROM model_runs m WHERE m.run_id = r.run_id) "
                "AS models, (SELECT count(*) FROM model_runs m WHERE m.run_id = r.run_id "
                "AND m.status = 'error') AS errors FROM runs r "
                "ORDER BY r.started_at DESC, r.rowid DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [dict(r) for r in rows]

    def model_runs(
        self, run_id: str | None = None, model: str | None = None
    ) -> list[dict[str, Any]]:
        """Model outcomes, of one run or of one model (newest first)."""
        where, args = [], []
        if run_id is not None:
            where.append("run_id = ?")
            args.append(run_id)
        if model is not None:
            where.append("model = ?")
            args.append(model)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._db() as db:
            rows = db.execute(
                f"SELECT * FROM model_runs {clause} ORDER BY finished_at DESC, rowid DESC",
                args,
            ).fetchall()
        return [dict(r) for r in rows]

    def last_success(self, model: str) -> datetime | None:
        """When *model* was last built successfully (or found up to date)."""
        with self._db() as db:
            row = db.execute(
                "SELECT max(finished_at) FROM model_runs WHERE model = ? "
                "AND status IN ('success', 'up_to_date')",
                (model,),
            ).fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None
