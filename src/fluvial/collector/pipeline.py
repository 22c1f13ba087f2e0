"""From parsed requests to durable appends: admission, micro-batching, back-pressure.

Requests are admitted on the event loop, which counts the events in flight. Past
``max_pending_events`` a request is refused at once (:class:`~fluvial.errors.OverloadedError`,
HTTP 503 with ``Retry-After``) and nothing of it is stored: the client keeps its events and
retries, so nothing is dropped silently.

Admitted requests go onto a queue served by a few worker threads. A worker takes every
request waiting (up to ``max_batch_events`` events), joins the payloads of the same app_id
into **one** ``Ingestor.ingest`` call (one validation pass, one Arrow build, one durable
append per topic), then hands each request its own share of the result. Under light load
each request is its own batch and the workers overlap their appends (the log commits
concurrent appends with one fsync); under heavy load the queue grows and batches grow
with it, so the fixed cost per append is paid once per batch instead of once per request.

Every request's future resolves only after the append that holds its events is durable.
"""

from __future__ import annotations

import asyncio
import bisect
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fluvial.errors import OverloadedError

__all__ = ["IngestPipeline", "Ingests", "Receipt"]


class _Result(Protocol):
    accepted: int
    rejected: int
    errors: Sequence[Any]
    by_reason: dict[str, int]


class Ingests(Protocol):
    """What the pipeline needs of :class:`fluvial.events.ingest.Ingestor`."""

    def ingest(
        self,
        payloads: list[bytes],
        *,
        received_at_ms: int | None = None,
        app_id: str | None = None,
        source: str = "collector",
    ) -> Any: ...


@dataclass(frozen=True)
class Receipt:
    """One request's outcome: counts, and one error per rejected event (JSON-ready)."""

    accepted: int
    rejected: int
    errors: list[dict[str, Any]] = field(default_factory=list)
    by_reason: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": self.rejected, "errors": self.errors}


@dataclass
class _Job:
    payloads: list[bytes]
    app_id: str
    received_at_ms: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Receipt]


_STOP = None  # the queue's end-of-work marker, one per worker


def _error_dict(err: Any, index: int) -> dict[str, Any]:
    return {
        "index": index,
        "reason": err.reason,
        "error": err.error,
        "path": err.path,
        "event_id": err.event_id,
    }


def _split(result: _Result, sizes: list[int]) -> list[Receipt]:
    """Cut one combined result into per-request receipts (errors re-indexed per request)."""
    starts = [0]
    for n in sizes[:-1]:
        starts.append(starts[-1] + n)
    errors: list[list[dict[str, Any]]] = [[] for _ in sizes]
    reasons: list[dict[str, int]] = [{} for _ in sizes]
    # One step per *rejected* event: the response must list each of them anyway.
    for err in result.errors:
        j = bisect.bisect_right(starts, err.index) - 1
        errors[j].append(_error_dict(err, err.index - starts[j]))
        reasons[j][err.reason] = reasons[j].get(err.reason, 0) + 1
    return [
        Receipt(accepted=n - len(errs), rejected=len(errs), errors=errs, by_reason=why)
        for n, errs, why in zip(sizes, errors, reasons, strict=True)
    ]


def _settle(future: asyncio.Future[Receipt], value: Receipt | BaseException) -> None:
    if future.done():  # cannot happen behind asyncio.shield, but never raise in a callback
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


class IngestPipeline:
    """Admits requests, coalesces them into appends on worker threads, resolves futures.

    Use ``start()`` / ``close()`` (or ``with``); ``close`` finishes every admitted request.
    """

    def __init__(
        self,
        ingestor: Ingests,
        *,
        max_pending_events: int,
        workers: int = 4,
        max_batch_events: int = 20_000,
        retry_after: float = 1.0,
        on_append: Callable[[float, int], None] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, found {workers}")
        self.ingestor = ingestor
        self.max_pending_events = max_pending_events
        self.max_batch_events = max_batch_events
        self.retry_after = retry_after
        self.workers = workers
        self._on_append = on_append
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._pending = 0
        self._lock = threading.Lock()
        self._closed = False

    @property
    def pending(self) -> int:
        """Events admitted and not yet durable."""
        return self._pending

    def start(self) -> IngestPipeline:
        if self._threads:
            return self
        self._closed = False
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name=f"fluvial-ingest-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop taking requests, finish the admitted ones, and stop the workers."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    def __enter__(self) -> IngestPipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the event loop side ------------------------------------------------------------

    def admit(self, events: int) -> None:
        """Reserve room for *events*, or raise :class:`OverloadedError` (nothing is queued)."""
        with self._lock:
            # A lone request always fits, so a limit below one request's size slows the
            # collector down to one request at a time instead of refusing it forever.
            if self._closed or (self._pending and self._pending + events > self.max_pending_events):
                raise OverloadedError(
                    f"collector overloaded: {self._pending} events pending, limit "
                    f"{self.max_pending_events} (collector.max_pending_events); retry later"
                    if not self._closed
                    else "collector is shutting down; retry later",
                    retry_after=self.retry_after,
                )
            self._pending += events

    def release(self, events: int) -> None:
        with self._lock:
            self._pending -= events

    async def submit(self, payloads: list[bytes], *, app_id: str, received_at_ms: int) -> Receipt:
        """Validate and durably append *payloads*; raises OverloadedError when saturated."""
        n = len(payloads)
        self.admit(n)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Receipt] = loop.create_future()
        # released when the append is done, not when the request is: if the client goes
        # away, its events are still being appended and still count as pending
        future.add_done_callback(lambda _: self.release(n))
        self._queue.put(_Job(payloads, app_id, received_at_ms, loop, future))
        return await asyncio.shield(future)

    # -- the worker side ----------------------------------------------------------------

    def _take(self, first: _Job) -> tuple[list[_Job], bool]:
        """*first* plus whatever else is queued, up to max_batch_events; and whether to stop."""
        jobs = [first]
        total = len(first.payloads)
        while total < self.max_batch_events:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return jobs, True
            jobs.append(job)
            total += len(job.payloads)
        return jobs, False

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            jobs, stop = self._take(first)
            by_app: dict[str, list[_Job]] = {}
            for job in jobs:
                by_app.setdefault(job.app_id, []).append(job)
            for app_id, group in by_app.items():
                self._append(app_id, group)
            if stop:
                return

    def _append(self, app_id: str, jobs: list[_Job]) -> None:
        payloads = jobs[0].payloads if len(jobs) == 1 else [p for j in jobs for p in j.payloads]
        started = time.perf_counter()
        outcomes: Sequence[Receipt | BaseException]
        try:
            # received_at is the earliest receive time in the batch: batches are formed
            # within milliseconds, well under the clock skew derived_time corrects for.
            result = self.ingestor.ingest(
                payloads,
                received_at_ms=min(j.received_at_ms for j in jobs),
                app_id=app_id,
                source="collector",
            )
            outcomes = _split(result, [len(j.payloads) for j in jobs])
        except BaseException as exc:  # the requests fail; the worker lives on
            outcomes = [exc] * len(jobs)
        if self._on_append is not None:
            self._on_append(time.perf_counter() - started, len(payloads))
        for job, outcome in zip(jobs, outcomes, strict=True):
            try:
                job.loop.call_soon_threadsafe(_settle, job.future, outcome)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                self.release(len(job.payloads))
