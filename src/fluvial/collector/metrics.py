"""The collector's Prometheus metrics, in a registry of its own (never the global one).

Each app gets its own :class:`CollectorMetrics`, so two collectors in one process (tests,
``fluvial up``) never share or clash on counters. Log sizes per topic and the pending
event count are computed when Prometheus scrapes, not on the hot path.

>>> m = CollectorMetrics(pending=lambda: 3)
>>> m.request("/v1/events", 200, 0.004)
>>> m.events(accepted=2, by_reason={"schema_violation": 1})
>>> text = m.render().decode()
>>> 'fluvial_collector_requests_total{path="/v1/events",status="200"} 1.0' in text
True
>>> "fluvial_collector_pending_events 3.0" in text
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from fluvial.log.base import EventLog

__all__ = ["CONTENT_TYPE", "CollectorMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Milliseconds matter here: the target is p99 <= 50 ms, so resolve 1-100 ms finely.
_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_BATCH_BUCKETS = (1, 10, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)


class _LogSizeCollector(Collector):
    """``fluvial_log_topic_bytes{topic}``, read from ``log.list_topics()`` on each scrape."""

    def __init__(self, log: EventLog) -> None:
        self._log = log

    def collect(self) -> Iterator[GaugeMetricFamily]:
        bytes_ = GaugeMetricFamily(
            "fluvial_log_topic_bytes", "Bytes retained per topic of the event log", labels=["topic"]
        )
        records = GaugeMetricFamily(
            "fluvial_log_topic_records",
            "Records retained per topic of the event log",
            labels=["topic"],
        )
        for topic in self._log.list_topics():
            bytes_.add_metric([topic.name], float(topic.bytes))
            records.add_metric([topic.name], float(topic.records))
        yield bytes_
        yield records


class CollectorMetrics:
    """Counters, histograms and gauges for one collector app."""

    def __init__(self, *, pending: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "fluvial_collector_requests",
            "HTTP requests answered, by path and status code",
            ["path", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "fluvial_collector_request_seconds",
            "Time from request start to response, for POST /v1/events",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.accepted = Counter(
            "fluvial_collector_events_accepted",
            "Events appended to the events topic",
            registry=r,
        )
        self.rejected = Counter(
            "fluvial_collector_events_rejected",
            "Events appended to the failed-events topic, by reason",
            ["reason"],
            registry=r,
        )
        self.append_seconds = Histogram(
            "fluvial_collector_append_seconds",
            "Time of one validate-and-append call (durable on return)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_events = Histogram(
            "fluvial_collector_batch_events",
            "Events per append call (requests coalesced by the pipeline)",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.overloaded = Counter(
            "fluvial_collector_overloaded_events",
            "Events refused with 503 because too many were pending",
            registry=r,
        )
        self.refused_requests = Counter(
            "fluvial_collector_refused_requests",
            "Requests refused with nothing stored, by path and reason "
            "(authentication, origin, rate_limit, burst)",
            ["path", "reason"],
            registry=r,
        )
        self.refused_events = Counter(
            "fluvial_collector_refused_events",
            "Events in requests refused by a write key's rate limit, by reason",
            ["reason"],
            registry=r,
        )
        pending_gauge = Gauge(
            "fluvial_collector_pending_events",
            "Events received and not yet durably appended",
            registry=r,
        )
        pending_gauge.set_function(pending)
        self._watched: EventLog | None = None

    def watch_log(self, log: EventLog) -> None:
        """Report *log*'s bytes and records per topic on every scrape (once per app)."""
        if self._watched is None:
            self.registry.register(_LogSizeCollector(log))
            self._watched = log

    def request(self, path: str, status: int, seconds: float | None = None) -> None:
        """Count one answered request (and time it, when *seconds* is given)."""
        self.requests.labels(path, str(status)).inc()
        if seconds is not None:
            self.request_seconds.observe(seconds)

    def refused(self, path: str, reason: str, events: int = 0) -> None:
        """Count one refused request (and its events, when they were counted)."""
        self.refused_requests.labels(path, reason).inc()
        if events:
            self.refused_events.labels(reason).inc(events)

    def events(self, *, accepted: int, by_reason: Mapping[str, int]) -> None:
        """Count one request's outcome."""
        if accepted:
            self.accepted.inc(accepted)
        for reason, n in by_reason.items():
            self.rejected.labels(reason).inc(n)

    def append(self, seconds: float, events: int) -> None:
        """Record one append call's duration and size."""
        self.append_seconds.observe(seconds)
        self.batch_events.observe(events)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
