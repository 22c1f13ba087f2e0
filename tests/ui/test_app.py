"""The UI app without a browser: the shell, its assets, its settings and the platform mount."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():  # Starlette's test client asks for httpx2; httpx works
    warnings.filterwarnings("ignore", message="Using `httpx` with")
    from starlette.testclient import TestClient

from fluvial.project import Project
from fluvial.serve.ui import CSP, PAGES, STATIC_DIR, create_ui

IMPORT = re.compile(r"""(?:from\s+|import\s*\(\s*)["'](\.{1,2}/[^"']+)["']""")


def _assets() -> list[Path]:
    return sorted(p for p in STATIC_DIR.rglob("*") if p.is_file())


def test_shell_and_config(project: Project) -> None:
    with TestClient(create_ui(project)) as client:
        shell = client.get("/")
        assert shell.status_code == 200
        assert shell.headers["content-type"].startswith("text/html")
        assert shell.headers["content-security-policy"] == CSP
        assert '<script type="module" src="/static/js/app.js">' in shell.text
        config = client.get("/ui/config.json").json()
    settings = project.settings
    assert config == {
        "project": settings.project.name,
        "events_topic": settings.log.events_topic,
        "failed_topic": settings.log.failed_topic,
        "pages": [{"id": i, "title": t} for i, t in PAGES],
    }


def test_every_asset_is_served_with_its_type(project: Project) -> None:
    types = {".js": "javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "html"}
    with TestClient(create_ui(project)) as client:
        for path in _assets():
            rel = path.relative_to(STATIC_DIR).as_posix()
            response = client.get(f"/static/{rel}")
            assert response.status_code == 200, rel
            assert response.content == path.read_bytes()
            assert types[path.suffix] in response.headers["content-type"], rel
        assert client.get("/static/js/nothing.js").status_code == 404


def test_module_imports_resolve_and_every_page_has_a_module() -> None:
    modules = {p for p in _assets() if p.suffix == ".js"}
    for module in modules:
        for target in IMPORT.findall(module.read_text()):
            assert (module.parent / target).resolve() in modules, f"{module.name}: {target}"
    app = (STATIC_DIR / "js" / "app.js").read_text()
    for page, _ in PAGES:
        assert f'{page}: () => import("./pages/{page}.js")' in app
        assert (STATIC_DIR / "js" / "pages" / f"{page}.js").is_file()


def test_nothing_is_fetched_from_another_origin() -> None:
    # the only absolute URL allowed is the SVG namespace (a name, never fetched)
    url = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'`)]*")
    for path in _assets():
        found = {u for u in url.findall(path.read_text()) if u != "http://www.w3.org/2000/svg"}
        assert not found, f"{path.name} refers to {found}"
        assert "@import" not in path.read_text() and "@font-face" not in path.read_text()


@pytest.mark.parametrize("path", ["/", "/static/js/app.js", "/ui/config.json"])
def test_platform_app_mounts_the_ui_next_to_the_api(project: Project, path: str) -> None:
    from fluvial.serve.app import create_platform_app

    with TestClient(create_platform_app(project)) as client:
        assert client.get(path).status_code == 200
        assert client.get("/api/health").json()["status"] == "ok"
        assert client.get("/static/css/app.css").headers["content-type"].startswith("text/css")


def test_exports() -> None:
    import fluvial.serve.ui as ui

    assert ui.__all__ == sorted(ui.__all__)
    assert set(ui.__all__) == {"CSP", "PAGES", "STATIC_DIR", "create_ui"}
