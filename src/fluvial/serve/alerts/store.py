"""Alert state in one SQLite file: ``<data_dir>/alerts/alerts.db``.

Four tables: ``rules`` (rules created through the API, as JSON), ``states`` (each rule's
state and what its next evaluation needs: since when, the pending start, the last value
and when it last changed, the last notification), ``history`` (every state change, with
its value, message and what the channels did) and ``samples`` (recent values, the
baseline of ``change`` and ``anomaly`` rules).

The evaluator writes; the API and the CLI read, from other processes too (WAL mode).

>>> import tempfile, pathlib
>>> db = AlertStore(pathlib.Path(tempfile.mkdtemp()) / "alerts.db")
>>> db.add_history("lagging", 10.0, "OK", "FIRING", 130.0, "lag 130 s > 120", True, [])
>>> [(h.rule, h.to_state) for h in db.history()]
[('lagging', 'FIRING')]
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluvial.errors import ConfigError

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = ["ALERTS_FILE", "AlertStore", "HistoryEntry", "RuleState", "open_alert_store"]

#: the alert database, under the project's data dir
ALERTS_FILE = "alerts/alerts.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rules (
    name TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS states (
    rule TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    since REAL,
    pending_since REAL,
    value REAL,
    changed_at REAL,
    last_notified REAL,
    notified_firing INTEGER NOT NULL DEFAULT 0,
    evaluated_at REAL,
    message TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule TEXT NOT NULL,
    at REAL NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    value REAL,
    message TEXT NOT NULL,
    notified INTEGER NOT NULL,
    deliveries TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_rule ON history (rule, at);
CREATE TABLE IF NOT EXISTS samples (
    rule TEXT NOT NULL,
    at REAL NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_by_rule ON samples (rule, at);
"""


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class RuleState:
    """Where a rule is: OK, PENDING, FIRING or RESOLVED, and what the next look needs."""

    rule: str
    state: str = "OK"
    since: float | None = None
    pending_since: float | None = None
    value: float | None = None
    changed_at: float | None = None
    last_notified: float | None = None
    notified_firing: bool = False
    evaluated_at: float | None = None
    message: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, times as ISO-8601 UTC."""
        return {
            "rule": self.rule,
            "state": self.state,
            "since": _iso(self.since),
            "pending_since": _iso(self.pending_since),
            "value": self.value,
            "last_notified": _iso(self.last_notified),
            "evaluated_at": _iso(self.evaluated_at),
            "message": self.message,
            "error": self.error,
        }

    def evolve(self, **changes: Any) -> RuleState:
        """A copy with *changes*."""
        return replace(self, **changes)


@dataclass(frozen=True)
class HistoryEntry:
    """One state change of a rule."""

    id: int
    rule: str
    at: float
    from_state: str
    to_state: str
    value: float | None
    message: str
    notified: bool
    deliveries: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, the time as ISO-8601 UTC."""
        return {
            "id": self.id,
            "rule": self.rule,
            "at": _iso(self.at),
            "from_state": self.from_state,
            "to_state": self.to_state,
            "value": self.value,
            "message": self.message,
            "notified": self.notified,
            "deliveries": self.deliveries,
        }


