"""The governance database: one SQLite file, ``<data_dir>/govern/policy.db``, in WAL mode.

Principals, API key hashes, roles, grants, tags, filters and masks live in it. Every
process (the API server, ``fluvial up``'s workers, the CLI) opens its own connections
(one per thread for reads, a short-lived one per change): WAL lets readers run beside one writer, writers serialize on
``BEGIN IMMEDIATE`` and wait up to ``busy_timeout`` for each other. The file is created
readable by its owner only: it holds key hashes and the whole access policy.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = ["GovernDb", "govern_dir", "now"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS principals (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT,
    disabled_at TEXT
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    principal TEXT NOT NULL REFERENCES principals(name),
    sha256 TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS roles (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    created_by TEXT,
    builtin INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS memberships (
    role TEXT NOT NULL REFERENCES roles(name),
    member TEXT NOT NULL,
    PRIMARY KEY (role, member)
);
CREATE TABLE IF NOT EXISTS grants (
    id INTEGER PRIMARY KEY,
    grantee TEXT NOT NULL,
    privilege TEXT NOT NULL,
    namespace TEXT NOT NULL,
    tbl TEXT NOT NULL DEFAULT '',
    col TEXT NOT NULL DEFAULT '',
    grant_option INTEGER NOT NULL DEFAULT 0,
    granted_by TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (grantee, privilege, namespace, tbl, col)
);
CREATE TABLE IF NOT EXISTS tags (
    namespace TEXT NOT NULL,
    tbl TEXT NOT NULL DEFAULT '',
    col TEXT NOT NULL DEFAULT '',
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (namespace, tbl, col, key)
);
CREATE TABLE IF NOT EXISTS tag_grants (
    id INTEGER PRIMARY KEY,
    expression TEXT NOT NULL,
    privilege TEXT NOT NULL,
    grantee TEXT NOT NULL,
    grant_option INTEGER NOT NULL DEFAULT 0,
    granted_by TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (expression, privilege, grantee)
);
CREATE TABLE IF NOT EXISTS filters (
    name TEXT PRIMARY KEY,
    grantee TEXT NOT NULL,
    namespace TEXT NOT NULL,
    tbl TEXT NOT NULL,
    row_filter TEXT,
    include TEXT,
    exclude TEXT,
    created_by TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS masks (
    grantee TEXT NOT NULL,
    namespace TEXT NOT NULL,
    tbl TEXT NOT NULL,
    col TEXT NOT NULL,
    kind TEXT NOT NULL,
    keep_last INTEGER NOT NULL DEFAULT 4,
    created_by TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (grantee, namespace, tbl, col)
);
INSERT OR IGNORE INTO roles (name, created_at, builtin) VALUES ('admin', '1970-01-01T00:00:00+00:00', 1);
"""


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def govern_dir(project: Project) -> Path:
    """``<data_dir>/govern``, owner-only (the audit log, keys and policies are in it)."""
    path = project.data_dir / "govern"
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:  # e.g. made by the audit log first: close it again
        os.chmod(path, 0o700)
    return path


SCHEMA_VERSION = 1
#: recently opened databases; an evicted one closes its connections once unreferenced
_OPEN: OrderedDict[Path, GovernDb] = OrderedDict()
_OPEN_LOCK = threading.Lock()
_OPEN_MAX = 16
#: connections a forked child inherited: SQLite must not close them in the child
_INHERITED: list[sqlite3.Connection] = []


class GovernDb:
    """The SQLite file at *path*; :meth:`read` and :meth:`write` give connections.

    Use :meth:`at`: one instance per file and process, so every store opened on a project
    (the API server opens one per request) shares its per-thread read connections.
    """

    @classmethod
    def at(cls, path: Path) -> GovernDb:
        """The process's instance for *path*."""
        key = path.absolute()
        with _OPEN_LOCK:
            db = _OPEN.get(key)
            if db is None:
                db = _OPEN[key] = cls(key)
                while len(_OPEN) > _OPEN_MAX:
                    _OPEN.popitem(last=False)
            _OPEN.move_to_end(key)
            return db

    def __init__(self, path: Path, *, busy_timeout: float = 30.0) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._ready: int | None = None  # the inode whose schema is known to be current
        self._local = threading.local()

    def _inode(self) -> int | None:
        try:
            return os.stat(self.path).st_ino
        except FileNotFoundError:
            return None

    def _connect(self) -> sqlite3.Connection:
        if self._inode() is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA synchronous=NORMAL")  # per connection; WAL stays durable on crash
        inode = self._inode()
        if self._ready != inode:
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(
                    f"BEGIN IMMEDIATE;{SCHEMA}PRAGMA user_version={SCHEMA_VERSION};COMMIT;"
                )
            self._ready = inode
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reading (one snapshot per statement; sees every commit).

        Each thread keeps one open (a fresh connection costs a schema parse per query, which
        is most of a policy lookup); a forked child, or a file replaced underneath, gets a
        new one.
        """
        conn = getattr(self._local, "conn", None)
        stamp = (os.getpid(), self._inode())
        if conn is None or self._local.stamp != stamp:
            if conn is not None and self._local.stamp[0] == stamp[0]:
                conn.close()
            elif conn is not None:  # inherited through fork: never closed (nor used) here
                _INHERITED.append(conn)
            conn = self._local.conn = self._connect()
            self._local.stamp = (os.getpid(), self._inode())
        yield conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside ``BEGIN IMMEDIATE``: committed on success, rolled back on error."""
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
