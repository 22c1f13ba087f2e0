"""Each materialization against independently written SQL over the same inputs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from fluvial.batch import run
from fluvial.batch.targets import LakeTarget
from fluvial.batch.warehouse import connect_warehouse
from fluvial.lake import Lake
from fluvial.project import Project

from .conftest import T0, events, read, reference, rows

Write = Callable[[str, str], Path]
Add = Callable[[pa.Table], None]


def test_table_and_mart_match_reference_sql(
    bproject: Project, lake: Lake, add_events: Add, write_model: Write
) -> None:
    batch = events(0, 300)
    add_events(batch)
    write_model(
        "refined/user_totals.sql",
        """
        SELECT user_id, sum(amount) AS total, count(*) FILTER (WHERE kind = 'buy') AS buys
        FROM raw.events GROUP BY user_id
        """,
    )
    write_model(
        "marts/top_users.sql",
        "SELECT user_id, total FROM refined.user_totals WHERE buys > 10",
    )
    result = run(bproject)
    assert result.ok, result.as_dict()
    expected = reference(
        "SELECT user_id, sum(amount)::BIGINT AS total, "
        "sum(CASE WHEN kind = 'buy' THEN 1 ELSE 0 END)::BIGINT AS buys FROM b GROUP BY user_id",
        b=batch,
    )
    got = read(lake, "refined.user_totals")
    got = got.cast(
        pa.schema([("user_id", pa.string()), ("total", pa.int64()), ("buys", pa.int64())])
    )
    assert rows(got, "user_id") == rows(expected, "user_id")
    con = connect_warehouse(bproject, lake)
    try:
        mart = con.sql(
            "SELECT user_id, total::BIGINT AS total FROM marts.top_users"
        ).to_arrow_table()
    finally:
        con.close()
    want = [r for r in rows(expected, "user_id") if r["buys"] > 10]
    assert rows(mart, "user_id") == [{"user_id": r["user_id"], "total": r["total"]} for r in want]
    # rebuilding a table replaces it: no duplicates
    assert run(bproject).ok
    assert read(lake, "refined.user_totals").num_rows == expected.num_rows


def test_incremental_append_reads_only_new_rows(
    bproject: Project, lake: Lake, add_events: Add, write_model: Write
) -> None:
    write_model(
        "refined/tagged.sql",
        """
        /*---
        materialized: incremental
        partition_by: day(at)
        ---*/
        SELECT event_id, amount, at, (SELECT count(*) FROM raw.events) AS rows_seen
        FROM raw.events
        """,
    )
    add_events(events(0, 100))
    first = run(bproject)
    add_events(events(100, 30))
    add_events(events(130, 20))
    second = run(bproject)
    third = run(bproject)
    assert first.model("refined.tagged").rows_in == 100
    assert second.model("refined.tagged").rows_in == 50
    assert third.model("refined.tagged").status == "up_to_date"
    out = read(lake, "refined.tagged")
    # each row saw only the rows of its own run: the old ones were not read again
    seen = reference("SELECT rows_seen, count(*) AS n FROM t GROUP BY ALL ORDER BY 1", t=out)
    assert seen.to_pylist() == [{"rows_seen": 50, "n": 50}, {"rows_seen": 100, "n": 100}]
    assert sorted(out.column("event_id").to_pylist()) == sorted(f"e{i}" for i in range(150))


def test_incremental_merge_replaces_matching_keys(
    bproject: Project, lake: Lake, add_events: Add, write_model: Write
) -> None:
    write_model(
        "refined/last_event.sql",
        """
        /*---
        materialized: incremental
        incremental_strategy: merge
        unique_key: user_id
        ---*/
        SELECT user_id, max(at) AS last_at, count(*) AS n FROM raw.events
        WHERE user_id <> 'u3' OR event_id < 'e2'
        GROUP BY user_id
        """,
    )
    sql = (
        'SELECT user_id, max("at") AS last_at, count(*) AS n FROM b '
        "WHERE user_id <> 'u3' OR event_id < 'e2' GROUP BY user_id"
    )
    b1 = events(0, 40)
    b2 = events(40, 10).filter(
        pa.compute.is_in(events(40, 10)["user_id"], pa.array(["u1", "u2", "u5"]))
    )
    add_events(b1)
    assert run(bproject).ok
    add_events(b2)
    assert run(bproject).ok
    out1, out2 = reference(sql, b=b1), reference(sql, b=b2)
    expected = reference(
        "SELECT * FROM o1 WHERE user_id NOT IN (SELECT user_id FROM o2) UNION ALL SELECT * FROM o2",
        o1=out1,
        o2=out2,
    )
    got = read(lake, "refined.last_event")
    assert rows(got.select(["user_id", "n"]), "user_id") == rows(
        expected.select(["user_id", "n"]), "user_id"
    )
    # a full refresh recomputes from everything
    assert run(bproject, full_refresh=True).ok
    full = reference(sql, b=pa.concat_tables([b1, b2]))
    assert rows(read(lake, "refined.last_event").select(["user_id", "n"]), "user_id") == rows(
        full.select(["user_id", "n"]), "user_id"
    )


def test_merge_refuses_repeated_keys(
    bproject: Project, lake: Lake, add_events: Add, write_model: Write
) -> None:
    write_model(
        "refined/dup.sql",
        """
        /*---
        materialized: incremental
        incremental_strategy: merge
        unique_key: user_id
        ---*/
        SELECT user_id, amount FROM raw.events
        """,
    )
    add_events(events(0, 20))
    result = run(bproject)
    assert result.model("refined.dup").status == "error"
    assert "repeat a unique_key" in (result.model("refined.dup").error or "")


def test_insert_overwrite_replaces_partitions_present(
    bproject: Project, lake: Lake, add_events: Add, write_model: Write
) -> None:
    write_model(
        "refined/buys.sql",
        """
        /*---
        materialized: incremental
        incremental_strategy: insert_overwrite
        partition_by: day(at)
        ---*/
        SELECT event_id, amount, at FROM raw.events WHERE kind = 'buy'
        """,
    )
    b1 = events(0, 90, days=3)
    add_events(b1)
    assert run(bproject).ok
    b2 = events(1000, 30, days=1)  # only the first day
    add_events(b2)
    assert run(bproject).ok
    con_sql = (
        'SELECT event_id, amount, "at" FROM b1 WHERE kind = \'buy\' AND "at" >= TIMESTAMPTZ \''
        + (T0 + timedelta(days=1)).isoformat()
        + "' UNION ALL SELECT event_id, amount, \"at\" FROM b2 WHERE kind = 'buy'"
    )
    expected = reference(con_sql, b1=b1, b2=b2)
    assert rows(read(lake, "refined.buys"), "event_id") == rows(expected, "event_id")


def test_crash_between_compute_and_commit_recomputes(
    bproject: Project,
    lake: Lake,
    add_events: Add,
    write_model: Write,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_model(
        "refined/copy.sql",
        "/*---\nmaterialized: incremental\n---*/\nSELECT event_id, amount FROM raw.events",
    )
    add_events(events(0, 50))
    assert run(bproject).ok
    before = LakeTarget(lake, "refined.copy").positions()
    add_events(events(50, 25))
    original = LakeTarget.append

    def crash(self: LakeTarget, data: pa.Table, write: object) -> None:
        raise RuntimeError("killed after computing, before committing")

    monkeypatch.setattr(LakeTarget, "append", crash)
    failed = run(bproject)
    assert failed.model("refined.copy").status == "error"
    assert LakeTarget(lake, "refined.copy").positions() == before
    assert read(lake, "refined.copy").num_rows == 50
    monkeypatch.setattr(LakeTarget, "append", original)
    again = run(bproject)
    assert again.model("refined.copy").rows_in == 25
    ids = read(lake, "refined.copy").column("event_id").to_pylist()
    assert sorted(ids) == sorted(f"e{i}" for i in range(75))  # each row exactly once


def test_downstream_of_incremental_append_reads_its_new_rows(
    bproject: Project, lake: Lake, add_events: Add, write_model: Write
) -> None:
    write_model(
        "refined/base.sql",
        "/*---\nmaterialized: incremental\n---*/\nSELECT event_id, user_id, amount FROM raw.events",
    )
    write_model(
        "curated/big.sql",
        "/*---\nmaterialized: incremental\n---*/\n"
        "SELECT event_id, amount FROM refined.base WHERE amount > 50",
    )
    b1, b2 = events(0, 60), events(60, 40)
    add_events(b1)
    run(bproject)
    add_events(b2)
    second = run(bproject)
    assert second.model("curated.big").rows_in == 40
    expected = reference(
        "SELECT event_id, amount FROM b WHERE amount > 50", b=pa.concat_tables([b1, b2])
    )
    assert rows(read(lake, "curated.big"), "event_id") == rows(expected, "event_id")
