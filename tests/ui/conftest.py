"""A real project served by the platform app under uvicorn, and a headless Chromium.

The project holds what every page shows, each part written by the component that owns
it: store tables from a stream job (``'connector' = 'store'``), lake tables, a batch run
with lineage and warehouse marts, quality runs, and an alert rule evaluated once. The
platform app (collector at ``/v1``, API at ``/api``, UI at ``/``) runs under uvicorn on a
free loopback port; Playwright drives Debian's Chromium (``/usr/bin/chromium``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest

from conftest import IN_CI, need
from fluvial.project import Project

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
LIVE_TABLES = "page_views_per_minute,active_users,funnel_per_minute,revenue_per_minute,sessions"
NONE = "—"

PIPELINE = """
SET 'execution.checkpointing.interval' = '1 h';
CREATE TABLE clicks (
  user_id STRING, url STRING, event_type STRING, amount DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');
CREATE TABLE page_views_per_minute (
  window_start TIMESTAMP(3), url STRING, views BIGINT, visitors BIGINT,
  PRIMARY KEY (window_start, url) NOT ENFORCED
) WITH ('connector' = 'store', 'table' = 'page_views_per_minute');
CREATE TABLE active_users (
  window_start TIMESTAMP(3), window_end TIMESTAMP(3), active_users BIGINT, events BIGINT,
  PRIMARY KEY (window_start) NOT ENFORCED
) WITH ('connector' = 'store', 'table' = 'active_users');
CREATE TABLE funnel_per_minute (
  window_start TIMESTAMP(3), event_type STRING, events BIGINT, users BIGINT,
  PRIMARY KEY (window_start, event_type) NOT ENFORCED
) WITH ('connector' = 'store', 'table' = 'funnel_per_minute');
CREATE TABLE revenue_per_minute (
  window_start TIMESTAMP(3), orders BIGINT, revenue DOUBLE,
  PRIMARY KEY (window_start) NOT ENFORCED
) WITH ('connector' = 'store', 'table' = 'revenue_per_minute');
INSERT INTO page_views_per_minute
SELECT window_start, url, COUNT(*), COUNT(DISTINCT user_id)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
WHERE event_type = 'page_view'
GROUP BY window_start, window_end, url;
INSERT INTO active_users
SELECT window_start, window_end, COUNT(DISTINCT user_id), COUNT(*)
FROM TABLE(HOP(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '5' MINUTE))
GROUP BY window_start, window_end;
INSERT INTO funnel_per_minute
SELECT window_start, event_type, COUNT(*), COUNT(DISTINCT user_id)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, event_type;
INSERT INTO revenue_per_minute
SELECT window_start, COUNT(*), SUM(amount)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
WHERE event_type = 'purchase'
GROUP BY window_start, window_end;
"""

SESSIONS_MODEL = """
SELECT session_id, any_value(user_id) AS user_id, any_value(channel) AS channel,
  min(ts)::DATE AS session_date,
  count(*) FILTER (WHERE event_type = 'page_view') AS page_views,
  bool_or(event_type = 'product_view') AS viewed_product,
  bool_or(event_type = 'add_to_cart') AS added_to_cart,
  bool_or(event_type = 'checkout') AS reached_checkout,
  bool_or(event_type = 'purchase') AS purchased,
  sum(amount) FILTER (WHERE event_type = 'purchase') AS revenue
FROM raw.clicks GROUP BY session_id
"""

MARTS = {
    "daily_kpis": """
SELECT session_date AS date, count(DISTINCT user_id) AS visitors, count(*) AS sessions,
  sum(page_views)::BIGINT AS page_views, count(*) FILTER (WHERE purchased) AS orders,
  coalesce(sum(revenue), 0)::DECIMAL(18, 2) AS revenue,
  count(*) FILTER (WHERE purchased) / count(*) AS conversion_rate
FROM refined.sessions GROUP BY session_date
""",
    "funnel_daily": """
SELECT session_date AS date, channel, count(*) AS sessions,
  count(*) FILTER (WHERE viewed_product) AS viewed_product,
  count(*) FILTER (WHERE added_to_cart) AS added_to_cart,
  count(*) FILTER (WHERE reached_checkout) AS reached_checkout,
  count(*) FILTER (WHERE purchased) AS purchased
FROM refined.sessions GROUP BY session_date, channel
""",
    "retention_cohorts": """
WITH visits AS (
  SELECT DISTINCT user_id, date_trunc('week', session_date)::DATE AS week FROM refined.sessions),
cohorts AS (SELECT user_id, min(week) AS cohort_week FROM visits GROUP BY user_id),
sizes AS (SELECT cohort_week, count(*) AS cohort_users FROM cohorts GROUP BY cohort_week)
SELECT c.cohort_week, (date_diff('day', c.cohort_week, v.week) // 7)::INTEGER AS week_number,
  s.cohort_users, count(DISTINCT v.user_id) AS active_users,
  count(DISTINCT v.user_id) / s.cohort_users AS retention
FROM cohorts AS c JOIN visits AS v USING (user_id) JOIN sizes AS s USING (cohort_week)
GROUP BY c.cohort_week, v.week, s.cohort_users
""",
}

ALERTS = """
[[rule]]
name = "busy_shop"
kind = "threshold"
table = "active_users"
column = "active_users"
op = ">"
threshold = 10
description = "more than ten users in five minutes"
channels = [{type = "log"}]

[[rule]]
name = "quiet_shop"
kind = "threshold"
table = "active_users"
column = "active_users"
op = "<"
threshold = 5
channels = [{type = "log"}]
"""

STEPS = np.array(["page_view", "product_view", "add_to_cart", "checkout", "purchase"])


def shown(value: Any) -> str:
    """A value as the UI writes it (static/js/format.js: ``fmt``)."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer():
            return f"{int(value):,}"
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return str(value)


def when(iso: str | None) -> str:
    """An ISO time as the UI writes it in tables (format.js: ``when``)."""
    import re

    if not iso:
        return NONE
    text = re.sub(r"\.\d+", "", iso.replace("T", " "), count=1)
    return re.sub(r"(Z|[+-]00:00)$", "", text)


def _events(n: int, seed: int, start: str, span_ms: int, users: int) -> pa.Table:
    """*n* clicks from *start* over *span_ms* (vectorized): funnel steps, pages, amounts."""
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.integers(0, span_ms, n)).astype("timedelta64[ms]")
    kinds = STEPS[np.minimum(rng.geometric(0.45, n) - 1, len(STEPS) - 1)]
    # users arrive over the span (later ones join later): cohorts for the retention mart
    joined = 0.25 + 0.75 * offsets.astype("int64") / span_ms
    who = (rng.integers(0, users, n) * joined).astype(np.int64)
    days = offsets.astype("int64") // 86_400_000
    return pa.table(
        {
            "user_id": pa.array(np.char.add("u", who.astype(str))),
            "session_id": pa.array(
                np.char.add(np.char.add(np.char.add("s", who.astype(str)), "-"), days.astype(str))
            ),
            "channel": pa.array(np.array(["direct", "search", "social", "email"])[who % 4]),
            "url": pa.array(
                np.array(["/", "/shop", "/cart", "/p/1", "/p/2"])[rng.integers(0, 5, n)]
            ),
            "event_type": pa.array(kinds),
            "amount": pa.array(
                np.where(kinds == "purchase", np.round(rng.uniform(5, 200, n), 2), 0.0)
            ),
            "ts": pa.array(np.datetime64(start, "ms") + offsets, pa.timestamp("ms")),
        }
    )


@dataclass
class World:
    """What the fixture wrote, for the tests to compare the pages against."""

    project: Project
    clicks: pa.Table  # what the stream job read
    lake_rows: pa.Table  # raw.clicks in the lake
    write_key: str
    extra: dict[str, Any] = field(default_factory=dict)


def build_world(root: Path) -> World:
    from fluvial.batch import Hooks, LineageHooks, run
    from fluvial.collector.keys import KeyStore
    from fluvial.lake import append, open_lake
    from fluvial.quality import evaluate, parse_rules, record
    from fluvial.serve.alerts import AlertEvaluator
    from fluvial.stream.job import plan_text
    from fluvial.stream.runtime import run_job

    project = Project.init(root / "shop")
    toml = project.root / "fluvial.toml"
    text = toml.read_text()
    marker = "[api]\n"
    assert marker in text
    toml.write_text(text.replace(marker, f'{marker}live_tables = "{LIVE_TABLES}"\n', 1))
    project = Project(project.root)

    # the speed layer: a stream job writing four store tables
    clicks = _events(3000, 3, "2026-03-01T12:00:00", 15 * 60_000, 60).drop_columns(
        ["session_id", "channel"]
    )
    source = root / "input"
    source.mkdir()
    lines = [json.dumps({**r, "ts": r["ts"].isoformat(sep=" ")}) for r in clicks.to_pylist()]
    (source / "clicks.json").write_text("\n".join(lines) + "\n")
    run_job(plan_text(PIPELINE.format(path=source), name="live"), project=project, until_idle=True)

    # the lake, a batch run (lineage, marts) and quality runs
    lake_rows = _events(4000, 5, "2026-02-02T00:00:00", 21 * 86_400_000, 150)
    with open_lake(project) as lake:
        table = lake.create_table("raw.clicks", lake_rows.schema)
        append(table, lake_rows.slice(0, 2500))
        append(lake.table("raw.clicks"), lake_rows.slice(2500))
    models = project.root / "models"
    (models / "refined").mkdir(parents=True, exist_ok=True)
    (models / "marts").mkdir(parents=True, exist_ok=True)
    (models / "refined" / "sessions.sql").write_text(SESSIONS_MODEL)
    for name, sql in MARTS.items():
        (models / "marts" / f"{name}.sql").write_text(sql)
    batch = run(Project(project.root), hooks=Hooks(LineageHooks(project)))
    for rows, minimum in ((lake_rows.slice(0, 100), 200), (lake_rows, 200)):
        rules = parse_rules([{"RowCount": {"min": minimum}}, {"IsComplete": "user_id"}])
        record(project, evaluate(project, "raw.clicks", rows, rules))

    # alerts: two rules on the store, evaluated once (one fires, one stays OK)
    (project.root / project.settings.alerts.rules_file).write_text(ALERTS)
    evaluator = AlertEvaluator(project)
    try:
        evaluator.evaluate_once()
    finally:
        evaluator.close()

    _, secret = KeyStore.for_project(project).create("ui-tests")
    return World(project, clicks, lake_rows, secret, {"batch_run_id": batch.run_id})


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("ui"))


