"""Vectorized stream operators: window assignment, window aggregation, watermarks.

``assign_windows`` is the TUMBLE/HOP/CUMULATE table function; ``WindowAggregate`` and
``SessionAggregate`` are the windowed GROUP BYs (Flink's slicing and merging window
semantics, over Arrow micro-batches with Polars kernels); ``WatermarkTracker`` combines
per-split watermarks. ``WindowSpec`` and ``AggSpec`` (``spec.py``) describe what to compute.
"""

from fluvial.stream.ops.aggregate import WindowAggregate
from fluvial.stream.ops.assign import assign_windows
from fluvial.stream.ops.session import SessionAggregate
from fluvial.stream.ops.spec import AggFunc, AggSpec, WindowSpec
from fluvial.stream.ops.watermark import MAX_WATERMARK_MS, WatermarkTracker

__all__ = [
    "MAX_WATERMARK_MS",
    "AggFunc",
    "AggSpec",
    "SessionAggregate",
    "WatermarkTracker",
    "WindowAggregate",
    "WindowSpec",
    "assign_windows",
]
