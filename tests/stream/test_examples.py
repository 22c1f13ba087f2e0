"""The example pipelines shipped with Fluvial plan (and so stay valid Flink SQL for us)."""

from __future__ import annotations

import pytest

from fluvial.examples import example_pipelines
from fluvial.stream.job import plan_text
from fluvial.stream.plan.explain import explain

PIPELINES = example_pipelines("clickstream")


def test_there_are_examples() -> None:
    assert {"page_views_per_minute.sql", "active_users_hop.sql", "sessions.sql"} <= set(PIPELINES)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_example_plans(name: str) -> None:
    job = plan_text(PIPELINES[name], source=name)
    assert job.pipelines
    assert "WindowAggregate" in explain(job) or "Calc" in explain(job)


def test_the_live_dashboards_default_tables_are_written_by_the_example() -> None:
    """Every table the live page shows by default is a store table an example pipeline
    upserts, so ``make demo`` fills the whole dashboard."""
    from fluvial.config import ApiSettings
    from fluvial.serve.api.live import live_table_names

    store_tables = {
        p.sink.table.options["table"]
        for name, text in PIPELINES.items()
        for p in plan_text(text, source=name).pipelines
        if p.sink.table.options.get("connector") == "store"
    }
    defaults = live_table_names(ApiSettings().live_tables)
    assert set(defaults) == store_tables
    assert {"active_users", "funnel_per_minute", "revenue_per_minute"} <= set(defaults)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_example_event_time_is_the_skew_corrected_time(name: str) -> None:
    """Every example pipeline's watermark is on ``derived_time``, never the device clock."""
    job = plan_text(PIPELINES[name], source=name)
    for pipeline in job.pipelines:
        watermark = pipeline.scan.table.watermark
        assert watermark is not None and watermark.column == "derived_time", watermark
