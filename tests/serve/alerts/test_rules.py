"""Rules: what the rules file and the API accept, and what they refuse (and why)."""

from __future__ import annotations

from typing import Any

import pytest

from fluvial.errors import ConfigError, NotFoundError, UsageError
from fluvial.project import Project
from fluvial.serve.alerts import RuleCatalog, load_rules_file, open_alert_store, validate_rule

from .conftest import write_rules


def rule(**fields: Any) -> dict[str, Any]:
    return {"name": "r", "kind": "threshold", "metric": "late_rows", "threshold": 1, **fields}


def test_durations_are_seconds_or_flink_durations() -> None:
    r = validate_rule(rule(**{"for": "2 min", "cooldown": 90, "window": "500 ms"}))
    assert (r.for_seconds, r.cooldown_seconds, r.window_seconds) == (120.0, 90.0, 0.5)
    assert r.to_doc()["for"] == 120.0  # written back under the file's names


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"threshold": None}, "needs a 'threshold'"),
        ({"table": "t"}, "one of a 'metric', a store 'table' or a model's 'freshness'"),
        ({"metric": "lag_secs"}, "did you mean 'lag_seconds'"),
        ({"kind": "change"}, "needs a 'window'"),
        ({"kind": "absence", "threshold": None}, "needs a 'window'"),
        ({"for": "soon"}, "expected seconds or a duration"),
        ({"op": "=>"}, "op"),
        ({"name": "has space"}, "rule name"),
        ({"channels": [{"type": "webhook"}]}, "needs an http(s) url"),
        ({"channels": [{"type": "email"}]}, "needs 'to'"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_rules_say_why(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(UsageError, match="invalid alert rule") as info:
        validate_rule(rule(**fields))
    assert words in str(info.value)


def test_store_rules_need_a_column_unless_counting() -> None:
    with pytest.raises(UsageError, match="needs a 'column'"):
        validate_rule(rule(metric=None, table="t"))
    assert validate_rule(rule(metric=None, table="t", agg="count")).aggregate == "count"


def test_rules_file(tmp_path: Any) -> None:
    project = Project.init(tmp_path / "p")
    path = write_rules(
        project,
        """
        [[rule]]
        name = "a"
        kind = "absence"
        metric = "rows_in"
        window = "10 min"

        [[rule]]
        name = "a"
        kind = "threshold"
        metric = "late_rows"
        threshold = 3
        """,
    )
    with pytest.raises(ConfigError, match="two rules are named 'a'"):
        load_rules_file(path)
    path.write_text("[[rule]]\nname = 'b'\nkind = 'threshold'\nmetric = 'late_rows'\n")
    with pytest.raises(ConfigError, match=r"alerts.toml: rule 'b': .*needs a 'threshold'"):
        load_rules_file(path)
    path.write_text("[rules]\n")
    with pytest.raises(ConfigError, match="expected \\[\\[rule\\]\\] tables"):
        load_rules_file(path)
    assert load_rules_file(tmp_path / "none.toml") == []


def test_catalog_file_rules_are_read_only(tmp_path: Any) -> None:
    project = Project.init(tmp_path / "p")
    write_rules(
        project, '[[rule]]\nname = "f"\nkind = "threshold"\nmetric = "rows_in"\nthreshold = 1\n'
    )
    catalog = RuleCatalog(project, open_alert_store(project))
    catalog.create(rule(name="api1"))
    assert [(e.rule.name, e.origin) for e in catalog.entries()] == [("api1", "api"), ("f", "file")]
    with pytest.raises(UsageError, match="already exists"):
        catalog.create(rule(name="f"))
    with pytest.raises(UsageError, match="edit the file"):
        catalog.update("f", rule(name="f"))
    with pytest.raises(UsageError, match="edit the file"):
        catalog.delete("f")
    with pytest.raises(NotFoundError, match="did you mean 'api1'"):
        catalog.get("api2")
    updated = catalog.update("api1", {**rule(), "name": "api1", "threshold": 9})
    assert catalog.get("api1").rule.threshold == 9 == updated.threshold
    catalog.delete("api1")
    assert [e.rule.name for e in catalog.entries()] == ["f"]
