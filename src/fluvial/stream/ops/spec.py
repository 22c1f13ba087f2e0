"""What a window aggregation computes: its windows and its aggregates (plain data).

The planner builds these from SQL; the Python dataflow API builds them directly.

>>> WindowSpec.tumble(60_000).size_ms, AggSpec("n", "count_star").func
(60000, 'count_star')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["AggFunc", "AggSpec", "WindowSpec"]

AggFunc = Literal["count_star", "count", "count_distinct", "sum", "min", "max", "avg"]


@dataclass(frozen=True)
class WindowSpec:
    """Event-time windows, with Flink's semantics (all times in epoch milliseconds).

    * TUMBLE: ``[start, start + size)`` with ``start = floor((t - offset) / size) * size + offset``
    * HOP: windows of ``size`` every ``slide`` (a row is in ``size / slide`` windows)
    * CUMULATE: windows ``[start, start + step·k)`` for k = 1 … size/step, ``start`` as TUMBLE(size)
    * SESSION: per key (``partition_by``), rows closer than ``gap`` share a window
      ``[first, last + gap)``

    ``window_time`` of every window is ``window_end - 1 ms``; a window fires once the
    watermark reaches ``window_end - 1``.
    """

    kind: Literal["tumble", "hop", "cumulate", "session"]
    size_ms: int = 0
    slide_ms: int = 0
    step_ms: int = 0
    gap_ms: int = 0
    offset_ms: int = 0
    partition_by: tuple[str, ...] = ()

    @classmethod
    def tumble(cls, size_ms: int, offset_ms: int = 0) -> WindowSpec:
        return cls("tumble", size_ms=size_ms, offset_ms=offset_ms)

    @classmethod
    def hop(cls, size_ms: int, slide_ms: int, offset_ms: int = 0) -> WindowSpec:
        return cls("hop", size_ms=size_ms, slide_ms=slide_ms, offset_ms=offset_ms)

    @classmethod
    def cumulate(cls, size_ms: int, step_ms: int, offset_ms: int = 0) -> WindowSpec:
        return cls("cumulate", size_ms=size_ms, step_ms=step_ms, offset_ms=offset_ms)

    @classmethod
    def session(cls, gap_ms: int, partition_by: tuple[str, ...] = ()) -> WindowSpec:
        return cls("session", gap_ms=gap_ms, partition_by=partition_by)


@dataclass(frozen=True)
class AggSpec:
    """One aggregate output column.

    ``arg`` names an input column (already computed by the operator before; None for
    ``count_star``); ``filter`` names a boolean input column (``agg(…) FILTER (WHERE …)``).
    """

    name: str
    func: AggFunc
    arg: str | None = None
    filter: str | None = None
