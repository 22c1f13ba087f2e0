"""The evaluator: each rule kind, `for` and cooldown, history — time moved by hand."""

from __future__ import annotations

import logging
import statistics
import threading
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fluvial.project import Project
from fluvial.serve.alerts import AlertEvaluator, RuleCatalog, open_alert_store
from fluvial.serve.store import open_store
from fluvial.stream.status import StatusWriter

from .conftest import Clock, write_rules

TABLE = "orders_per_minute"


def put(project: Project, minutes: list[int], orders: list[int]) -> None:
    """Upsert per-minute order counts into the store (keyed by minute)."""
    with open_store(project) as store:
        store.upsert(
            TABLE,
            pa.table({"minute": pa.array(minutes, pa.int64()), "orders": pa.array(orders)}),
            ["minute"],
        )


def states(evaluator: AlertEvaluator, now: float) -> dict[str, str]:
    return {s.rule: s.state for s in evaluator.evaluate_once(now)}


def changes(project: Project, rule: str) -> list[tuple[str, str, bool]]:
    history = open_alert_store(project).history(rule)
    return [(h.from_state, h.to_state, h.notified) for h in reversed(history)]


@pytest.fixture
def project(tmp_path: Any) -> Project:
    return Project.init(tmp_path / "p")


def test_threshold_on_a_store_aggregate_with_for(project: Project, clock: Clock) -> None:
    write_rules(
        project,
        f"""
        [[rule]]
        name = "few_orders"
        kind = "threshold"
        table = "{TABLE}"
        column = "orders"
        agg = "sum"
        rows = 3
        op = "<"
        threshold = 50
        for = "1 min"
        """,
    )
    put(project, [1, 2, 3, 4], [100, 10, 12, 14])
    newest3 = pc.sum(pa.array([10, 12, 14])).as_py()  # 36 < 50: holds
    ev = AlertEvaluator(project, clock=clock)
    t0 = clock.now
    assert states(ev, t0) == {"few_orders": "PENDING"}
    assert ev.alerts.state("few_orders").value == newest3
    assert states(ev, t0 + 30) == {"few_orders": "PENDING"}
    assert states(ev, t0 + 60) == {"few_orders": "FIRING"}
    assert states(ev, t0 + 70) == {"few_orders": "FIRING"}
    put(project, [5], [40])  # newest three: 12 + 14 + 40 = 66
    assert states(ev, t0 + 80) == {"few_orders": "RESOLVED"}
    assert ev.alerts.state("few_orders").value == 66
    assert states(ev, t0 + 90) == {"few_orders": "OK"}
    assert changes(project, "few_orders") == [
        ("OK", "PENDING", False),
        ("PENDING", "FIRING", True),
        ("FIRING", "RESOLVED", True),
        ("RESOLVED", "OK", False),
    ]
    ev.close()


def test_pending_that_clears_never_fires(project: Project, clock: Clock) -> None:
    write_rules(
        project,
        f"""
        [[rule]]
        name = "spike"
        kind = "threshold"
        table = "{TABLE}"
        column = "orders"
        op = ">"
        threshold = 100
        for = 60
        """,
    )
    put(project, [1], [500])  # agg defaults to the last row's value
    with AlertEvaluator(project, clock=clock) as ev:
        assert states(ev, clock.now) == {"spike": "PENDING"}
        put(project, [2], [5])
        assert states(ev, clock.tick(59)) == {"spike": "OK"}
    assert changes(project, "spike") == [("OK", "PENDING", False), ("PENDING", "OK", False)]


def test_cooldown_keeps_a_flapping_rule_quiet(project: Project, clock: Clock) -> None:
    write_rules(
        project,
        f"""
        [[rule]]
        name = "flappy"
        kind = "threshold"
        table = "{TABLE}"
        column = "orders"
        op = ">="
        threshold = 10
        cooldown = "5 min"
        """,
    )
    ev = AlertEvaluator(project, clock=clock)
    t0 = clock.now
    for i, (dt, value) in enumerate([(0, 20), (10, 0), (20, 20), (30, 0), (400, 20), (410, 0)]):
        put(project, [i], [value])
        ev.evaluate_once(t0 + dt)
    assert changes(project, "flappy") == [
        ("OK", "FIRING", True),
        ("FIRING", "RESOLVED", True),
        ("RESOLVED", "FIRING", False),  # 20 s after the last notification: within cooldown
        ("FIRING", "RESOLVED", False),  # its firing was not announced: neither is this
        ("RESOLVED", "FIRING", True),  # 390 s later: past the cooldown
        ("FIRING", "RESOLVED", True),
    ]
    ev.close()


