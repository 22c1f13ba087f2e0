"""The collector's ASGI app: ``POST /v1/events``, ``GET /healthz``, ``GET /metrics``.

``POST /v1/events`` takes one JSON event, a JSON array of events, or NDJSON
(``Content-Type: application/x-ndjson``), optionally ``Content-Encoding: gzip``, with a
write key in ``Authorization: Bearer KEY`` or ``X-Fluvial-Key: KEY``. It answers after
every event is durable, valid ones in the events topic and invalid ones in the failed
topic::

    200 {"accepted": 98, "rejected": 2, "errors": [{"index": 3, "reason": "schema_violation",
         "error": "...", "path": "$.event_time", "event_id": "..."}, ...]}

The status is 200 whenever the body was readable, even if some or all events were
rejected: each rejected event is stored with its reason, so retrying the request cannot
help and must not be invited (see ``docs/adr/0004-collector.md``). Otherwise, and with
nothing stored: 401 bad or missing key, 400 undecodable gzip, 413 body over
``collector.max_request_bytes`` (before or after decompression), 415 unknown
Content-Encoding, 503 + ``Retry-After`` when more than ``collector.max_pending_events``
events are waiting for the log; 415 also for a Content-Type that is neither JSON nor
NDJSON.

Browsers: a request with an ``Origin`` header is accepted only if its key lists that
origin (``fluvial keys create APP --origin https://shop.example``), else 403; the answer
then carries ``Access-Control-Allow-Origin`` for that origin. ``OPTIONS /v1/events``
answers a CORS preflight for an origin some active key allows (204), else 403. A key
with ``--rate-limit`` is a token bucket of events: a request that does not fit is refused
with 429 + ``Retry-After`` (413 when it exceeds the burst), nothing of it stored. Every
refusal is counted in ``fluvial_collector_refused_requests{reason}``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from fluvial.collector.body import BadBody, BodyDecoder, BodyTooLarge, UnsupportedEncoding
from fluvial.collector.keys import KeyStore, WriteKey
from fluvial.collector.limits import RateLimiter
from fluvial.collector.metrics import CONTENT_TYPE, CollectorMetrics
from fluvial.collector.pipeline import IngestPipeline, Ingests
from fluvial.errors import AuthenticationError, FluvialError, OverloadedError
from fluvial.events.envelope import EVENT_SCHEMA, FAILED_SCHEMA
from fluvial.log.base import EventLog
from fluvial.log.retention import RetentionRunner
from fluvial.project import Project

__all__ = ["EVENTS_PATH", "create_app"]

EVENTS_PATH = "/v1/events"
_JSON = "application/json"
_CORS_PREFLIGHT = {
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding, X-Fluvial-Key",
    "Access-Control-Max-Age": "600",
}


def _json(status: int, doc: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=_JSON, headers=headers)


def _key_from(request: Request) -> str | None:
    headers = request.headers
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("x-fluvial-key") or None


class _Collector:
    """The app's moving parts, wired at startup and closed at shutdown."""

    def __init__(
        self,
        project: Project,
        log: EventLog | None,
        ingestor: Ingests | None,
        keys: KeyStore | None,
        workers: int,
        max_batch_events: int,
    ) -> None:
        settings = project.settings.collector
        self.project = project
        self.max_request_bytes = settings.max_request_bytes
        self.keys = keys if keys is not None else KeyStore.for_project(project)
        self._log = log
        self._owns_log = log is None
        self._ingestor = ingestor
        self.metrics = CollectorMetrics(pending=lambda: self.pipeline_pending)
        self._workers = workers
        self._max_batch_events = max_batch_events
        self._max_pending = settings.max_pending_events
        self.limiter = RateLimiter()
        self.pipeline: IngestPipeline | None = None
        self.retention: RetentionRunner | None = None

    @property
    def pipeline_pending(self) -> int:
        return self.pipeline.pending if self.pipeline is not None else 0

    @property
    def log(self) -> EventLog:
        if self._log is None:
            self._log = self.project.open_log()
        return self._log

    def start(self) -> None:
        from fluvial.events.ingest import Ingestor

        log = self.log
        if self._ingestor is None:
            self._ingestor = Ingestor.for_project(self.project, log=log)
        # Take the topics' writer role now, not on the first concurrent requests: fail at
        # startup if another process writes them, and never race to open them.
        names = self.project.settings.log
        log.append(names.events_topic, EVENT_SCHEMA.empty_table())
        log.append(names.failed_topic, FAILED_SCHEMA.empty_table())
        self.metrics.watch_log(log)
        # this process writes the topics, so it is the one that trims them
        every = self.project.settings.log.retention_check_seconds
        self.retention = RetentionRunner(log, every_seconds=every).start()
        self.pipeline = IngestPipeline(
            self._ingestor,
            max_pending_events=self._max_pending,
            workers=self._workers,
            max_batch_events=self._max_batch_events,
            on_append=self.metrics.append,
        ).start()

    def close(self) -> None:
        if self.retention is not None:
            self.retention.stop()
        if self.pipeline is not None:
            self.pipeline.close()  # finishes every admitted request first
        if self._owns_log and self._log is not None:
            self._log.close()
            self._log = None

    # -- handlers -----------------------------------------------------------------------

    async def post_events(self, request: Request) -> Response:
        started = time.perf_counter()
        request.state.cors = {}
        response = await self._post_events(request)
        for name, value in request.state.cors.items():
            response.headers[name] = value
        self.metrics.request(EVENTS_PATH, response.status_code, time.perf_counter() - started)
        return response

    async def preflight(self, request: Request) -> Response:
        """A browser's CORS preflight: allowed for an origin some active key lists."""
        origin = request.headers.get("origin")
        if origin is None or not self.keys.origin_allowed(origin):
            self.metrics.refused(EVENTS_PATH, "origin")
            self.metrics.request(EVENTS_PATH, 403)
            return _json(403, {"error": f"origin {origin!r} is not allowed by any write key"})
        self.metrics.request(EVENTS_PATH, 204)
        headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin", **_CORS_PREFLIGHT}
        return Response(status_code=204, headers=headers)

    def _limit(self, key: WriteKey, events: int) -> Response | None:
        """The refusal of *events* more from *key* past its rate limit (None: within it)."""
        if key.rate_limit is None or key.burst is None:
            return None
        wait = self.limiter.take(key.key_id, events, rate=key.rate_limit, burst=key.burst)
        if not wait:
            return None
        if wait == float("inf"):
            self.metrics.refused(EVENTS_PATH, "burst", events)
            return _json(
                413,
                {
                    "error": f"a request of {events} events exceeds the burst of {key.burst} "
                    f"events of write key {key.prefix}...: send at most {key.burst} at once"
                },
            )
        self.metrics.refused(EVENTS_PATH, "rate_limit", events)
        retry = str(max(1, math.ceil(wait)))
        return _json(
            429,
            {
                "error": f"write key {key.prefix}... is limited to {key.rate_limit:g} events/s "
                f"(burst {key.burst}); retry in {retry} s"
            },
            {"Retry-After": retry},
        )

    async def _post_events(self, request: Request) -> Response:
        received_at_ms = time.time_ns() // 1_000_000
        try:
            key = self.keys.authenticate(_key_from(request))
        except AuthenticationError as exc:
            self.metrics.refused(EVENTS_PATH, "authentication")
            return _json(401, {"error": str(exc)}, {"WWW-Authenticate": "Bearer"})
        origin = request.headers.get("origin")
        if origin is not None:
            if not key.allows_origin(origin):
                self.metrics.refused(EVENTS_PATH, "origin")
                allowed = ", ".join(key.origins) or "none (server-side senders only)"
                return _json(
                    403,
                    {
                        "error": f"origin {origin!r} is not allowed for write key "
                        f"{key.prefix}... (allowed: {allowed})"
                    },
                )
            request.state.cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        try:
            body = await self._read_body(request)
        except BodyTooLarge as exc:
            return _json(413, {"error": str(exc)})
        except UnsupportedEncoding as exc:
            return _json(415, {"error": str(exc)})
        except BadBody as exc:
            return _json(400, {"error": str(exc)})
        except ClientDisconnect:
            return _json(400, {"error": "client disconnected before sending the whole body"})

        from fluvial.events.payload import split_payloads

        content_type = request.headers.get("content-type", _JSON)
        try:
            payloads = split_payloads(body, content_type)
        except FluvialError as exc:  # an unsupported content type
            return _json(415, {"error": str(exc)})
        if not payloads:
            return _json(200, {"accepted": 0, "rejected": 0, "errors": []})
        refused = self._limit(key, len(payloads))
        if refused is not None:
            return refused
        assert self.pipeline is not None, "the collector was not started (lifespan)"
        try:
            receipt = await self.pipeline.submit(
                payloads, app_id=key.app_id, received_at_ms=received_at_ms
            )
        except OverloadedError as exc:
            self.metrics.overloaded.inc(len(payloads))
            retry = str(max(1, round(exc.retry_after)))
            return _json(503, {"error": str(exc)}, {"Retry-After": retry})
        except FluvialError as exc:  # the log failed: the client should retry
            return _json(500, {"error": f"could not store the events: {exc}"})
        self.metrics.events(accepted=receipt.accepted, by_reason=receipt.by_reason)
        return _json(200, receipt.to_json())

    async def _read_body(self, request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_request_bytes:
            raise BodyTooLarge(
                f"request body of {length} bytes is larger than {self.max_request_bytes} "
                "bytes (limit: collector.max_request_bytes)"
            )
        decoder = BodyDecoder(request.headers.get("content-encoding"), limit=self.max_request_bytes)
        async for chunk in request.stream():
            if chunk:
                decoder.feed(chunk)
        return decoder.finish()

    async def healthz(self, request: Request) -> Response:
        try:
            topics = await anyio.to_thread.run_sync(self.log.list_topics)
        except Exception as exc:  # any failure means "not healthy", reported as such
            self.metrics.request("/healthz", 503)
            return _json(503, {"status": "error", "error": f"event log unreachable: {exc}"})
        self.metrics.request("/healthz", 200)
        return _json(
            200,
            {
                "status": "ok",
                "log": {"backend": self.project.settings.log.backend, "topics": len(topics)},
                "pending_events": self.pipeline_pending,
            },
        )

    async def metrics_page(self, request: Request) -> Response:
        self.metrics.request("/metrics", 200)
        text = await anyio.to_thread.run_sync(self.metrics.render)
        return Response(text, media_type=CONTENT_TYPE)


def create_app(
    project: Project,
    *,
    log: EventLog | None = None,
    ingestor: Ingests | None = None,
    keys: KeyStore | None = None,
    workers: int = 4,
    max_batch_events: int = 20_000,
) -> Starlette:
    """The collector app for *project*; its lifespan starts and stops the ingest workers.

    *log* defaults to ``project.open_log()`` (opened at startup, closed at shutdown; a
    given log is left open), *ingestor* to ``Ingestor.for_project(project, log=log)``,
    *keys* to the project's ``keys.json``. *workers* threads append concurrently, each
    coalescing up to *max_batch_events* queued events into one append (1 disables it).
    """
    collector = _Collector(project, log, ingestor, keys, workers, max_batch_events)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(collector.start)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(collector.close)

    app = Starlette(
        routes=[
            Route(EVENTS_PATH, collector.post_events, methods=["POST"]),
            Route(EVENTS_PATH, collector.preflight, methods=["OPTIONS"]),
            Route("/healthz", collector.healthz, methods=["GET"]),
            Route("/metrics", collector.metrics_page, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.collector = collector
    return app
