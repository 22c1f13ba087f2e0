"""The lineage graph from recorded events: traversal up and down, datasets and columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fluvial.errors import NotFoundError
from fluvial.lineage import build_graph, emit, load_graph, new_run_id, run_event
from fluvial.project import Project

T0 = datetime(2024, 5, 1, tzinfo=UTC)

# raw.orders ─┐
#             ├─ refined.orders ─┬─ curated.revenue ── marts.daily
# raw.users ──┘                  └─ curated.by_user
MODELS = [
    (
        "refined.orders",
        ["raw.orders", "raw.users"],
        "SELECT o.id, o.amount, u.country, o.day FROM raw.orders o "
        "JOIN raw.users u ON u.id = o.user_id",
    ),
    (
        "curated.revenue",
        ["refined.orders"],
        "SELECT day, country, sum(amount) AS revenue FROM refined.orders GROUP BY 1, 2",
    ),
    (
        "curated.by_user",
        ["refined.orders"],
        "SELECT id, amount * 2 AS double FROM refined.orders",
    ),
    (
        "marts.daily",
        ["curated.revenue"],
        "SELECT day, sum(revenue) AS total FROM curated.revenue GROUP BY day",
    ),
]


def _events(minutes: int = 0) -> list[dict]:
    out = []
    for i, (name, inputs, sql) in enumerate(MODELS):
        run = new_run_id()
        when = T0 + timedelta(minutes=minutes + i)
        out.append(run_event("START", name, run, inputs, [name], sql=sql, event_time=when))
        out.append(
            run_event(
                "COMPLETE",
                name,
                run,
                inputs,
                [name],
                sql=sql,
                event_time=when + timedelta(seconds=30),
            )
        )
    return out


def test_dataset_upstream_and_downstream() -> None:
    graph = build_graph(_events())
    assert graph.upstream_names("marts.daily") == [
        "curated.revenue",
        "refined.orders",
        "raw.orders",
        "raw.users",
    ]
    assert graph.downstream_names("raw.users") == [
        "refined.orders",
        "curated.by_user",
        "curated.revenue",
        "marts.daily",
    ]
    assert graph.upstream_names("raw.orders") == []
    assert graph.downstream_names("marts.daily") == []
    tree = graph.upstream("curated.revenue")
    (child,) = tree["upstream"]
    assert (child["dataset"], child["job"], child["state"]) == (
        "refined.orders",
        "curated.revenue",
        "COMPLETE",
    )
    assert {g["dataset"] for g in child["upstream"]} == {"raw.orders", "raw.users"}


def test_depth_limits_the_walk() -> None:
    graph = build_graph(_events())
    tree = graph.upstream("marts.daily", depth=1)
    assert [c["dataset"] for c in tree["upstream"]] == ["curated.revenue"]
    assert tree["upstream"][0]["upstream"] == []


def test_column_upstream_follows_columns_across_jobs() -> None:
    graph = build_graph(_events())
    tree = graph.column_upstream("marts.daily")
    cols = {c["field"]: c["upstream"] for c in tree["columns"]}
    assert set(cols) == {"day", "total"}
    (revenue,) = cols["total"]
    assert (revenue["dataset"], revenue["field"], revenue["transformations"]) == (
        "curated.revenue",
        "revenue",
        ["DIRECT/AGGREGATION"],
    )
    (amount,) = revenue["upstream"]
    assert (amount["dataset"], amount["field"]) == ("refined.orders", "amount")
    (raw,) = amount["upstream"]
    assert (raw["dataset"], raw["field"], raw["transformations"], raw["job"]) == (
        "raw.orders",
        "amount",
        ["DIRECT/IDENTITY"],
        "refined.orders",
    )


def test_column_downstream() -> None:
    graph = build_graph(_events())
    tree = graph.column_downstream("raw.orders")
    amount = next(c for c in tree["columns"] if c["field"] == "amount")

    def reach(nodes: list[dict]) -> set[str]:
        found = set()
        for n in nodes:
            found.add(f"{n['dataset']}.{n['field']}")
            found |= reach(n["downstream"])
        return found

    assert reach(amount["downstream"]) == {
        "refined.orders.amount",
        "curated.revenue.revenue",
        "curated.by_user.double",
        "marts.daily.total",
    }


def test_the_latest_event_of_a_job_wins() -> None:
    events = _events()
    changed = run_event(
        "COMPLETE",
        "curated.by_user",
        new_run_id(),
        ["raw.users"],
        ["curated.by_user"],
        sql="SELECT id, country AS double FROM raw.users",
        event_time=T0 + timedelta(hours=1),
    )
    graph = build_graph([*events, changed])
    assert graph.upstream_names("curated.by_user") == ["raw.users"]
    assert "curated.by_user" not in graph.downstream_names("refined.orders")
    # an older event arriving late does not win
    graph = build_graph([changed, *events])
    assert graph.upstream_names("curated.by_user") == ["raw.users"]


def test_cycles_end() -> None:
    a = run_event("COMPLETE", "a", new_run_id(), ["x.b"], ["x.a"])
    b = run_event("COMPLETE", "b", new_run_id(), ["x.a"], ["x.b"])
    graph = build_graph([a, b])
    tree = graph.upstream("x.a")
    assert tree["upstream"][0]["dataset"] == "x.b"
    assert tree["upstream"][0]["upstream"][0] == {
        **tree["upstream"][0]["upstream"][0],
        "dataset": "x.a",
        "cycle": True,
    }


def test_unknown_dataset_says_did_you_mean() -> None:
    graph = build_graph(_events())
    with pytest.raises(NotFoundError, match=r"did you mean 'curated\.revenue'"):
        graph.upstream("curated.revenu")
    with pytest.raises(NotFoundError, match="no run events yet"):
        build_graph([]).upstream("x")


def test_load_graph_reads_what_emit_recorded(project: Project) -> None:
    for event in _events():
        emit(project, event)
    graph = load_graph(project)
    assert graph.upstream_names("curated.revenue") == [
        "refined.orders",
        "raw.orders",
        "raw.users",
    ]
    assert len(graph.jobs) == len(MODELS)
