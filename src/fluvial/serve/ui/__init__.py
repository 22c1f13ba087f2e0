"""The web UI (our QuickSight's screens): a single page app of hand-written ES modules.

:func:`create_ui` serves it as an ASGI app that the platform app mounts at ``/``
(:func:`fluvial.serve.app.create_platform_app`):

- ``GET /`` — the page shell (``static/index.html``); the pages are hash routes
  (``/#/live``, ``/#/history``, ``/#/sql``, ``/#/catalog``, ``/#/quality``, ``/#/batch``,
  ``/#/alerts``);
- ``GET /static/…`` — the modules, styles and icon, shipped as package data: nothing is
  built at run time and nothing is fetched from another origin (the shell's
  Content-Security-Policy allows this origin only);
- ``GET /ui/config.json`` — what the pages need to know of the project: its name and the
  event log's topic names (the live page reads the failed topic's size from ``/metrics``).

The pages read the HTTP API (``/api/…``, :mod:`fluvial.serve.api`); see ``docs/ui.md``.

>>> import tempfile
>>> from starlette.testclient import TestClient
>>> from fluvial.project import Project
>>> ui = create_ui(Project.init(tempfile.mkdtemp() + "/p"))
>>> TestClient(ui).get("/ui/config.json").json()["pages"][0]
{'id': 'live', 'title': 'Live'}
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = ["CSP", "PAGES", "STATIC_DIR", "create_ui"]

#: the folder of the UI's assets (package data)
STATIC_DIR = Path(__file__).resolve().parent / "static"

#: the pages, in menu order: hash route id and title
PAGES: tuple[tuple[str, str], ...] = (
    ("live", "Live"),
    ("history", "History"),
    ("sql", "SQL"),
    ("catalog", "Catalog"),
    ("quality", "Quality"),
    ("batch", "Batch runs"),
    ("alerts", "Alerts"),
)

#: the shell's Content-Security-Policy: this origin only, no inline script
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'; form-action 'self'"
)


def create_ui(project: Project) -> Starlette:
    """The web UI of *project* as an ASGI app: the shell at ``/``, assets under
    ``/static``, the pages' settings at ``/ui/config.json``."""
    settings = project.settings
    config = {
        "project": settings.project.name,
        "events_topic": settings.log.events_topic,
        "failed_topic": settings.log.failed_topic,
        "pages": [{"id": page, "title": title} for page, title in PAGES],
    }
    index = STATIC_DIR / "index.html"

    async def shell(request: Request) -> Response:
        return FileResponse(
            index,
            media_type="text/html; charset=utf-8",
            headers={
                "Content-Security-Policy": CSP,
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin",
            },
        )

    async def ui_config(request: Request) -> Response:
        return JSONResponse(config, headers={"Cache-Control": "no-cache"})

    return Starlette(
        routes=[
            Route("/", shell, methods=["GET", "HEAD"]),
            Route("/index.html", shell, methods=["GET", "HEAD"]),
            Route("/ui/config.json", ui_config, methods=["GET"]),
            Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        ]
    )
