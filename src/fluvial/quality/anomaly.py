"""Anomaly detection on a metric's recorded history: z-score and interquartile range.

>>> history = [100.0, 102.0, 98.0, 101.0, 99.0]
>>> zscore(100.0, history, threshold=3).anomaly, zscore(180.0, history, threshold=3).anomaly
(False, True)
>>> iqr(100.0, history, k=1.5).anomaly, iqr(180.0, history, k=1.5).anomaly
(False, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Verdict", "iqr", "zscore"]


@dataclass(frozen=True)
class Verdict:
    """Whether *value* is an anomaly, the expected range and the statistic used."""

    anomaly: bool
    low: float
    high: float
    score: float


def zscore(
    value: float, history: Sequence[float], *, threshold: float = 3.0, tolerance: float = 0.0
) -> Verdict:
    """An anomaly when |value − mean| > threshold · std (population std of *history*).

    A history with no spread (std 0) makes any difference larger than *tolerance* an
    anomaly: after a constant history, a change is exactly what should be noticed.
    """
    values = np.asarray(history, dtype=float)
    mean, std = float(values.mean()), float(values.std())
    diff = abs(value - mean)
    score = diff / std if std > 0 else (math.inf if diff > 0 else 0.0)
    spread = max(threshold * std, tolerance)
    return Verdict(score > threshold and diff > tolerance, mean - spread, mean + spread, score)


def iqr(
    value: float, history: Sequence[float], *, k: float = 1.5, tolerance: float = 0.0
) -> Verdict:
    """An anomaly outside [Q1 − k·IQR, Q3 + k·IQR] (widened by *tolerance*)."""
    values = np.asarray(history, dtype=float)
    q1, q3 = (float(q) for q in np.quantile(values, [0.25, 0.75]))
    spread = q3 - q1
    low, high = q1 - k * spread - tolerance, q3 + k * spread + tolerance
    median = float(np.median(values))
    score = abs(value - median) / spread if spread > 0 else (math.inf if value != median else 0.0)
    return Verdict(not (low <= value <= high), low, high, score)