def test_rate_of_change(project: Project, clock: Clock) -> None:
    write_rules(
        project,
        f"""
        [[rule]]
        name = "surge"
        kind = "change"
        table = "{TABLE}"
        column = "orders"
        agg = "sum"
        window = "1 min"
        op = ">"
        threshold = 2.0
        """,
    )
    ev = AlertEvaluator(project, clock=clock)
    t0 = clock.now
    put(project, [1], [100])
    assert states(ev, t0) == {"surge": "OK"}  # no earlier value yet
    put(project, [2], [50])  # sum 150 after 30 s: 50/30 = 1.67/s
    assert states(ev, t0 + 30) == {"surge": "OK"}
    put(project, [3], [190])  # sum 340 at t0+90: a window (60 s) back, the sum was 150
    expected = (340 - 150) / 60
    assert expected > 2.0
    assert states(ev, t0 + 90) == {"surge": "FIRING"}
    assert f"change {expected:g}/s" in ev.alerts.state("surge").message  # type: ignore[operator]
    ev.close()


def test_anomaly_against_a_rolling_baseline(project: Project, clock: Clock) -> None:
    write_rules(
        project,
        f"""
        [[rule]]
        name = "odd"
        kind = "anomaly"
        table = "{TABLE}"
        column = "orders"
        baseline = 20
        min_samples = 10
        threshold = 3
        direction = "above"
        """,
    )
    rng = np.random.default_rng(3)
    normal = [int(v) for v in rng.normal(100, 5, 25).round()]
    ev = AlertEvaluator(project, clock=clock)
    for i, value in enumerate(normal):
        put(project, [0], [value])
        assert states(ev, clock.tick(10)) == {"odd": "OK"}, i
    base = normal[-20:]
    spike = int(statistics.fmean(base) + 4 * statistics.pstdev(base)) + 1
    dip = int(statistics.fmean(base) - 4 * statistics.pstdev(base)) - 1
    put(project, [0], [dip])  # below, but the rule only looks above
    assert states(ev, clock.tick(10)) == {"odd": "OK"}
    base = [*normal, dip][-20:]
    z = (spike - np.mean(base)) / np.std(base)
    put(project, [0], [spike])
    expected = "FIRING" if z >= 3 else "OK"
    assert states(ev, clock.tick(10)) == {"odd": expected}
    assert expected == "FIRING"
    assert f"z {round(z, 3):g}" in (ev.alerts.state("odd").message or "")
    ev.close()


def test_absence_of_data(project: Project, clock: Clock) -> None:
    write_rules(
        project,
        f"""
        [[rule]]
        name = "silent"
        kind = "absence"
        table = "{TABLE}"
        column = "minute"
        agg = "max"
        window = "2 min"
        """,
    )
    ev = AlertEvaluator(project, clock=clock)
    t0 = clock.now
    assert states(ev, t0) == {"silent": "FIRING"}  # no table at all
    put(project, [1], [3])
    assert states(ev, t0 + 10) == {"silent": "RESOLVED"}
    put(project, [2], [3])
    assert states(ev, t0 + 70) == {"silent": "OK"}  # a new minute: data flows
    assert states(ev, t0 + 180) == {"silent": "OK"}  # unchanged 110 s < 120 s
    assert states(ev, t0 + 191) == {"silent": "FIRING"}  # unchanged 121 s
    ev.close()


def write_status(
    project: Project, job: str, state: str, rows_in: int, watermark_ms: int | None
) -> None:
    writer = StatusWriter(project.data_dir / "stream" / job, job)
    pipeline = {"name": f"{job}.0", "sink": "out", "rows_in": rows_in, "rows_out": 1,
                "late_rows": 7, "watermark_ms": watermark_ms, "state_bytes": 10}  # fmt: skip
    writer.write(state, [pipeline], {"id": 3, "time_ms": int(clock_ms(project))})


