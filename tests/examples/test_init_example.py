"""``fluvial init --example clickstream`` / ``Project.init(root, example=…)``."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest

from fluvial.batch import load_models
from fluvial.cli import main
from fluvial.errors import NotFoundError
from fluvial.project import Project
from fluvial.quality import load_rules


def _packaged(folder: str) -> set[str]:
    root = Path(str(files("fluvial.examples") / "clickstream" / folder))
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_init_copies_the_examples_folders(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "shop", example="clickstream")
    for folder in ("pipelines", "models", "quality"):
        copied = {
            p.relative_to(project.root / folder).as_posix()
            for p in (project.root / folder).rglob("*")
            if p.is_file()
        }
        assert copied == _packaged(folder) and copied, folder
    # the Lambda metric of metrics.toml: its speed pipeline and batch model are there
    from fluvial.serve.lambda_view import load_metrics

    (metric,) = load_metrics(project).values()
    assert (project.root / "pipelines" / f"{metric.pipeline}.sql").is_file()
    models = load_models(project, existing={"raw.events", "raw.product_catalog"})
    assert {"refined.events", "curated.dim_users", "marts.daily_kpis"} <= set(models)
    assert metric.batch_table in models
    # the rules beside a model and those for tables that are no model are both found
    assert load_rules(project, "refined.events")
    assert load_rules(project, "raw.events")


def test_init_keeps_existing_files_and_refuses_unknown_examples(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    (root / "models" / "refined").mkdir(parents=True)
    mine = root / "models" / "refined" / "events.sql"
    mine.write_text("SELECT 1 AS x FROM raw.events\n")
    Project.init(root, example="clickstream")
    assert mine.read_text() == "SELECT 1 AS x FROM raw.events\n"
    assert (root / "models" / "refined" / "sessions.sql").exists()
    with pytest.raises(NotFoundError, match="did you mean 'clickstream'"):
        Project.init(tmp_path / "other", example="clikstream")
    assert not (tmp_path / "other").exists()


def test_cli_init_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "shop"), "--example", "clickstream"]) == 0
    assert (tmp_path / "shop" / "models" / "marts" / "funnel_daily.sql").exists()
    assert "clickstream" in capsys.readouterr().out