def admin_key(project: Project) -> str:
    """An API key of the project's bootstrap admin (created if it has none)."""
    from fluvial.govern.principals import BOOTSTRAP_ADMIN, open_principals

    store = open_principals(project)
    made = store.bootstrap()
    return made[1] if made is not None else store.new_key(BOOTSTRAP_ADMIN, keep_old=True)


class Served:
    """The platform app under uvicorn in a thread, and an HTTP client on it."""

    def __init__(self, project: Project) -> None:
        import uvicorn

        from fluvial.serve.app import create_platform_app

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_platform_app(project),
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.key = admin_key(project)
        self.client = httpx.Client(
            base_url=self.base, timeout=30, headers={"Authorization": f"Bearer {self.key}"}
        )

    def start(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the platform app did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()

    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.client.get(path, **kwargs)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="session")
def served(world: World) -> Iterator[Served]:
    app = Served(Project(world.project.root)).start()
    yield app
    app.stop()


def _ensure_chromium() -> None:
    """Under CI=true install Debian's chromium if it is missing (as root)."""
    if CHROMIUM.exists() or not IN_CI or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    if shutil.which("apt-get") is None:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], env=env, check=False, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
        env=env,
        check=False,
        capture_output=True,
    )


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    need(
        importlib.util.find_spec("playwright") is not None,
        "the playwright package is not installed (pip install playwright)",
    )
    _ensure_chromium()
    need(CHROMIUM.exists(), f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Tab:
    """A browser page on the served app that records console errors and page errors.

    ``allow`` lists (url part, status) pairs of failed requests the page expects and
    handles itself (Chromium logs each failed fetch as a console error).
    """

    def __init__(self, page: Any, served: Served) -> None:
        self.page = page
        self.served = served
        self.errors: list[str] = []
        self.failed: list[tuple[str, int]] = []
        self.allowed: list[tuple[str, int]] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("response", self._response)

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.errors.append(f"console: {msg.text} @ {msg.location.get('url', '')}")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.failed.append((response.url, response.status))

    def allow(self, url_part: str, status: int) -> None:
        self.allowed.append((url_part, status))

    def goto(self, route: str) -> Any:
        self.page.goto(f"{self.served.base}/#/{route}")
        return self.page

    def assert_clean(self) -> None:
        """No JavaScript errors, and no failed request the page did not expect."""
        unexpected = [
            (url, status)
            for url, status in self.failed
            if not any(part in url and status == code for part, code in self.allowed)
        ]
        assert not unexpected, f"unexpected failed requests: {unexpected}"
        resource = "Failed to load resource"
        errors = [e for e in self.errors if not (resource in e and self.failed)]
        assert not errors, "\n".join(errors)

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def tab(browser: Any, served: Served) -> Iterator[Tab]:
    context = browser.new_context(
        viewport={"width": 1360, "height": 900}, accept_downloads=True, color_scheme="light"
    )
    # signed in: the UI keeps the API key in localStorage
    context.add_init_script(f"localStorage.setItem('fluvial.apiKey', {json.dumps(served.key)})")
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield Tab(page, served)
    context.close()


__all__ = ["NONE", "Served", "Tab", "World", "build_world", "shown", "when"]
