"""Model discovery, settings validation, dependencies, and DAG selection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fluvial.batch import Dag, load_models
from fluvial.batch.models import discover
from fluvial.errors import ConfigError, NotFoundError, SqlError
from fluvial.project import Project

Write = Callable[[str, str], Path]


def test_front_matter_sidecar_and_dependencies(bproject: Project, write_model: Write) -> None:
    write_model(
        "refined/clicks.sql",
        """
        /*---
        materialized: incremental
        incremental_strategy: merge
        unique_key: [event_id, user_id]
        partition_by: day(at)
        tags: [clickstream]
        freshness: {warn_after: 2h, error_after: 6h}
        ---*/
        WITH c AS (SELECT * FROM raw.events), d AS (SELECT * FROM c)
        SELECT * FROM d WHERE user_id IN (SELECT user_id FROM refined.users)
        """,
    )
    write_model("refined/users.sql", "SELECT DISTINCT user_id FROM raw.events")
    write_model("refined/users.yml", "description: Users.\nowner: analytics\n")
    models = {m.name: m for m in discover(bproject.root / "models")}
    clicks, users = models["refined.clicks"], models["refined.users"]
    assert clicks.depends_on == ("raw.events", "refined.users")
    assert clicks.config.unique_key == ("event_id", "user_id")
    assert str(clicks.config.partition_by) == "day(at)"
    assert clicks.config.freshness is not None
    assert (clicks.config.freshness.warn_after, clicks.config.freshness.error_after) == (
        7200.0,
        21600.0,
    )
    assert users.config.owner == "analytics" and users.config.materialized == "table"
    assert clicks.sql.startswith("WITH c AS")


@pytest.mark.parametrize(
    ("front", "message", "line"),
    [
        (
            "materialised: table",
            "unknown model setting 'materialised'; did you mean 'materialized'",
            2,
        ),
        ("materialized: tabel", "did you mean 'table'", 2),
        ("materialized: view", "a view is only for marts", 2),
        ("materialized: incremental\nincremental_strategy: merge", "needs a unique_key", 2),
        (
            "materialized: incremental\nincremental_strategy: insert_overwrite",
            "needs partition_by",
            3,
        ),
        ("partition_by: week(at)", "unknown transform 'week'", 2),
        ("freshness: {warn_after: soon}", "expected a duration", 2),
    ],
)
def test_invalid_settings_say_file_and_line(
    bproject: Project, write_model: Write, front: str, message: str, line: int
) -> None:
    path = write_model("refined/x.sql", f"/*---\n{front}\n---*/\nSELECT 1 AS a")
    with pytest.raises(ConfigError) as err:
        discover(bproject.root / "models")
    assert message in str(err.value)
    assert f"{path}:{line}:" in str(err.value)


def test_sql_errors_and_unknown_tables(bproject: Project, write_model: Write) -> None:
    path = write_model("refined/bad.sql", "/*---\nowner: me\n---*/\nSELECT *\nFROM WHERE (")
    with pytest.raises(SqlError) as err:
        discover(bproject.root / "models")
    assert str(err.value).startswith(f"{path}:5:")
    path.write_text("SELECT * FROM raw.event")
    with pytest.raises(NotFoundError, match=r"reads 'raw.event'.*did you mean 'raw.events'"):
        load_models(bproject, existing=["raw.events"])
    path.write_text("SELECT * FROM events")
    with pytest.raises(SqlError, match=r"name tables as zone\.table"):
        discover(bproject.root / "models")
    path.write_text("INSERT INTO t VALUES (1)")
    with pytest.raises(SqlError, match="one SELECT"):
        discover(bproject.root / "models")


def test_dag_order_selection_and_cycles() -> None:
    deps = {
        "refined.a": ["raw.events"],
        "refined.b": ["refined.a"],
        "curated.c": ["refined.b", "refined.a"],
        "marts.d": ["curated.c"],
        "marts.e": ["refined.a"],
    }
    dag = Dag(deps, {"marts.e": ["finance"]})
    order = dag.order()
    for node, parents in deps.items():
        for parent in parents:
            if parent in deps:
                assert order.index(parent) < order.index(node)
    assert dag.select("b") == ["refined.b"]
    assert dag.select("b+") == ["refined.b", "curated.c", "marts.d"]
    assert dag.select("+c") == ["refined.a", "refined.b", "curated.c"]
    assert sorted(dag.select("tag:finance, marts.d")) == ["marts.d", "marts.e"]
    with pytest.raises(NotFoundError, match=r"did you mean 'curated\.c'"):
        dag.select("curated.cc")
    with pytest.raises(ConfigError, match=r"cycle: (refined\.\w -> ){3}refined\.\w"):
        Dag({"refined.x": ["refined.z"], "refined.y": ["refined.x"], "refined.z": ["refined.y"]})


def test_cycle_in_project_is_refused(bproject: Project, write_model: Write) -> None:
    from fluvial.batch import run

    write_model("refined/x.sql", "SELECT * FROM refined.y")
    write_model("refined/y.sql", "SELECT * FROM refined.x")
    with pytest.raises(
        ConfigError,
        match=r"refined\.x -> refined\.y -> refined\.x|refined\.y -> refined\.x -> refined\.y",
    ):
        run(bproject)