def clock_ms(project: Project) -> float:
    import time

    return time.time() * 1000


def test_metric_rules_read_pipeline_status(project: Project, clock: Clock) -> None:
    write_rules(
        project,
        """
        [[rule]]
        name = "lagging"
        kind = "threshold"
        metric = "lag_seconds"
        op = ">"
        threshold = 120

        [[rule]]
        name = "late"
        kind = "threshold"
        metric = "late_rows"
        pipeline = "b"
        agg = "sum"
        op = ">="
        threshold = 7

        [[rule]]
        name = "down"
        kind = "threshold"
        metric = "running"
        agg = "min"
        op = "<"
        threshold = 1
        """,
    )
    now_ms = int(clock.now * 1000)
    write_status(project, "a", "running", 10, now_ms - 60_000)
    write_status(project, "b", "running", 10, now_ms - 300_000)
    with AlertEvaluator(project, clock=clock) as ev:
        got = states(ev, clock.now)
        assert got == {"lagging": "FIRING", "late": "FIRING", "down": "OK"}
        assert ev.alerts.state("lagging").value == 300.0  # the worst of 60 s and 300 s
        write_status(project, "b", "failed", 10, now_ms)
        got = states(ev, clock.now)
        assert got == {"lagging": "RESOLVED", "late": "FIRING", "down": "FIRING"}


def test_events_per_second_from_two_status_writes(project: Project, clock: Clock) -> None:
    import json
    import time

    status = project.data_dir / "stream" / "j" / "status.json"
    write_status(project, "j", "running", 100, None)
    first = json.loads(status.read_text())["updated_ms"]
    ev = AlertEvaluator(project, clock=clock)
    assert ev.sampler.sample()[0].events_per_second is None  # one look: no rate yet
    time.sleep(0.05)
    write_status(project, "j", "running", 600, None)
    second = json.loads(status.read_text())["updated_ms"]
    rate = ev.sampler.sample()[0].events_per_second
    assert rate == pytest.approx(500 / ((second - first) / 1000), rel=0.05)
    ev.close()


def test_unreadable_values_keep_the_state_and_show_the_error(
    project: Project, clock: Clock
) -> None:
    write_rules(
        project,
        f"""
        [[rule]]
        name = "typo"
        kind = "threshold"
        table = "{TABLE}"
        column = "order"
        threshold = 1
        """,
    )
    put(project, [1], [3])
    with AlertEvaluator(project, clock=clock) as ev:
        (state,) = ev.evaluate_once()
    assert state.state == "OK" and "did you mean 'orders'" in (state.error or "")


def test_api_rules_are_evaluated_and_logged(
    project: Project, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = RuleCatalog(project, open_alert_store(project))
    catalog.create(
        {"name": "big", "kind": "threshold", "table": TABLE, "column": "orders",
         "op": ">", "threshold": 5, "channels": [{"type": "log"}]}
    )  # fmt: skip
    put(project, [1], [9])
    with (
        caplog.at_level(logging.INFO, logger="fluvial.alerts"),
        AlertEvaluator(project, clock=clock) as ev,
    ):
        assert states(ev, clock.now) == {"big": "FIRING"}
    (record,) = [r for r in caplog.records if r.name == "fluvial.alerts"]
    assert record.levelno == logging.WARNING
    assert '"rule": "big"' in record.getMessage() and '"state": "FIRING"' in record.getMessage()
    (entry,) = open_alert_store(project).history("big")
    assert entry.deliveries == [{"channel": "log", "ok": True}]


def test_run_loop_until_stopped(project: Project) -> None:
    write_rules(
        project,
        f"""
        [[rule]]
        name = "any"
        kind = "absence"
        table = "{TABLE}"
        column = "orders"
        window = 60
        """,
    )
    stop = threading.Event()
    ev = AlertEvaluator(project)
    thread = threading.Thread(target=ev.run, args=(stop, 0.02))
    thread.start()
    store = open_alert_store(project)
    for _ in range(500):
        if store.history("any"):
            break
        stop.wait(0.01)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert store.state("any").state == "FIRING"
    text = ev.metrics.render().decode()
    assert 'fluvial_alerts_rule_state{rule="any",state="FIRING"} 1.0' in text
    ev.close()
