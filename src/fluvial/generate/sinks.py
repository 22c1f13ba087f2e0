"""Where generated clickstream lines go: an NDJSON file, a collector over HTTP, or the log.

Each sink takes :class:`~fluvial.generate.clickstream.EventBatch` objects in send order,
honours an optional rate (events per second, a token bucket), reports progress through a
callback and returns a :class:`Delivery` summary.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import orjson

from fluvial.errors import AuthenticationError, FluvialError, UsageError
from fluvial.generate.clickstream import EventBatch

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = ["Delivery", "Pacer", "append_to_log", "post_to_collector", "write_file"]

Progress = Callable[[int], None]
_MAX_503_RETRIES = 20
_KEPT_ERRORS = 20


@dataclass(frozen=True)
class Delivery:
    """What a sink did: lines sent, and (for the collector and the log) their outcome."""

    target: str
    sent: int
    accepted: int | None = None
    rejected: int | None = None
    seconds: float = 0.0
    by_reason: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "target": self.target,
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.rate, 1),
            "by_reason": self.by_reason,
            "errors": self.errors,
        }


class Pacer:
    """A token bucket: :meth:`take` blocks until *n* more events fit under *rate* per second.

    A rate of 0 never waits. The bucket holds up to one second of events, so short bursts
    (one batch) go out at once and the average stays at the rate.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate < 0:
            raise UsageError(f"rate must be 0 (as fast as possible) or more, found {rate}")
        self.rate = rate
        self._clock = clock
        self._tokens = float(rate)
        self._last = clock()

    def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        now = self._clock()
        self._tokens = min(max(self.rate, n), self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= n
        if self._tokens < 0:
            time.sleep(-self._tokens / self.rate)


def _slices(batches: Iterable[EventBatch], size: int) -> Iterator[tuple[EventBatch, int, int]]:
    for batch in batches:
        for start in range(0, len(batch), size):
            yield batch, start, min(start + size, len(batch))


def write_file(
    batches: Iterable[EventBatch],
    path: Path,
    *,
    rate: float = 0.0,
    progress: Progress | None = None,
) -> Delivery:
    """Write NDJSON to *path* (replacing it); with a rate, in small flushed slices."""
    pacer = Pacer(rate)
    began = time.perf_counter()
    sent = 0
    try:
        handle = open(path, "wb")  # noqa: SIM115 - closed in the finally below
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        if rate > 0:
            step = max(1, min(1000, int(rate // 10) or 1))
            for batch, a, b in _slices(batches, step):
                pacer.take(b - a)
                handle.write(batch.body(a, b))
                handle.flush()
                sent += b - a
                if progress:
                    progress(b - a)
        else:
            for batch in batches:
                handle.write(batch.data)
                sent += len(batch)
                if progress:
                    progress(len(batch))
    finally:
        handle.close()
    return Delivery(str(path), sent, seconds=time.perf_counter() - began)


def post_to_collector(
    batches: Iterable[EventBatch],
    url: str,
    key: str,
    *,
    batch_size: int = 100,
    concurrency: int = 4,
    rate: float = 0.0,
    timeout: float = 30.0,
    progress: Progress | None = None,
) -> Delivery:
    """POST NDJSON batches to ``{url}/v1/events`` with several connections in parallel.

    A 503 is retried after its ``Retry-After``; a 401 raises AuthenticationError; a
    connection failure raises FluvialError naming the URL.
    """
    if batch_size < 1 or concurrency < 1:
        raise UsageError(
            f"batch size and concurrency must be at least 1, found {batch_size} and {concurrency}"
        )
    endpoint = url.rstrip("/") + "/v1/events"
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/x-ndjson",
    }
    work: queue.Queue[bytes | None] = queue.Queue(maxsize=concurrency * 4)
    lock = threading.Lock()
    totals = {"accepted": 0, "rejected": 0}
    errors: list[str] = []
    failure: list[BaseException] = []
    stop = threading.Event()
    client = httpx.Client(
        timeout=timeout,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    )

    def post(body: bytes) -> None:
        for _attempt in range(_MAX_503_RETRIES):
            try:
                response = client.post(endpoint, content=body, headers=headers)
            except httpx.HTTPError as exc:
                raise FluvialError(f"cannot reach the collector at {endpoint}: {exc}") from exc
            if response.status_code == 503:
                time.sleep(_retry_after(response))
                continue
            if response.status_code == 401:
                raise AuthenticationError(
                    f"the collector at {endpoint} refused write key {key[:6]}…: {_detail(response)}"
                )
            lines = body.count(b"\n")
            if response.status_code >= 500:
                raise FluvialError(
                    f"the collector at {endpoint} failed with HTTP {response.status_code}: "
                    f"{_detail(response)}"
                )
            try:
                answer = response.json()
            except ValueError:
                answer = {}
            with lock:
                if response.is_success and isinstance(answer, dict):
                    totals["accepted"] += int(answer.get("accepted", 0))
                    totals["rejected"] += int(answer.get("rejected", 0))
                    for error in answer.get("errors", [])[: _KEPT_ERRORS - len(errors)]:
                        errors.append(orjson.dumps(error).decode())
                else:  # the whole request was refused (400, 413, …)
                    totals["rejected"] += lines
                    if len(errors) < _KEPT_ERRORS:
                        errors.append(f"HTTP {response.status_code}: {_detail(response)}")
            return
        raise FluvialError(
            f"the collector at {endpoint} stayed overloaded (HTTP 503) after "
            f"{_MAX_503_RETRIES} attempts"
        )

    def worker() -> None:
        while True:
            body = work.get()
            if body is None:
                return
            if stop.is_set():
                continue
            try:
                post(body)
            except BaseException as exc:
                failure.append(exc)
                stop.set()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    pacer = Pacer(rate)
    began = time.perf_counter()
    sent = 0
    try:
        for batch, a, b in _slices(batches, batch_size):
            if stop.is_set():
                break
            pacer.take(b - a)
            work.put(batch.body(a, b))
            sent += b - a
            if progress:
                progress(b - a)
    finally:
        for _ in threads:
            work.put(None)
        for thread in threads:
            thread.join()
        client.close()
    if failure:
        raise failure[0]
    return Delivery(
        endpoint,
        sent,
        totals["accepted"],
        totals["rejected"],
        time.perf_counter() - began,
        errors=errors,
    )


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(30.0, max(0.0, float(response.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


def _detail(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:200] or response.reason_phrase


def append_to_log(
    batches: Iterable[EventBatch],
    project: Project,
    *,
    app_id: str = "demo",
    batch_size: int = 5_000,
    rate: float = 0.0,
    progress: Progress | None = None,
) -> Delivery:
    """Validate and append through the project's ingestor (as the collector would)."""
    from fluvial.events.ingest import Ingestor

    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, found {batch_size}")
    pacer = Pacer(rate)
    began = time.perf_counter()
    sent = accepted = rejected = 0
    reasons: Counter[str] = Counter()
    errors: list[str] = []
    with Ingestor.for_project(project) as ingestor:
        for batch, a, b in _slices(batches, batch_size):
            pacer.take(b - a)
            payloads = [batch.line(i) for i in range(a, b)]
            result = ingestor.ingest(payloads, app_id=app_id, source="generate")
            sent += b - a
            accepted += result.accepted
            rejected += result.rejected
            reasons.update(result.by_reason)
            for error in result.errors[: _KEPT_ERRORS - len(errors)]:
                errors.append(f"{error.reason}: {error.error}")
            if progress:
                progress(b - a)
    return Delivery(
        f"log:{project.root}",
        sent,
        accepted,
        rejected,
        time.perf_counter() - began,
        dict(reasons),
        errors,
    )
