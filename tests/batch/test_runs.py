"""Snapshots (SCD2), backfills, locks, retries, blocking hooks, history and freshness."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from fluvial.batch import NoHooks, QualityOutcome, backfill, check_freshness, history, run
from fluvial.batch.engines.base import StagedResult
from fluvial.batch.engines.duckdb import DuckDbEngine
from fluvial.batch.locks import model_lock
from fluvial.batch.models import Model
from fluvial.lake import Lake
from fluvial.project import Project

from .conftest import T0, events, read, reference, rows

Write = Callable[[str, str], Path]
Add = Callable[[pa.Table], None]

CUSTOMERS = pa.schema([("id", pa.int64()), ("tier", pa.string()), ("city", pa.string())])


def _set_customers(lake: Lake, data: list[tuple[int, str, str]]) -> None:
    if not lake.exists("refined.customers"):
        lake.create_table("refined.customers", CUSTOMERS)
    table = pa.table(
        {
            "id": [r[0] for r in data],
            "tier": [r[1] for r in data],
            "city": [r[2] for r in data],
        },
        schema=CUSTOMERS,
    )
    lake.table("refined.customers").overwrite(table)


def test_snapshot_history_matches_hand_computed_scd2(
    bproject: Project, lake: Lake, write_model: Write
) -> None:
    write_model(
        "curated/customers_history.sql",
        """
        /*---
        materialized: snapshot
        unique_key: id
        check_cols: [tier]
        invalidate_hard_deletes: true
        ---*/
        SELECT id, tier, city FROM refined.customers
        """,
    )
    t = [datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3, 4)]
    states = [
        [(1, "gold", "Oslo"), (2, "silver", "Rome"), (3, "bronze", "Lima")],
        [(1, "gold", "Bergen"), (2, "gold", "Rome"), (3, "bronze", "Lima")],  # 1: city only
        [(1, "gold", "Bergen"), (2, "gold", "Rome")],  # 3 deleted
        [(1, "silver", "Bergen"), (2, "gold", "Rome"), (3, "bronze", "Lima")],  # 3 is back
    ]
    for moment, state in zip(t, states, strict=True):
        _set_customers(lake, state)
        result = run(bproject, now=moment)
        assert result.ok, result.as_dict()
    # by hand: (id, tier, city, valid_from, valid_to, is_current)
    expected = [
        (1, "gold", "Oslo", t[0], t[3], False),  # a city change is not checked
        (1, "silver", "Bergen", t[3], None, True),
        (2, "silver", "Rome", t[0], t[1], False),
        (2, "gold", "Rome", t[1], None, True),
        (3, "bronze", "Lima", t[0], t[2], False),
        (3, "bronze", "Lima", t[3], None, True),
    ]
    got = read(lake, "curated.customers_history")
    got_rows = sorted(
        (
            (r["id"], r["tier"], r["city"], r["valid_from"], r["valid_to"], r["is_current"])
            for r in got.to_pylist()
        ),
        key=lambda r: (r[0], r[3]),
    )
    assert got_rows == sorted(expected, key=lambda r: (r[0], r[3]))


def test_snapshot_in_the_warehouse_detects_changes_on_all_columns(
    bproject: Project, lake: Lake, write_model: Write
) -> None:
    write_model(
        "marts/customers_scd.sql",
        "/*---\nmaterialized: snapshot\nunique_key: id\n---*/\nSELECT * FROM refined.customers",
    )
    t1, t2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    _set_customers(lake, [(1, "gold", "Oslo"), (2, "silver", "Rome")])
    assert run(bproject, now=t1).ok
    _set_customers(lake, [(1, "gold", "Bergen"), (2, "silver", "Rome")])
    assert run(bproject, now=t2).ok
    from fluvial.batch.warehouse import connect_warehouse

    con = connect_warehouse(bproject, lake)
    try:
        got = con.sql(
            "SELECT id, city, valid_from, valid_to, is_current FROM marts.customers_scd "
            "ORDER BY id, valid_from"
        ).to_arrow_table()
        got = [tuple(r.values()) for r in got.to_pylist()]
    finally:
        con.close()
    assert got == [  # the warehouse's own ordering: compare with UTC datetimes
        (1, "Oslo", t1, t2, False),
        (1, "Bergen", t2, None, True),
        (2, "Rome", t1, None, True),
    ]


def test_backfill_twice_gives_identical_tables(
    bproject: Project, lake: Lake, add_events: Add, write_model: Write
) -> None:
    write_model(
        "refined/daily_buys.sql",
        """
        /*---
        materialized: incremental
        partition_by: day(at)
        ---*/
        SELECT event_id, user_id, amount, at FROM raw.events WHERE kind = 'buy'
        """,
    )
    write_model(
        "marts/totals.sql",
        "SELECT user_id, sum(amount) AS total FROM refined.daily_buys GROUP BY 1",
    )
    data = events(0, 200, days=4)
    add_events(data)
    first = backfill(bproject, date(2026, 3, 1), date(2026, 3, 3))
    assert first.ok, first.as_dict()
    once = read(lake, "refined.daily_buys")
    second = backfill(bproject, date(2026, 3, 1), date(2026, 3, 3))
    assert second.ok
    twice = read(lake, "refined.daily_buys")
    assert rows(once, "event_id") == rows(twice, "event_id")
    expected = reference(
        "SELECT event_id, user_id, amount, \"at\" FROM b WHERE kind = 'buy'", b=data
    )
    assert rows(twice, "event_id") == rows(expected, "event_id")
    # a backfilled day that lost rows upstream would be rewritten; days outside stay
    assert len(history(bproject).runs()) == 2


def test_a_locked_model_waits_then_fails(
    bproject: Project, lake: Lake, add_events: Add, write_model: Write
) -> None:
    write_model("refined/a.sql", "SELECT event_id FROM raw.events")
    write_model("refined/b.sql", "SELECT * FROM refined.a")
    add_events(events(0, 5))
    locks = bproject.data_dir / "batch" / "locks"
    with model_lock(locks, "refined.a", timeout=1, run_id="other"):
        result = run(bproject)
    assert result.model("refined.a").status == "error"
    assert "being built by run other" in (result.model("refined.a").error or "")
    assert result.model("refined.b").status == "skipped"
    assert "refined.a failed" in result.model("refined.b").message
    assert run(bproject).ok


def test_transient_errors_are_retried_others_are_not(
    bproject: Project,
    lake: Lake,
    add_events: Add,
    write_model: Write,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_model("refined/a.sql", "SELECT event_id FROM raw.events")
    add_events(events(0, 5))
    original = DuckDbEngine.stage_select  # a whole table without quality hooks is staged
    calls = {"n": 0}

    def flaky(self: DuckDbEngine, sql: str, inputs: object) -> StagedResult:
        calls["n"] += 1
        if calls["n"] == 1:
            raise duckdb.IOException("IO Error: could not set lock on file")
        return original(self, sql, inputs)  # type: ignore[arg-type]

    monkeypatch.setattr(DuckDbEngine, "stage_select", flaky)
    result = run(bproject)
    assert result.ok and result.model("refined.a").attempts == 2
    assert read(lake, "refined.a").num_rows == 5

    def broken(self: DuckDbEngine, sql: str, inputs: object) -> StagedResult:
        raise ValueError("a bug")

    monkeypatch.setattr(DuckDbEngine, "stage_select", broken)
    result = run(bproject)
    assert result.model("refined.a").status == "error"
    assert result.model("refined.a").attempts == 1


class _RejectOdd(NoHooks):
    """Drops odd amounts from refined.a and fails it."""

    def check_output(self, model: Model, run_id: str, data: pa.Table) -> QualityOutcome:
        if model.name != "refined.a":
            return QualityOutcome(data)
        keep = pa.compute.equal(pa.compute.bit_wise_and(data["amount"], 1), 0)
        return QualityOutcome(data.filter(keep), False, "blocked by even_amount on refined.a", 1)


def test_failed_quality_blocks_downstream(
    bproject: Project, lake: Lake, add_events: Add, write_model: Write
) -> None:
    write_model("refined/a.sql", "SELECT event_id, amount FROM raw.events")
    write_model("curated/b.sql", "SELECT * FROM refined.a")
    write_model("curated/c.sql", "SELECT count(*) AS n FROM raw.events")
    add_events(events(0, 50))
    result = run(bproject, hooks=_RejectOdd())
    assert not any(r % 2 for r in read(lake, "refined.a").column("amount").to_pylist())
    assert result.model("curated.b").status == "skipped"
    assert result.model("curated.b").message == "blocked by even_amount on refined.a"
    assert result.model("curated.c").status == "success"


def test_history_and_freshness(
    bproject: Project, lake: Lake, add_events: Add, write_model: Write
) -> None:
    write_model(
        "refined/a.sql",
        "/*---\nfreshness: {warn_after: 2h, error_after: 6h}\n---*/\nSELECT event_id FROM raw.events",
    )
    write_model("refined/b.sql", "/*---\nfreshness: {error_after: 1d}\n---*/\nSELECT 1 AS x")
    before = check_freshness(bproject)
    assert {(f.model, f.status) for f in before} == {("refined.a", "error"), ("refined.b", "error")}
    add_events(events(0, 5))
    result = run(bproject, select="a")
    last = history(bproject).runs()[0]
    assert (last["run_id"], last["status"], last["models"]) == (result.run_id, "success", 1)
    rec = history(bproject).model_runs(result.run_id)[0]
    assert (rec["model"], rec["rows_written"], rec["attempts"]) == ("refined.a", 5, 1)
    now = datetime.now(UTC)
    status = {f.model: f.status for f in check_freshness(bproject, now=now + timedelta(hours=3))}
    assert status == {"refined.a": "warn", "refined.b": "error"}
    status = {f.model: f.status for f in check_freshness(bproject, now=now + timedelta(hours=7))}
    assert status["refined.a"] == "error"
    assert {f.model: f.status for f in check_freshness(bproject, now=now)}["refined.a"] == "ok"
    _ = T0
