"""Browser tests of the web UI (Playwright driving Chromium) and the UI app itself."""
