"""The live dashboard follows a Kappa switch: after ``fluvial stream replay`` the live
numbers are read from the version readers use now."""

from __future__ import annotations

from pathlib import Path

from fluvial.project import Project
from fluvial.serve.api import create_api
from fluvial.serve.store import open_store
from fluvial.stream.runtime import run_job
from fluvial.stream.versions import replay, resolve_job

from .conftest import PIPELINE, TestClient, _write_clicks, clicks

TABLE = "page_views_per_minute"


def _live(project: Project) -> dict:
    env = {"FLUVIAL_GOVERN__REQUIRE_AUTH": "false", "FLUVIAL_API__LIVE_TABLES": TABLE}
    with TestClient(create_api(Project(project.root, env=env))) as client:
        response = client.get("/api/metrics/live")
    assert response.status_code == 200, response.text
    return response.json()


def test_live_metrics_read_the_current_version(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "shop")
    _write_clicks(tmp_path / "input", clicks(300))
    file = project.root / "pipelines" / "views.sql"
    file.write_text(PIPELINE.format(path=tmp_path / "input"), encoding="utf-8")
    run_job(resolve_job(project, file), project=project, until_idle=True)
    before = _live(project)
    (table,) = before["tables"]
    assert table["table"] == TABLE and table["total_rows"] > 0

    result = replay(project, "views")
    assert result.version == 2
    with open_store(project) as store:
        version2 = store.scan(f"{TABLE}__v2", reverse=True, limit=20)
        store.drop(TABLE)  # version 1 is gone: only version 2 can answer
    after = _live(project)
    assert after["missing"] == []
    (table,) = after["tables"]
    assert table["table"] == TABLE  # the declared name, as the dashboard knows it
    assert table["total_rows"] == before["tables"][0]["total_rows"]
    assert len(table["rows"]) == version2.num_rows
    assert [r[2] for r in table["rows"]] == version2.column("views").to_pylist()
