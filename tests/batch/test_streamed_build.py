"""Whole rebuilds streamed in batches: the same rows and types as the in-memory path (which
quality hooks take), one commit whatever the number of batches, keys checked by the
engine, nothing left in the spill folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from fluvial.batch import NoHooks, QualityOutcome, run
from fluvial.batch.models import Model
from fluvial.lake import Lake, open_lake
from fluvial.project import Project

from .conftest import events, read, reference, rows

#: the bproject fixture's settings (fast retries and lock waits)
ENV = {
    "FLUVIAL_BATCH__RETRIES": "2",
    "FLUVIAL_BATCH__RETRY_BACKOFF_SECONDS": "0.01",
    "FLUVIAL_BATCH__LOCK_TIMEOUT_SECONDS": "0.5",
}
Add = Callable[[pa.Table], None]
Write = Callable[[str, str], Path]

MODEL = """
/*---
materialized: {materialized}
{extra}
partition_by: day(at)
---*/
SELECT event_id, user_id, upper(kind) AS kind, amount * 2 AS amount, at,
       row_number() OVER (PARTITION BY user_id ORDER BY at, event_id) AS nth
FROM raw.events WHERE kind <> 'buy'
"""


class _SeeAll(NoHooks):
    """Checks every row (so the build keeps the output in memory), keeps them all."""

    def check_output(self, model: Model, run_id: str, data: pa.Table) -> QualityOutcome:
        return QualityOutcome(data)


def _small_batches(project: Project) -> Project:
    return Project(project.root, env={**ENV, "FLUVIAL_BATCH__BATCH_ROWS": "37"})


@pytest.mark.parametrize(
    ("materialized", "extra"),
    [("table", ""), ("incremental", "incremental_strategy: merge\nunique_key: event_id")],
)
def test_streamed_and_in_memory_builds_write_the_same_table(
    bproject: Project,
    lake: Lake,
    add_events: Add,
    write_model: Write,
    materialized: str,
    extra: str,
) -> None:
    project = _small_batches(bproject)
    write_model("refined/a.sql", MODEL.format(materialized=materialized, extra=extra))
    write_model("refined/b.sql", MODEL.format(materialized=materialized, extra=extra))
    raw = events(0, 500, days=5)
    add_events(raw)
    before = len(lake.table("raw.events").snapshots())
    assert run(project, select="refined.a").ok  # no hook checks rows: streamed
    assert run(project, select="refined.b", hooks=_SeeAll()).ok  # in memory
    with open_lake(project) as fresh:
        streamed, in_memory = read(fresh, "refined.a"), read(fresh, "refined.b")
        table = fresh.table("refined.a")
        # 500 * 2/3 rows in batches of 37: several snapshots, but one commit of them all
        assert len(table.snapshots()) >= 9
        assert len(table.metadata.metadata_log) <= 3  # created, spec set, the one commit
    assert streamed.schema == in_memory.schema
    want = reference(
        'SELECT event_id, user_id, upper(kind) AS kind, amount * 2 AS amount, "at", '
        'row_number() OVER (PARTITION BY user_id ORDER BY "at", event_id) AS nth '
        "FROM raw WHERE kind <> 'buy'",
        raw=raw,
    )
    assert rows(streamed, "event_id") == rows(in_memory, "event_id") == rows(want, "event_id")
    assert len(lake.table("raw.events").snapshots()) == before
    spill = project.data_dir / "tmp" / "duckdb"
    assert not list(spill.glob("*.parquet"))
    # a rebuild replaces every row, still in one commit
    assert run(project, select="refined.a", full_refresh=True).ok
    with open_lake(project) as fresh:
        assert fresh.table("refined.a").scan().count() == want.num_rows


def test_streamed_merge_model_with_repeated_keys_fails_and_writes_nothing(
    bproject: Project, lake: Lake, add_events: Add, write_model: Write
) -> None:
    write_model(
        "refined/dup.sql",
        "/*---\nmaterialized: incremental\nincremental_strategy: merge\nunique_key: user_id\n"
        "---*/\nSELECT user_id, amount FROM raw.events",
    )
    add_events(events(0, 20))
    result = run(bproject)
    assert "13 row(s) repeat a unique_key (user_id)" in (result.model("refined.dup").error or "")
    assert not lake.exists("refined.dup")
    assert not list((bproject.data_dir / "tmp" / "duckdb").glob("*.parquet"))


def test_memory_limit_reaches_duckdb_and_a_bad_one_is_one_line(
    bproject: Project, lake: Lake, add_events: Add, write_model: Write
) -> None:
    write_model("refined/a.sql", "SELECT event_id FROM raw.events")
    add_events(events(0, 10))
    bad = Project(bproject.root, env={**ENV, "FLUVIAL_BATCH__MEMORY_LIMIT": "lots"})
    error = run(bad).model("refined.a").error or ""
    assert error.startswith("[batch] memory_limit 'lots'") and "\n" not in error
    good = Project(bproject.root, env={**ENV, "FLUVIAL_BATCH__MEMORY_LIMIT": "300MB"})
    assert run(good).ok
