"""Write keys: secrets that let a tracker post events, each bound to one app_id.

A key looks like ``fk_`` followed by 32 URL-safe random characters. It is shown once, when
it is created; ``<data_dir>/keys.json`` keeps only its SHA-256, a short display prefix, its
app_id, its creation and revocation times, and its limits: the browser origins allowed to
use it (``--origin``; none: server-side senders only) and its rate limit in events per
second with a burst (``--rate-limit``, ``--burst``; none: unlimited). A running collector re-reads the file when
it changes (checking its stat at most once per ``reload_interval`` seconds), so a
revocation takes effect without a restart.

>>> import tempfile, pathlib
>>> store = KeyStore(pathlib.Path(tempfile.mkdtemp()) / "keys.json")
>>> key, secret = store.create("shop")
>>> secret.startswith("fk_") and len(secret) == 35
True
>>> store.authenticate(secret).app_id
'shop'
>>> web, _ = store.create("web", origins=["https://Shop.example/"], rate_limit=50)
>>> web.origins, web.rate_limit, web.burst
(('https://shop.example',), 50.0, 50)
>>> store.origin_allowed("https://shop.example"), store.origin_allowed("https://evil.example")
(True, False)
>>> store.revoke(key.key_id).revoked
True
>>> store.authenticate(secret)
Traceback (most recent call last):
...
fluvial.errors.AuthenticationError: write key fk_... (...) was revoked at ...
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from fluvial.errors import AuthenticationError, NotFoundError, UsageError, did_you_mean

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = ["KEYS_FILE", "KEY_PREFIX", "KeyStore", "WriteKey", "hash_key", "normalize_origin"]

KEYS_FILE = "keys.json"
KEY_PREFIX = "fk_"
FILE_VERSION = 1
_SECRET_CHARS = 32  # token_urlsafe(24) gives exactly 32 characters (192 bits)
_APP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DISPLAY = len(KEY_PREFIX) + 4  # "fk_AbCd": enough to tell keys apart, useless to attackers


def hash_key(secret: str) -> str:
    """The SHA-256 hex digest stored for *secret* (the secret itself is never stored)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class WriteKey:
    """One write key as stored: everything but the secret."""

    key_id: str
    prefix: str
    app_id: str
    sha256: str
    created_at: str
    revoked_at: str | None = None
    #: browser origins (``scheme://host[:port]``) allowed to send with this key
    origins: tuple[str, ...] = ()
    #: events per second (None: unlimited), and how many may come at once
    rate_limit: float | None = None
    burst: int | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def allows_origin(self, origin: str) -> bool:
        """Whether a browser at *origin* may send with this key."""
        return normalize_origin(origin, strict=False) in self.origins

    def public(self) -> dict[str, object]:
        """What ``fluvial keys list`` shows: no hash, no secret."""
        return {
            "key_id": self.key_id,
            "prefix": self.prefix,
            "app_id": self.app_id,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "revoked": self.revoked,
            "origins": list(self.origins),
            "rate_limit": self.rate_limit,
            "burst": self.burst,
        }


_ORIGIN = re.compile(r"^(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$")


def normalize_origin(origin: str, *, strict: bool = True) -> str:
    """*origin* as browsers send it: lower-case ``scheme://host[:port]``, no path.

    >>> normalize_origin("HTTPS://Shop.Example:8443/")
    'https://shop.example:8443'

    Raises:
        UsageError: (with *strict*) not an http(s) origin.
    """
    text = origin.strip().lower().rstrip("/")
    if strict and not _ORIGIN.match(text):
        raise UsageError(
            f"expected an origin like https://shop.example or http://localhost:3000 "
            f"(scheme, host, optional port, no path), found {origin!r}"
        )
    return text


