"""Rate limits per write key: a token bucket of events, not of requests.

Each limited key has a bucket holding up to ``burst`` tokens, refilled at ``rate_limit``
tokens per second. A request of *n* events takes *n* tokens at once, or none: when fewer
than *n* are there it is refused (HTTP 429) with the seconds until enough will be, and
nothing of it is stored. A request larger than the burst can never fit and is refused
as such (HTTP 413), so a client does not retry it forever.

>>> clock = iter([0.0, 0.0, 0.5, 0.5]).__next__
>>> limiter = RateLimiter(clock=clock)
>>> limiter.take("k", 10, rate=10.0, burst=10)
0.0
>>> limiter.take("k", 6, rate=10.0, burst=10)   # empty: 0.6 s until 6 tokens
0.6
>>> limiter.take("k", 5, rate=10.0, burst=10)   # half a second later: 5 tokens
0.0
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]

_EPSILON = 1e-9


class RateLimiter:
    """Token buckets by key id; thread-safe. *clock* returns seconds (monotonic)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str, events: int, *, rate: float, burst: int) -> float:
        """Take *events* tokens from *key*'s bucket: 0.0 when taken, else the seconds to
        wait before they will be there (nothing is taken). ``inf`` when *events* exceeds
        the burst."""
        if events > burst:
            return float("inf")
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - at) * rate)
            if tokens + _EPSILON >= events:  # clocks in floats: 0.8 s * 10/s may be 7.999…
                self._buckets[key] = (max(tokens - events, 0.0), now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return max(round((events - tokens) / rate, 6), 1e-6)
