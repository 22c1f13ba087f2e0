"""``create_api(project)``: the FastAPI app serving ``/api/…``, its errors and metrics.

Every error is JSON ``{"error": <type>, "message": <text>, "status": <code>}`` — a
:class:`~fluvial.errors.FluvialError`'s message with the status :data:`STATUS` gives
its type (404 for NotFoundError, 400 for bad input and refused SQL, …); request bodies
that do not fit their model answer 422 with ``detail`` listing the fields.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from fluvial.errors import (
    AuthenticationError,
    ConfigError,
    FluvialError,
    MissingDependencyError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    SchemaError,
    SqlError,
    UsageError,
    ValidationError,
)
from fluvial.project import Project
from fluvial.serve.api import alerts, events, routes
from fluvial.serve.api.auth import authenticated
from fluvial.serve.api.models import ErrorBody
from fluvial.serve.api.services import Services

__all__ = ["PREFIX", "STATUS", "create_api", "status_of"]

PREFIX = "/api"

#: error type -> HTTP status; the first entry the error is an instance of wins
STATUS: tuple[tuple[type[FluvialError], int], ...] = (
    (NotFoundError, 404),
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (OverloadedError, 503),
    (UsageError, 400),
    (ValidationError, 400),
    (SchemaError, 400),
    (SqlError, 400),
    (MissingDependencyError, 501),
    (ConfigError, 500),
)

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "bad input or refused SQL"),
        (401, "no valid API key"),
        (403, "permission denied"),
        (404, "not found"),
        (500, "failure"),
    )
}


def status_of(exc: FluvialError) -> int:
    """The HTTP status for *exc* (500 for an error :data:`STATUS` does not list).

    >>> status_of(NotFoundError("x")), status_of(FluvialError("x"))
    (404, 500)
    """
    for typ, status in STATUS:
        if isinstance(exc, typ):
            return status
    return 500


def _error(status: int, error: str, message: str, **extra: Any) -> JSONResponse:
    body = ErrorBody(error=error, message=message, status=status, **extra)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status)


def _install_errors(app: FastAPI) -> None:
    async def fluvial_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FluvialError)
        response = _error(status_of(exc), type(exc).__name__, str(exc))
        if isinstance(exc, OverloadedError):
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return response

    async def invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        detail = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        where = "; ".join(f"{'.'.join(str(x) for x in d['loc'])}: {d['msg']}" for d in detail)
        return _error(422, "RequestValidationError", f"invalid request: {where}", detail=detail)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return _error(exc.status_code, "HTTPError", str(exc.detail))

    app.add_exception_handler(FluvialError, fluvial_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)


def create_api(project: Project) -> FastAPI:
    """The HTTP API of *project*: every route under ``/api``, OpenAPI at ``/api/docs``
    and ``/api/openapi.json``.

    ``app.state.services`` holds what the routes share (``.metrics.render()`` gives the
    API's Prometheus metrics); the stores it opens are closed at shutdown.
    """
    svc = Services(project)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            svc.close()

    app = FastAPI(
        title=f"Fluvial API — {project.settings.project.name}",
        description="Pipelines, live metrics, the operational store, the lake, lineage, "
        "quality, batch runs, SQL and alerts.",
        version="1",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
        openapi_url=f"{PREFIX}/openapi.json",
        lifespan=lifespan,
    )
    app.state.services = svc
    _install_errors(app)
    guarded = [Depends(authenticated)]  # an API key, as [govern] require_auth says
    app.include_router(routes.router, prefix=PREFIX, responses=_ERRORS, dependencies=guarded)
    app.include_router(events.router, prefix=PREFIX)
    app.include_router(alerts.router, prefix=PREFIX, responses=_ERRORS, dependencies=guarded)

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        if template.startswith("/") and not template.startswith(PREFIX + "/"):
            template = PREFIX + template  # routers keep paths relative to their prefix
        svc.metrics.requests.labels(template, str(response.status_code)).inc()
        svc.metrics.latency.labels(template).observe(time.perf_counter() - started)
        return response

    return app
