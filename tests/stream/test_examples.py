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
