"""Signing in: without an API key the UI asks for one, keeps it, and sends it with every
request; a wrong key is refused and asked for again."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from .conftest import Served


def test_sql_page_asks_for_a_key_then_runs_governed_sql(browser: Any, served: Served) -> None:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(f"{served.base}/#/sql")
        page.get_by_label("SQL", exact=True).fill("SELECT count(*) AS n FROM raw.clicks")
        page.get_by_role("button", name="Run").click()
        expect(page.locator("#sql-rows .error")).to_contain_text("AuthenticationError")
        form = page.get_by_role("form", name="Sign in")
        form.get_by_label("API key").fill("fvk_wrong")
        form.get_by_role("button", name="Sign in").click()
        page.get_by_label("SQL", exact=True).fill("SELECT count(*) AS n FROM raw.clicks")
        page.get_by_role("button", name="Run").click()
        expect(page.get_by_label("That API key was refused; another one:")).to_be_visible()
        page.get_by_role("form", name="Sign in").locator("input").fill(served.key)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_label("SQL", exact=True).fill("SELECT count(*) AS n FROM raw.clicks")
        page.get_by_role("button", name="Run").click()
        expected = served.client.post(
            "/api/sql", json={"sql": "SELECT count(*) AS n FROM raw.clicks"}
        )
        n = expected.json()["rows"][0][0]
        expect(page.get_by_test_id("sql-meta")).to_contain_text("1 row ")
        expect(page.locator("table[data-grid='sql-result'] tbody")).to_contain_text(f"{n:,}")
        assert page.evaluate("localStorage.getItem('fluvial.apiKey')") == served.key
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_load_state()
        assert page.evaluate("localStorage.getItem('fluvial.apiKey')") is None
    finally:
        context.close()