class AlertStore:
    """The alert database (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._db() as db:
                db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the alert database {self.path}: {exc}") from exc

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30)) as db:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            with db:  # one transaction
                yield db

    # -- rules created through the API ---------------------------------------------------------

    def rule_docs(self) -> dict[str, dict[str, Any]]:
        """The API's rules as stored (name -> JSON document), by name."""
        with self._db() as db:
            rows = db.execute("SELECT name, doc FROM rules ORDER BY name").fetchall()
        return {r["name"]: json.loads(r["doc"]) for r in rows}

    def put_rule(self, name: str, doc: dict[str, Any]) -> None:
        """Create or replace a rule."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._db() as db:
            db.execute(
                "INSERT INTO rules VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "doc = excluded.doc, updated_at = excluded.updated_at",
                (name, json.dumps(doc), now),
            )

    def delete_rule(self, name: str) -> bool:
        """Remove a rule, its state and its samples (its history stays); False if absent."""
        with self._db() as db:
            gone = db.execute("DELETE FROM rules WHERE name = ?", (name,)).rowcount
            db.execute("DELETE FROM states WHERE rule = ?", (name,))
            db.execute("DELETE FROM samples WHERE rule = ?", (name,))
        return bool(gone)

    # -- states -------------------------------------------------------------------------------

    def states(self) -> dict[str, RuleState]:
        """Every rule's stored state, by rule name."""
        with self._db() as db:
            rows = db.execute("SELECT * FROM states").fetchall()
        return {
            r["rule"]: RuleState(**{**dict(r), "notified_firing": bool(r["notified_firing"])})
            for r in rows
        }

    def state(self, rule: str) -> RuleState:
        """One rule's state (OK if never evaluated)."""
        return self.states().get(rule) or RuleState(rule)

    def save_state(self, state: RuleState) -> None:
        """Store a rule's state."""
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO states VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    state.rule,
                    state.state,
                    state.since,
                    state.pending_since,
                    state.value,
                    state.changed_at,
                    state.last_notified,
                    int(state.notified_firing),
                    state.evaluated_at,
                    state.message,
                    state.error,
                ),
            )

    # -- history ------------------------------------------------------------------------------

    def add_history(
        self,
        rule: str,
        at: float,
        from_state: str,
        to_state: str,
        value: float | None,
        message: str,
        notified: bool,
        deliveries: list[dict[str, Any]],
    ) -> None:
        """Record a state change."""
        with self._db() as db:
            db.execute(
                "INSERT INTO history (rule, at, from_state, to_state, value, message, "
                "notified, deliveries) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (rule, at, from_state, to_state, value, message, int(notified),
                 json.dumps(deliveries)),
            )  # fmt: skip

    def history(self, rule: str | None = None, *, limit: int = 100) -> list[HistoryEntry]:
        """State changes, newest first (of one rule, or of every rule)."""
        where, args = ("WHERE rule = ?", [rule]) if rule else ("", [])
        with self._db() as db:
            rows = db.execute(
                f"SELECT * FROM history {where} ORDER BY at DESC, id DESC LIMIT ?",
                [*args, limit],
            ).fetchall()
        return [
            HistoryEntry(
                id=r["id"],
                rule=r["rule"],
                at=r["at"],
                from_state=r["from_state"],
                to_state=r["to_state"],
                value=r["value"],
                message=r["message"],
                notified=bool(r["notified"]),
                deliveries=json.loads(r["deliveries"]),
            )
            for r in rows
        ]

    # -- samples ------------------------------------------------------------------------------

    def add_sample(self, rule: str, at: float, value: float, *, keep: int, horizon: float) -> None:
        """Record a value; keep the newest *keep* samples and any newer than *horizon*."""
        with self._db() as db:
            db.execute("INSERT INTO samples VALUES (?, ?, ?)", (rule, at, value))
            db.execute(
                "DELETE FROM samples WHERE rule = ? AND at < ? AND rowid NOT IN "
                "(SELECT rowid FROM samples WHERE rule = ? ORDER BY at DESC LIMIT ?)",
                (rule, at - horizon, rule, keep),
            )

    def samples(self, rule: str, *, since: float | None = None) -> list[tuple[float, float]]:
        """A rule's recorded (time, value) samples, oldest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT at, value FROM samples WHERE rule = ? AND at >= ? ORDER BY at, rowid",
                (rule, float("-inf") if since is None else since),
            ).fetchall()
        return [(float(r[0]), float(r[1])) for r in rows]


def open_alert_store(project: Project) -> AlertStore:
    """The project's alert database."""
    return AlertStore(project.data_dir / ALERTS_FILE)
