"""A real project for the API: a stream job's store table and status, lake tables, a batch
run with lineage, quality runs — each written by the component that owns it."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

with warnings.catch_warnings():  # Starlette's test client asks for httpx2; httpx works
    warnings.filterwarnings("ignore", message="Using `httpx` with")
    from fastapi.testclient import TestClient

from fluvial.project import Project

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PAGES = ["/", "/shop", "/cart", "/checkout"]

PIPELINE = """
SET 'execution.checkpointing.interval' = '1 h';
CREATE TABLE clicks (
  user_id STRING,
  url STRING,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');
CREATE TABLE page_views_per_minute (
  window_start TIMESTAMP(3),
  url STRING,
  views BIGINT,
  visitors BIGINT,
  PRIMARY KEY (window_start, url) NOT ENFORCED
) WITH ('connector' = 'store', 'table' = 'page_views_per_minute');
INSERT INTO page_views_per_minute
SELECT window_start, url, COUNT(*), COUNT(DISTINCT user_id)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, url;
"""


def clicks(n: int = 600, seed: int = 7) -> pa.Table:
    """*n* clicks over ten minutes from T0 (vectorized)."""
    rng = np.random.default_rng(seed)
    start = np.datetime64(T0.replace(tzinfo=None), "ms")
    offsets = np.sort(rng.integers(0, 600_000, n)).astype("timedelta64[ms]")
    return pa.table(
        {
            "user_id": pa.array([f"u{i}" for i in rng.integers(0, 25, n)]),
            "url": pa.array(np.array(PAGES)[rng.integers(0, len(PAGES), n)]),
            "ts": pa.array(start + offsets, pa.timestamp("ms")),
        }
    )


@dataclass
class World:
    """What the fixture wrote, for tests to compare the API against."""

    project: Project
    clicks: pa.Table
    lake_rows: pa.Table
    quality_run_ids: list[str]
    batch_run_id: str


def _write_clicks(path: Path, table: pa.Table) -> None:
    path.mkdir(parents=True)
    lines = [
        json.dumps({"user_id": r["user_id"], "url": r["url"], "ts": r["ts"].isoformat(sep=" ")})
        for r in table.to_pylist()
    ]
    (path / "clicks.json").write_text("\n".join(lines) + "\n")


def build_world(root: Path) -> World:
    from fluvial.batch import Hooks, LineageHooks, run
    from fluvial.lake import append, open_lake
    from fluvial.quality import evaluate, parse_rules, record
    from fluvial.stream.job import plan_text
    from fluvial.stream.runtime import run_job

    project = Project.init(root / "shop")
    data = clicks()
    _write_clicks(root / "input", data)
    job = plan_text(PIPELINE.format(path=root / "input"), name="views")
    run_job(job, project=project, until_idle=True)

    lake_rows = data.append_column("amount", pa.array(np.arange(data.num_rows) % 50, pa.int64()))
    with open_lake(project) as lake:
        table = lake.create_table("raw.clicks", lake_rows.schema)
        append(table, lake_rows.slice(0, 400))
        append(lake.table("raw.clicks"), lake_rows.slice(400))
    models = project.root / "models" / "refined"
    models.mkdir(parents=True, exist_ok=True)
    (models / "clicks_by_url.sql").write_text(
        "SELECT url, count(*) AS clicks FROM raw.clicks GROUP BY url\n"
    )
    result = run(Project(project.root), hooks=Hooks(LineageHooks(project)))
    quality_ids = []
    for rows in (lake_rows.slice(0, 100), lake_rows):
        report = evaluate(project, "raw.clicks", rows, parse_rules([{"RowCount": {"min": 200}}]))
        record(project, report)
        quality_ids.append(report.run_id)
    return World(project, data, lake_rows, quality_ids, result.run_id)


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("api"))


def admin_key(project: Project) -> str:
    """An API key of the project's bootstrap admin (created if it has none)."""
    from fluvial.govern.principals import BOOTSTRAP_ADMIN, open_principals

    store = open_principals(project)
    made = store.bootstrap()
    return made[1] if made is not None else store.new_key(BOOTSTRAP_ADMIN, keep_old=True)


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    from fluvial.serve.api import create_api

    headers = {"Authorization": f"Bearer {admin_key(world.project)}"}
    with TestClient(create_api(Project(world.project.root)), headers=headers) as c:
        yield c


def minute(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


__all__ = ["PAGES", "T0", "World", "admin_key", "build_world", "clicks", "minute", "timedelta"]
