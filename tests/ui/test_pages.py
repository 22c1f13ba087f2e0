"""Every page in Chromium: what it shows equals what the API answers, no JavaScript
errors, and a screenshot in docs/screenshots/."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fluvial.project import Project

from .conftest import NONE, Served, Tab, World, shown, when

pytestmark = pytest.mark.timeout(120)

STEPS = ["page_view", "product_view", "add_to_cart", "checkout", "purchase"]


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(locator)


def grid_rows(page: Any, testid: str) -> list[list[str]]:
    rows = page.locator(f"table[data-grid='{testid}'] tbody tr")
    rows.first.wait_for()
    return rows.evaluate_all("rs => rs.map(r => [...r.cells].map(c => c.innerText.trim()))")


def grid_column(page: Any, testid: str, column: str) -> list[str]:
    cells = page.locator(f"table[data-grid='{testid}'] tbody td[data-col='{column}']")
    cells.first.wait_for()
    return [t.strip() for t in cells.all_inner_texts()]


def grid_keys(page: Any, testid: str) -> list[str]:
    rows = page.locator(f"table[data-grid='{testid}'] tbody tr")
    rows.first.wait_for()
    return rows.evaluate_all("rs => rs.map(r => r.dataset.key)")


def bars(page: Any, panel: str) -> list[tuple[str, str]]:
    marks = page.locator(f"#{panel} svg .bar")
    marks.first.wait_for()
    return [
        (m["label"], m["value"])
        for m in marks.evaluate_all(
            "gs => gs.map(g => ({label: g.dataset.label, value: g.dataset.value}))"
        )
    ]


def kpi(page: Any, name: str) -> Any:
    return page.locator(f"[data-kpi='{name}']")


def percent(x: float | None) -> str:
    """format.js ``percent``: a share to one decimal of a percent."""
    if x is None:
        return NONE
    return shown(math.floor(x * 1000 + 0.5) / 10) + "%"


def column(result: dict[str, Any], name: str) -> int:
    return [c["name"] for c in result["columns"]].index(name)


# -- the live dashboard -------------------------------------------------------------------------


def _newest_minute(clicks: pa.Table) -> pa.Table:
    newest = pc.max(clicks["ts"]).as_py().replace(second=0, microsecond=0)
    return clicks.filter(pc.greater_equal(clicks["ts"], pa.scalar(newest, pa.timestamp("ms"))))


def test_live_dashboard_shows_the_api_numbers_and_follows_them(
    tab: Tab, served: Served, world: World
) -> None:
    page = tab.goto("live")
    expect(page.get_by_test_id("live-status")).to_contain_text("updated")
    expect(kpi(page, "active-users")).not_to_have_text(NONE)
    expect(kpi(page, "accepted-events")).not_to_have_text(NONE)
    live = served.get("/api/metrics/live")
    tables = {t["table"]: t for t in live["tables"]}
    assert set(tables) == {
        "page_views_per_minute",
        "active_users",
        "funnel_per_minute",
        "revenue_per_minute",
    }
    assert live["missing"] == ["sessions"]

    # active users: the newest hop window's distinct users, as the API and the data say
    active = tables["active_users"]
    value = active["rows"][0][column(active, "active_users")]
    last = _newest_minute(world.clicks)
    assert value == len(pc.unique(last["user_id"]))
    expect(kpi(page, "active-users")).to_have_text(shown(value))
    expect(kpi(page, "late-events")).to_have_text(shown(live["pipelines"]["late_rows"]))
    summary = live["pipelines"]
    expect(kpi(page, "pipelines-running")).to_have_text(
        f"{summary['running']} / {summary['pipelines']}"
    )

    # top pages and the funnel: the newest window, from the API's rows and from the data
    views = tables["page_views_per_minute"]
    w, u, v = (column(views, c) for c in ("window_start", "url", "views"))
    newest = max(r[w] for r in views["rows"])
    expected = sorted(
        ((r[u], r[v]) for r in views["rows"] if r[w] == newest), key=lambda x: (-x[1], x[0])
    )
    shown_bars = bars(page, "top-pages")
    assert shown_bars == [(url, str(n)) for url, n in expected][:10]
    page_views = last.filter(pc.equal(last["event_type"], "page_view"))
    assert dict(expected) == Counter(page_views["url"].to_pylist())

    funnel = tables["funnel_per_minute"]
    w, e, n = (column(funnel, c) for c in ("window_start", "event_type", "events"))
    newest = max(r[w] for r in funnel["rows"])
    steps = {r[e]: r[n] for r in funnel["rows"] if r[w] == newest}
    assert bars(page, "funnel") == [(s, str(steps[s])) for s in STEPS if s in steps]
    assert steps == Counter(last["event_type"].to_pylist())

    revenue = tables["revenue_per_minute"]
    r = column(revenue, "revenue")
    points = page.locator("#revenue svg circle").evaluate_all(
        "cs => cs.map(c => Number(c.dataset.value))"
    )
    assert points == pytest.approx([row[r] for row in reversed(revenue["rows"])])

    # per pipeline: state, watermark, rows, as /api/pipelines says
    pipelines = served.get("/api/pipelines")
    assert grid_keys(page, "pipelines") == [p["pipeline"] for p in pipelines]
    assert grid_column(page, "pipelines", "state") == [p["state"] for p in pipelines]
    assert grid_column(page, "pipelines", "watermark") == [when(p["watermark"]) for p in pipelines]
    assert grid_column(page, "pipelines", "rows_in") == [shown(p["rows_in"]) for p in pipelines]
    assert grid_column(page, "pipelines", "late_rows") == [shown(p["late_rows"]) for p in pipelines]
    tab.screenshot("live")

    # post events: accepted and failed counters move within seconds
    accepted = int(kpi(page, "accepted-events").inner_text().replace(",", ""))
    failed = int(kpi(page, "failed-events").inner_text().replace(",", ""))
    good = [
        {
            "event_id": f"00000000-0000-4000-8000-00000000000{i}",
            "event_type": "page_view",
            "event_time": "2026-03-01T12:20:00.000Z",
            "anonymous_id": f"anon-{i}",
            "page": {"url": "https://shop.example/", "referrer": None, "title": "Home"},
        }
        for i in range(5)
    ]
    bad = {**good[0], "event_id": "00000000-0000-4000-8000-0000000000ff"}
    del bad["event_time"]
    response = served.client.post(
        "/v1/events",
        content=b"\n".join(orjson.dumps(x) for x in [*good, bad]),
        headers={
            "Authorization": f"Bearer {world.write_key}",
            "Content-Type": "application/x-ndjson",
        },
    )
    assert response.json()["accepted"] == 5 and response.json()["rejected"] == 1
    expect(kpi(page, "accepted-events")).to_have_text(shown(accepted + 5), timeout=5000)
    expect(kpi(page, "failed-events")).to_have_text(shown(failed + 1), timeout=5000)

    # a stream result lands in the store: the dashboard shows it within seconds
    from datetime import datetime

    from fluvial.serve.store import open_store

    row = pa.table(
        {
            "window_start": pa.array([datetime(2026, 3, 1, 12, 30)], pa.timestamp("ms")),
            "window_end": pa.array([datetime(2026, 3, 1, 12, 35)], pa.timestamp("ms")),
            "active_users": pa.array([4242], pa.int64()),
            "events": pa.array([9999], pa.int64()),
        }
    )
    with open_store(Project(world.project.root)) as store:
        store.upsert("active_users", row, ["window_start"])
    expect(kpi(page, "active-users")).to_have_text("4,242", timeout=5000)
    tab.assert_clean()


# -- historical dashboards ----------------------------------------------------------------------

DAILY = "SELECT * FROM marts.daily_kpis WHERE date BETWEEN DATE '{a}' AND DATE '{b}' ORDER BY date"
RANGE = "SELECT min(date) AS first, max(date) AS last FROM marts.daily_kpis"
FUNNEL = (
    "SELECT channel, sum(sessions) AS sessions, sum(viewed_product) AS viewed_product, "
    "sum(added_to_cart) AS added_to_cart, sum(reached_checkout) AS reached_checkout, "
    "sum(purchased) AS purchased, sum(purchased) / sum(sessions) AS conversion_rate "
    "FROM marts.funnel_daily WHERE date BETWEEN DATE '{a}' AND DATE '{b}' "
    "GROUP BY channel ORDER BY sessions DESC, channel"
)


def _cells(result: dict[str, Any]) -> list[list[str]]:
    names = [c["name"] for c in result["columns"]]
    return [
        [percent(v) if n.endswith("rate") else shown(v) for n, v in zip(names, row, strict=True)]
        for row in result["rows"]
    ]


def test_history_shows_the_marts_or_says_they_are_missing(tab: Tab, served: Served) -> None:
    tab.allow("/api/sql", 400)  # a mart the API cannot read answers 400; the page says so
    page = tab.goto("history")
    answer = served.client.post("/api/sql", json={"sql": RANGE})
    if answer.status_code != 200:
        assert "does not exist" in answer.json()["message"]
        for panel, mart in (
            ("daily-kpis", "daily_kpis"),
            ("funnel-channel", "funnel_daily"),
            ("retention", "retention_cohorts"),
        ):
            expect(page.locator(f"#{panel} .empty")).to_contain_text(
                f"marts.{mart} is not built yet."
            )
    else:
        first, last = answer.json()["rows"][0]
        expect(page.locator("input[name=from]")).to_have_value(str(first))
        expect(page.locator("input[name=to]")).to_have_value(str(last))
        daily = served.client.post("/api/sql", json={"sql": DAILY.format(a=first, b=last)}).json()
        assert grid_rows(page, "daily-kpis") == _cells(daily)
        points = page.locator("#daily-kpis svg circle").count()
        assert points == len(daily["rows"])
        funnel = served.client.post("/api/sql", json={"sql": FUNNEL.format(a=first, b=last)})
        assert grid_rows(page, "funnel-channel") == _cells(funnel.json())
        cells = page.locator("#retention svg .cell").count()
        assert cells > 0
    tab.screenshot("history")
    tab.assert_clean()


# -- the SQL explorer ----------------------------------------------------------------------------

QUERY = (
    "SELECT event_type, count(*) AS n, round(sum(amount), 2) AS revenue "
    "FROM raw.clicks GROUP BY event_type ORDER BY n DESC"
)


def test_sql_explorer_runs_charts_and_exports(tab: Tab, served: Served, world: World) -> None:
    tab.allow("/api/sql", 400)  # the refused statement below
    page = tab.goto("sql")
    expect(page.locator(".side .table-list li")).to_have_count(2)
    assert page.locator(".side .table-list").inner_text().split() == [
        t["name"] for t in served.get("/api/lake/tables")
    ]
    page.get_by_label("SQL", exact=True).fill(QUERY)
    page.get_by_role("button", name="Run").click()
    result = served.client.post("/api/sql", json={"sql": QUERY, "limit": 1000}).json()
    assert grid_rows(page, "sql-result") == _cells(result)
    expect(page.get_by_test_id("sql-meta")).to_contain_text(f"{result['row_count']} rows")
    # an independent count over the rows written to the lake
    counts = Counter(world.lake_rows["event_type"].to_pylist())
    assert {r[0]: r[1] for r in result["rows"]} == counts
    # the chart: event_type on x, n on y (the first numeric column)
    assert bars(page, "sql-chart") == [(r[0], str(r[1])) for r in result["rows"]]
    page.locator("#sql-chart select[name=y]").select_option("revenue")
    expect(page.locator("#sql-chart svg[data-chart=bar]")).to_have_attribute(
        "aria-label", "revenue by event_type"
    )
    revenue = [(label, float(value)) for label, value in bars(page, "sql-chart")]
    assert revenue == [(r[0], pytest.approx(r[2])) for r in result["rows"]]
    tab.screenshot("sql")

    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    csv = served.client.post(
        "/api/sql", params={"format": "csv"}, json={"sql": QUERY, "limit": 1000}
    )
    assert download.value.suggested_filename == "result.csv"
    with open(download.value.path(), "rb") as fh:
        assert fh.read() == csv.content

    page.get_by_label("SQL", exact=True).fill("DROP TABLE raw.clicks")
    page.get_by_label("SQL", exact=True).press("Control+Enter")
    expect(page.locator("#sql-rows .error")).to_contain_text("UnsupportedSqlError")
    expect(page.locator("#sql-rows .error")).to_contain_text("found DROP")
    tab.assert_clean()


# -- catalog and lineage ------------------------------------------------------------------------


def test_catalog_lists_lake_and_store_tables(tab: Tab, served: Served) -> None:
    page = tab.goto("catalog")
    lake = served.get("/api/lake/tables")
    links = page.locator("#lake-tables .table-list a")
    expect(links).to_have_count(len(lake))
    assert links.all_inner_texts() == [t["name"] for t in lake]
    store = served.get("/api/store")
    assert grid_keys(page, "store-tables") == [t["name"] for t in store]
    assert grid_column(page, "store-tables", "rows") == [shown(t["rows"]) for t in store]
    tab.screenshot("catalog")

    page.get_by_role("link", name="raw.clicks").click()
    info = served.get("/api/lake/tables/raw.clicks")
    expect(page.locator("[data-facts='table-info'] dd[data-fact='Rows']")).to_have_text(
        shown(info["rows"])
    )
    expect(page.locator("[data-facts='table-info'] dd[data-fact='Current snapshot']")).to_have_text(
        str(info["current_snapshot_id"])  # exact: ids beyond 2^53 are kept as BigInt
    )
    assert grid_keys(page, "columns") == [c["name"] for c in info["columns"]]
    assert grid_column(page, "columns", "type") == [c["type"] for c in info["columns"]]
    history = served.get("/api/lake/tables/raw.clicks/history")
    assert grid_column(page, "snapshots", "snapshot_id") == [
        str(s["snapshot_id"]) for s in reversed(history)
    ]
    lineage = served.get("/api/lineage/raw.clicks")
    down = page.locator("[data-lineage='downstream'] li")
    expect(down).to_have_count(len(lineage["downstream"]))
    shown_down = down.evaluate_all("ls => ls.map(l => l.dataset.dataset)")
    assert sorted(shown_down) == sorted(lineage["downstream"])
    tab.assert_clean()


def test_lineage_of_a_model_upstream_and_downstream(tab: Tab, served: Served) -> None:
    page = tab.goto("catalog/refined.sessions")
    lineage = served.get("/api/lineage/refined.sessions")
    up = page.locator("[data-lineage='upstream'] li")
    expect(up).to_have_count(len(lineage["upstream"]))
    assert up.evaluate_all("ls => ls.map(l => l.dataset.dataset)") == lineage["upstream"]
    down = page.locator("[data-lineage='downstream'] li")
    expect(down).to_have_count(len(lineage["downstream"]))
    assert sorted(down.evaluate_all("ls => ls.map(l => l.dataset.dataset)")) == sorted(
        lineage["downstream"]
    )
    # an upstream lake table links to its own page
    page.locator("[data-lineage='upstream'] a", has_text="raw.clicks").click()
    expect(page.locator("h1")).to_have_text("raw.clicks")
    page.go_back()
    expect(page.locator("h1")).to_have_text("refined.sessions")
    expect(page.locator("[data-lineage='upstream'] li")).to_have_count(len(lineage["upstream"]))
    tab.screenshot("lineage")
    tab.assert_clean()


# -- quality, batch runs, alerts ----------------------------------------------------------------


def test_quality_runs(tab: Tab, served: Served) -> None:
    page = tab.goto("quality")
    runs = served.get("/api/quality/runs", params={"limit": 200})
    assert len(runs) == 2
    assert grid_keys(page, "quality-runs") == [r["run_id"] for r in runs]
    assert grid_column(page, "quality-runs", "passed") == [
        "passed" if r["passed"] else "failed" for r in runs
    ]
    assert grid_column(page, "quality-runs", "row_count") == [shown(r["row_count"]) for r in runs]
    assert grid_column(page, "quality-runs", "errors") == [shown(r["errors"]) for r in runs]
    assert sorted(r["row_count"] for r in runs) == [100, 4000]  # what the fixture evaluated
    tab.screenshot("quality")
    tab.assert_clean()


def test_batch_runs(tab: Tab, served: Served, world: World) -> None:
    page = tab.goto("batch")
    runs = served.get("/api/batch/runs")
    assert [r["run_id"] for r in runs] == [world.extra["batch_run_id"]]
    assert grid_keys(page, "batch-runs") == [r["run_id"] for r in runs]
    assert grid_column(page, "batch-runs", "status") == [r["status"] for r in runs]
    assert grid_column(page, "batch-runs", "models") == [shown(r["models"]) for r in runs]
    assert grid_column(page, "batch-runs", "started_at") == [when(r["started_at"]) for r in runs]
    tab.screenshot("batch")
    tab.assert_clean()


def test_alerts_rules_states_and_history(tab: Tab, served: Served) -> None:
    page = tab.goto("alerts")
    rules = served.get("/api/alerts/rules")
    assert grid_keys(page, "alert-rules") == [r["name"] for r in rules]
    assert grid_column(page, "alert-rules", "state") == [r["state"]["state"] for r in rules]
    assert grid_column(page, "alert-rules", "summary") == [r["summary"] for r in rules]
    states = Counter(s["state"] for s in served.get("/api/alerts/states"))
    assert states == {"FIRING": 1, "OK": 1}  # busy_shop fires, quiet_shop does not
    for state in ("FIRING", "PENDING", "RESOLVED", "OK"):
        expect(page.locator(f"[data-state='{state}'] strong")).to_have_text(
            str(states.get(state, 0))
        )
    history = served.get("/api/alerts/history")
    assert grid_keys(page, "alert-history") == [str(h["id"]) for h in history]
    assert grid_column(page, "alert-history", "to_state") == [h["to_state"] for h in history]
    tab.screenshot("alerts")
    tab.assert_clean()


def test_menu_and_unknown_routes(tab: Tab) -> None:
    tab.allow("/api/sql", 400)  # the history page while the API cannot read the marts
    page = tab.goto("live")
    for name in ("History", "SQL", "Catalog", "Quality", "Batch runs", "Alerts", "Live"):
        page.get_by_role("navigation").get_by_role("link", name=name, exact=True).click()
        current = page.locator("#nav a[aria-current='page']")
        expect(current).to_have_text(name)
        expect(page.locator("main h1")).to_be_visible()
    tab.goto("nowhere")
    expect(page.locator("main h1")).to_have_text("Not found")
    tab.assert_clean()
