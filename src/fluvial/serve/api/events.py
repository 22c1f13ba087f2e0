"""``GET /api/events``: Server-Sent Events with the live metrics and the pipelines' status.

Every ``[api] events_interval_seconds`` (1 s) the stream sends two events::

    event: metrics
    id: 7
    data: {"time": "...", "tables": [...], "missing": [...], "pipelines": {...}}

    event: pipelines
    id: 7
    data: [{"job": "...", "pipeline": "...", "state": "running", ...}]

A browser's ``EventSource`` reconnects by itself (``retry`` asks it to wait 3 s). The
numbers are read in a worker thread, so a slow store never blocks the event loop; the
stream ends when the client goes away.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from fluvial.serve.api.live import current_tables, live_metrics, live_table_names
from fluvial.serve.api.routes import Svc
from fluvial.serve.api.services import Services

__all__ = ["router", "sse"]

router = APIRouter(tags=["stream"])


def sse(event: str, data: str, event_id: int) -> bytes:
    """One Server-Sent Event (the data is one line of JSON).

    >>> sse("metrics", '{"a": 1}', 3)
    b'event: metrics\\nid: 3\\ndata: {"a": 1}\\n\\n'
    """
    return f"event: {event}\nid: {event_id}\ndata: {data}\n\n".encode()


def _snapshot(svc: Services) -> tuple[str, str]:
    api = svc.settings.api
    statuses = svc.pipelines()
    names = live_table_names(api.live_tables)
    physical = current_tables(svc.project, names)
    metrics = live_metrics(svc.store, names, api.live_rows, statuses, physical)
    pipelines = json.dumps([s.model_dump(mode="json") for s in statuses], separators=(",", ":"))
    return metrics.model_dump_json(), pipelines


async def _stream(request: Request, svc: Services, interval: float) -> AsyncIterator[bytes]:
    yield b"retry: 3000\n\n"
    n = 0
    while not await request.is_disconnected():
        n += 1
        metrics, pipelines = await anyio.to_thread.run_sync(_snapshot, svc)
        yield sse("metrics", metrics, n)
        yield sse("pipelines", pipelines, n)
        await anyio.sleep(interval)


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(
    request: Request,
    svc: Svc,
    interval: Annotated[
        float | None, Query(ge=0.1, le=60, description="seconds between pushes")
    ] = None,
) -> StreamingResponse:
    """Live metrics and pipeline status, pushed as Server-Sent Events every second."""
    every = svc.settings.api.events_interval_seconds if interval is None else interval
    return StreamingResponse(
        _stream(request, svc, every),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
