"""The rates a running ``fluvial up`` measures, read from its Prometheus ``/metrics``.

Counters only say how much happened since the process started, so :func:`measure` scrapes
twice, *seconds* apart, and divides the differences by the time between them:

- events per second: ``fluvial_collector_events_accepted_total`` plus
  ``fluvial_collector_events_rejected_total`` (dead letters are logged too);
- bytes per event: ``fluvial_log_topic_bytes`` ÷ ``fluvial_log_topic_records`` of the
  events topic (what the log retains, as it stores it);
- queries per day: ``fluvial_api_requests_total{route="/api/sql",status="200"}`` × 86,400
  (refused and failed queries scan nothing, and Athena bills them nothing);
- store writes per second: ``fluvial_stream_rows_out`` of the pipelines that write the
  operational store (as named by the caller).

>>> before = 'fluvial_collector_events_accepted_total 100.0\\n'
>>> after = 'fluvial_collector_events_accepted_total 300.0\\n'
>>> rates(before, after, 2.0, events_topic="events").events_per_second
100.0
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from fluvial.errors import FluvialError, UsageError

__all__ = ["Measured", "measure", "parse_metrics", "rates"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass(frozen=True)
class Measured:
    """Rates over one sampling interval of a running deployment."""

    seconds: float
    events_per_second: float
    event_bytes: int | None
    queries_per_day: float
    store_writes_per_second: float


def parse_metrics(text: str) -> Samples:
    """Every sample of a Prometheus text exposition: ``(name, sorted labels) -> value``.

    >>> parse_metrics('x_total{a="1"} 2.0\\n')
    {('x_total', (('a', '1'),)): 2.0}
    """
    try:
        return {
            (s.name, tuple(sorted(s.labels.items()))): float(s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
    except ValueError as exc:
        raise FluvialError(f"/metrics: not Prometheus text ({exc})") from exc


def _sum(samples: Samples, name: str, **match: str | Collection[str]) -> float:
    total = 0.0
    for (n, labels), value in samples.items():
        if n != name:
            continue
        found = dict(labels)
        ok = True
        for key, want in match.items():
            got = found.get(key)
            ok = ok and (got == want if isinstance(want, str) else got in want)
        if ok:
            total += value
    return total


def rates(
    before: str,
    after: str,
    seconds: float,
    *,
    events_topic: str,
    store_jobs: Collection[str] = (),
) -> Measured:
    """Rates between two scrapes taken *seconds* apart."""
    if seconds <= 0:
        raise UsageError(f"the sampling interval must be positive, found {seconds}")
    a, b = parse_metrics(before), parse_metrics(after)

    def delta(name: str, **match: str | Collection[str]) -> float:
        # a restarted process resets its counters: count from zero then
        d = _sum(b, name, **match) - _sum(a, name, **match)
        return d if d >= 0 else _sum(b, name, **match)

    events = delta("fluvial_collector_events_accepted_total") + delta(
        "fluvial_collector_events_rejected_total"
    )
    records = _sum(b, "fluvial_log_topic_records", topic=events_topic)
    size = _sum(b, "fluvial_log_topic_bytes", topic=events_topic)
    sql = delta("fluvial_api_requests_total", route="/api/sql", status="200")
    stored = delta("fluvial_stream_rows_out", job=store_jobs) if store_jobs else 0.0
    return Measured(
        seconds=seconds,
        events_per_second=events / seconds,
        event_bytes=round(size / records) if records > 0 and size > 0 else None,
        queries_per_day=sql / seconds * 86400,
        store_writes_per_second=stored / seconds,
    )


def _fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body: bytes = response.read()
            return body.decode("utf-8")
    except (urllib.error.URLError, OSError) as exc:
        raise FluvialError(f"cannot read {url}: {exc}") from exc


def measure(
    url: str,
    seconds: float,
    *,
    events_topic: str = "events",
    store_jobs: Collection[str] = (),
    fetch: Callable[[str], str] = _fetch,
    sleep: Callable[[float], None] = time.sleep,
) -> Measured:
    """Scrape ``<url>/metrics`` twice, *seconds* apart, and return the rates between.

    *url* is the base URL of ``fluvial up`` (``http://127.0.0.1:8765``) or the metrics URL.
    """
    if seconds <= 0:
        raise UsageError(f"the sampling interval must be positive, found {seconds}")
    metrics = url.rstrip("/")
    if not metrics.endswith("/metrics"):
        metrics += "/metrics"
    first = fetch(metrics)
    started = time.monotonic()
    sleep(seconds)
    second = fetch(metrics)
    elapsed = time.monotonic() - started
    return rates(first, second, elapsed, events_topic=events_topic, store_jobs=store_jobs)
