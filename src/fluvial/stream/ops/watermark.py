"""Event-time watermarks across a source's splits (Flink's per-split watermark alignment).

Each split's watermark is the maximum, over the rows it has delivered, of the table's
watermark expression (for ``ts - INTERVAL '5' SECOND`` that is ``max(ts) - 5 s``). The
pipeline's watermark is the minimum over the splits that are still running and not idle;
it never decreases. A split is idle when it delivered no rows for ``idle_timeout_ms``
(``'scan.watermark.idle-timeout'`` / ``table.exec.source.idle-timeout``; 0 disables
idleness). A finished split no longer holds the watermark back; once every split has
finished the watermark is :data:`MAX_WATERMARK_MS` (Flink's ``Long.MAX_VALUE`` watermark:
fire everything).

>>> clock = iter([0.0] * 10).__next__
>>> w = WatermarkTracker(["p0", "p1"], clock=clock)
>>> w.observe("p0", 100); w.current_ms is None   # p1 has no data yet: it holds back
True
>>> w.observe("p1", 40); w.current_ms
40
>>> w.finish("p1"); w.current_ms
100
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

__all__ = ["MAX_WATERMARK_MS", "WatermarkTracker"]

MAX_WATERMARK_MS = 2**63 - 1
"""The watermark after every split finished: +∞ (Java's ``Long.MAX_VALUE``)."""


class WatermarkTracker:
    """The pipeline watermark: min over active, non-idle splits; monotonic."""

    def __init__(
        self,
        splits: Iterable[str] = (),
        idle_timeout_ms: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if idle_timeout_ms < 0:
            raise ValueError(f"idle_timeout_ms must be >= 0; found {idle_timeout_ms}")
        self._idle_timeout_s = idle_timeout_ms / 1000
        self._clock = clock
        self._watermarks: dict[str, int | None] = {}
        self._last_data: dict[str, float] = {}
        self._finished: set[str] = set()
        self._current: int | None = None
        for split in splits:
            self.add_split(split)

    def add_split(self, split: str) -> None:
        """Start tracking a split (it holds the watermark back until it has data or idles)."""
        if split not in self._watermarks:
            self._watermarks[split] = None
            self._last_data[split] = self._clock()

    def observe(self, split: str, max_watermark_candidate_ms: int | None) -> None:
        """Record a batch: ``None`` means it had no rows (which does not reset idleness)."""
        self.add_split(split)
        if max_watermark_candidate_ms is None:
            return
        self._last_data[split] = self._clock()
        previous = self._watermarks[split]
        candidate = int(max_watermark_candidate_ms)
        self._watermarks[split] = candidate if previous is None else max(previous, candidate)

    def finish(self, split: str) -> None:
        """A bounded split ended: it no longer holds the watermark back."""
        self.add_split(split)
        self._finished.add(split)

    @property
    def splits(self) -> dict[str, int | None]:
        """Each split's own watermark (None before its first row)."""
        return dict(self._watermarks)

    def others_ms(self, split: str) -> int | None:
        """The least watermark of the active, non-idle splits other than *split* (what
        holds the pipeline back while *split* advances): +∞ when there are none, None
        while one of them has no data yet."""
        now = self._clock()
        least = MAX_WATERMARK_MS
        for other, watermark in self._watermarks.items():
            if other == split or other in self._finished:
                continue
            if self._idle_timeout_s > 0 and now - self._last_data[other] >= self._idle_timeout_s:
                continue
            if watermark is None:
                return None
            least = min(least, watermark)
        return least

    @property
    def current_ms(self) -> int | None:
        """The pipeline watermark in epoch ms; None until every active split has data."""
        if self._watermarks and len(self._finished) == len(self._watermarks):
            self._current = MAX_WATERMARK_MS
            return self._current
        now = self._clock()
        held: list[int | None] = []
        for split, watermark in self._watermarks.items():
            if split in self._finished:
                continue
            idle = self._idle_timeout_s > 0 and now - self._last_data[split] >= self._idle_timeout_s
            if not idle:
                held.append(watermark)
        if held and None not in held:
            candidate = min(w for w in held if w is not None)
            if self._current is None or candidate > self._current:
                self._current = candidate
        # When every active split is idle the watermark stays where it is (Flink marks the
        # source idle and emits no watermark), so that an idle source never rushes windows.
        return self._current
