"""WatermarkTracker: min over active splits, idleness, finished splits, monotonic."""

from __future__ import annotations

from fluvial.stream.ops import MAX_WATERMARK_MS, WatermarkTracker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_min_over_splits_and_monotonic() -> None:
    w = WatermarkTracker(["a", "b"])
    assert w.current_ms is None
    w.observe("a", 50)
    assert w.current_ms is None  # b has no data yet
    w.observe("b", 70)
    assert w.current_ms == 50
    w.observe("a", 30)  # a split's own watermark never decreases
    assert w.splits["a"] == 50
    w.observe("a", 90)
    assert w.current_ms == 70
    w.add_split("c")  # a new split holds the watermark back but never lowers it
    w.observe("c", 10)
    assert w.current_ms == 70


def test_idle_splits_are_ignored_until_they_have_data_again() -> None:
    clock = Clock()
    w = WatermarkTracker(["a", "b"], idle_timeout_ms=1000, clock=clock)
    w.observe("a", 100)
    assert w.current_ms is None
    clock.now = 1.5
    w.observe("a", 120)
    w.observe("b", None)  # an empty batch does not make a split active
    assert w.current_ms == 120
    w.observe("b", 500)
    clock.now = 2.0
    assert w.current_ms == 120  # b is active again and a still holds it at 120
    clock.now = 10.0  # both idle: the watermark stays
    assert w.current_ms == 120


def test_finished_splits_release_the_watermark() -> None:
    w = WatermarkTracker(["a", "b"])
    w.observe("a", 5)
    w.finish("b")
    assert w.current_ms == 5
    w.finish("a")
    assert w.current_ms == MAX_WATERMARK_MS