def _key_of(entry: dict[str, object]) -> WriteKey:
    origins = entry.get("origins") or ()
    return WriteKey(**{**entry, "origins": tuple(origins)})  # type: ignore[arg-type]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class KeyStore:
    """The write keys of a project, in one JSON file; safe across threads and processes.

    Writers (``create``, ``revoke``) hold an exclusive ``flock`` on ``<file>.lock`` for
    their read-modify-write and replace the file atomically, so a concurrent reader sees
    either the old or the new file, never half of one.
    """

    @classmethod
    def for_project(cls, project: Project, *, reload_interval: float = 1.0) -> KeyStore:
        """The keys of *project*: ``<data_dir>/keys.json``."""
        return cls(project.data_dir / KEYS_FILE, reload_interval=reload_interval)

    def __init__(self, path: Path | str, *, reload_interval: float = 1.0) -> None:
        self.path = Path(path)
        self.reload_interval = reload_interval
        self._lock = threading.Lock()
        self._by_hash: dict[str, WriteKey] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._load()
        self._checked = time.monotonic()

    # -- reading ------------------------------------------------------------------------

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def _read(self) -> list[WriteKey]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            doc = orjson.loads(raw)
            return [_key_of(entry) for entry in doc["keys"]]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise UsageError(
                f"{self.path}: expected a keys file {{'version': 1, 'keys': [...]}}, "
                f"found unreadable content ({exc})"
            ) from exc

    def _load(self) -> None:
        stamp = self._stat()
        keys = self._read()
        self._by_hash = {k.sha256: k for k in keys}
        self._stamp = stamp

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.reload_interval:
            return
        with self._lock:
            self._checked = now
            if self._stat() != self._stamp:
                self._load()

    def list_keys(self) -> list[WriteKey]:
        """Every key, oldest first (revoked ones included)."""
        self._maybe_reload()
        return sorted(self._by_hash.values(), key=lambda k: (k.created_at, k.key_id))

    def origin_allowed(self, origin: str) -> bool:
        """Whether any active key allows *origin* (what a CORS preflight may be told)."""
        self._maybe_reload()
        return any(k.allows_origin(origin) for k in self._by_hash.values() if not k.revoked)

    def authenticate(self, secret: str | None) -> WriteKey:
        """The key for *secret*; raises :class:`AuthenticationError` if missing, unknown or revoked."""
        if not secret:
            raise AuthenticationError(
                "missing write key: send 'Authorization: Bearer KEY' or 'X-Fluvial-Key: KEY'"
            )
        self._maybe_reload()
        digest = hash_key(secret)
        key = self._by_hash.get(digest)
        # A dict lookup by hash leaks nothing useful about the secret; compare_digest is
        # belt and braces should the lookup ever become a scan.
        if key is None or not hmac.compare_digest(key.sha256, digest):
            raise AuthenticationError(
                f"unknown write key {secret[:_DISPLAY]}...: expected a key created by "
                "'fluvial keys create APP_ID'"
            )
        if key.revoked:
            raise AuthenticationError(
                f"write key {key.prefix}... ({key.key_id}) was revoked at {key.revoked_at}"
            )
        return key

    # -- writing ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[list[WriteKey]]:
        """Lock the file, yield its keys for editing, then write them back atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                keys = self._read()
                yield keys
                self._write(keys)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        with self._lock:
            self._load()
            self._checked = time.monotonic()

    def _write(self, keys: list[WriteKey]) -> None:
        doc = {"version": FILE_VERSION, "keys": [asdict(k) for k in keys]}
        data = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)  # hashes only, but no reason for others to read them
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)

    def create(
        self,
        app_id: str,
        *,
        origins: Iterable[str] = (),
        rate_limit: float | None = None,
        burst: int | None = None,
    ) -> tuple[WriteKey, str]:
        """Create a key for *app_id*; return it and its secret (shown once, never stored).

        *origins* are the browser origins allowed to use it; *rate_limit* (events per
        second) with *burst* (default: one second's worth) limits how fast it may send.
        """
        allowed = tuple(dict.fromkeys(normalize_origin(o) for o in origins))
        if rate_limit is not None and not rate_limit > 0:
            raise UsageError(
                f"rate limit must be a positive number of events/s, found {rate_limit}"
            )
        if burst is not None and (rate_limit is None or burst < 1):
            raise UsageError(
                f"burst must be at least 1 and needs a rate limit; found burst {burst}"
                f" with rate limit {rate_limit}"
            )
        if rate_limit is not None and burst is None:
            burst = max(1, int(rate_limit))
        if not _APP_ID.match(app_id):
            raise UsageError(
                f"app_id must be 1-64 letters, digits, '.', '_' or '-' starting with a letter "
                f"or digit; found {app_id!r}"
            )
        secret = KEY_PREFIX + secrets.token_urlsafe(24)
        assert len(secret) == len(KEY_PREFIX) + _SECRET_CHARS
        digest = hash_key(secret)
        key = WriteKey(
            key_id="key_" + digest[:12],
            prefix=secret[:_DISPLAY],
            app_id=app_id,
            sha256=digest,
            created_at=_now(),
            origins=allowed,
            rate_limit=None if rate_limit is None else float(rate_limit),
            burst=burst,
        )
        with self._exclusive() as keys:
            keys.append(key)
        return key, secret

    def revoke(self, key_or_id: str) -> WriteKey:
        """Revoke a key given its secret or its key_id; revoking twice is harmless."""
        with self._exclusive() as keys:
            digest = hash_key(key_or_id)
            for i, key in enumerate(keys):
                if key.key_id == key_or_id or hmac.compare_digest(key.sha256, digest):
                    if not key.revoked:
                        keys[i] = key = replace(key, revoked_at=_now())
                    return key
            ids = [k.key_id for k in keys]
        shown = key_or_id if not key_or_id.startswith(KEY_PREFIX) else key_or_id[:_DISPLAY] + "..."
        raise NotFoundError(
            f"no write key with id or secret {shown!r} in {self.path}{did_you_mean(key_or_id, ids)}"
        )
