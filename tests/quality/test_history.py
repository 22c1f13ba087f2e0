"""History: recorded runs feed relative row counts and anomaly detection."""

from __future__ import annotations

import sqlite3
import statistics
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from fluvial.project import Project
from fluvial.quality import evaluate, open_history, parse_rules, record
from fluvial.quality.anomaly import iqr, zscore
from fluvial.quality.history import HISTORY_FILE

TABLE = "refined.orders"


def batch(rows: int, null_rate: float = 0.0, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    nulls = rng.permutation(rows) < round(rows * null_rate)
    return pa.table({"id": pa.array(np.arange(rows)), "kind": pa.array(["x"] * rows, mask=nulls)})


def check(project: Project, data: pa.Table, *rules: dict[str, Any], keep: bool = True) -> Any:
    report = evaluate(project, TABLE, data, parse_rules(list(rules)))
    if keep:
        record(project, report)
    return report


def test_record_keeps_runs_results_and_metrics(project: Project) -> None:
    first = check(project, batch(10, 0.3), {"IsComplete": "kind"}, {"RowCount": {"min": 1}})
    second = check(project, batch(20), {"IsComplete": "kind"}, {"RowCount": {"min": 1}})
    record(project, second)  # again: idempotent
    history = open_history(project)
    runs = history.runs(TABLE)
    assert [r["run_id"] for r in runs] == [second.run_id, first.run_id]
    assert runs[1]["passed"] is False and runs[1]["errors"] == 1 and runs[1]["failing_rows"] == 3
    assert runs[0]["passed"] is True and runs[0]["row_count"] == 20
    assert history.metric_history(TABLE, "row_count", 10) == [10.0, 20.0]
    assert history.metric_history(TABLE, "null_rate:kind", 10) == [0.3, 0.0]
    assert history.metric_history(TABLE, "row_count", 1) == [20.0]
    results = history.rule_results(first.run_id)
    assert [(r["rule"], r["passed"], r["failing_rows"]) for r in results] == [
        ("IsComplete(kind)", False, 3),
        ("RowCount", True, 0),
    ]
    assert results[0]["metrics"]["completeness"] == pytest.approx(0.7)
    assert [r["run_id"] for r in history.latest()] == [second.run_id]
    with sqlite3.connect(project.data_dir / HISTORY_FILE) as con:
        assert con.execute("SELECT count(*) FROM rule_results").fetchone() == (4,)


def test_empty_history_reads_as_empty(project: Project) -> None:
    history = open_history(project)
    assert history.runs() == [] and history.latest() == []
    assert history.metric_history(TABLE, "row_count", 5) == []


def test_relative_row_count(project: Project) -> None:
    rule = {"RowCount": {"within_pct": 50, "last_runs": 3, "min_history": 2}}
    first = check(project, batch(100), rule)
    assert first.passed and "not enough history" in first.results[0].message
    for rows in (60, 120, 100):
        check(project, batch(rows), rule)
    recent = [60, 120, 100]  # the last three recorded: the first 100 left the window
    mean = statistics.fmean(recent)
    for rows in (40, 46, 47, 139, 141, 200):  # 47 passes only with the window
        report = check(project, batch(rows), rule, keep=False)
        assert report.passed == (abs(rows - mean) <= 0.5 * mean), rows
        assert report.results[0].metrics["history_mean"] == pytest.approx(mean)


def test_row_count_spike_is_flagged_only_with_enough_history(project: Project) -> None:
    rule = {"DetectAnomalies": {"metric": "row_count", "min_history": 5}, "severity": "warn"}
    sizes = [1000, 1010, 990, 1005, 995]
    for i, rows in enumerate(sizes):
        # before enough history, even a spike passes
        spike = check(project, batch(5000), rule, keep=False)
        assert spike.results[0].passed and "not enough history" in spike.results[0].message
        assert spike.passed
        assert len(open_history(project).metric_history(TABLE, "row_count", 30)) == i
        check(project, batch(rows), rule)
    mean, std = statistics.fmean(sizes), statistics.pstdev(sizes)
    for rows in (1000, 1015, 1030, 5000, 10):
        result = check(project, batch(rows), rule, keep=False).results[0]
        assert result.passed == (abs(rows - mean) / std <= 3), rows
        assert result.metrics["score"] == pytest.approx(abs(rows - mean) / std)
    spike = check(project, batch(5000), rule, keep=False)
    assert spike.passed and spike.warnings  # a warn rule: reported, not blocking


def test_null_rate_anomaly_by_iqr(project: Project) -> None:
    rule = {"DetectAnomalies": {"metric": "null_rate", "column": "kind", "method": "iqr"}}
    rates = [0.10, 0.12, 0.11, 0.09, 0.10, 0.13]
    for seed, rate in enumerate(rates):
        check(project, batch(100, rate, seed), rule)
    q1, q3 = np.quantile(rates, [0.25, 0.75])
    low, high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    for rate in (0.11, 0.14, 0.15, 0.50, 0.0):
        report = check(project, batch(100, rate), rule, keep=False)
        assert report.passed == (low <= rate <= high), rate
        assert report.results[0].metrics["low"] == pytest.approx(low)


def test_constant_history_flags_any_change_beyond_tolerance() -> None:
    assert not zscore(100, [100] * 6).anomaly
    assert zscore(101, [100] * 6).anomaly
    assert not zscore(101, [100] * 6, tolerance=2).anomaly
    assert iqr(101, [100] * 6).anomaly and not iqr(101, [100] * 6, tolerance=1).anomaly
