"""Apply the log's retention limits periodically, from the process that writes the topics.

The embedded log allows one writing process per topic, so retention (which deletes whole
old segments) runs there: the collector starts a :class:`RetentionRunner` for its log.

>>> class Log:
...     calls = 0
...     def apply_retention(self):
...         Log.calls += 1
...         return 0
>>> runner = RetentionRunner(Log(), every_seconds=3600).start()  # runs once at start
>>> runner.stop(); Log.calls
1
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from fluvial.errors import FluvialError

__all__ = ["RetentionRunner"]

logger = logging.getLogger(__name__)


class _Retains(Protocol):
    def apply_retention(self) -> int: ...


class RetentionRunner:
    """A daemon thread calling ``log.apply_retention()`` now and every *every_seconds*."""

    def __init__(self, log: _Retains, *, every_seconds: float) -> None:
        self.log = log
        self.every_seconds = every_seconds
        self.removed = 0  # records deleted so far
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-retention", daemon=True)

    def start(self) -> RetentionRunner:
        if self.every_seconds > 0:
            self._run_once()
            self._thread.start()
        return self

    def _run_once(self) -> None:
        try:
            self.removed += self.log.apply_retention()
        except FluvialError as exc:  # e.g. a topic written by another process: theirs to trim
            logger.warning("retention: %s", exc)

    def _run(self) -> None:
        while not self._stop.wait(self.every_seconds):
            self._run_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
