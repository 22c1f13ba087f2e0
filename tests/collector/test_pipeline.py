"""The ingest pipeline: coalescing, per-request receipts, back-pressure, draining."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from fluvial.collector.pipeline import IngestPipeline
from fluvial.errors import LogError, OverloadedError

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class _Err:
    index: int
    reason: str
    error: str
    path: str | None
    event_id: str | None


@dataclass
class _Result:
    accepted: int
    rejected: int
    errors: list[_Err]
    by_reason: dict[str, int]


@dataclass
class FakeIngestor:
    """Rejects payloads starting with b"bad:" (reason after the colon); can be held shut."""

    gate: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)
    calls: list[tuple[list[bytes], str | None]] = field(default_factory=list)
    fail: bool = False

    def __post_init__(self) -> None:
        self.gate.set()

    def ingest(
        self,
        payloads: list[bytes],
        *,
        received_at_ms: int | None = None,
        app_id: str | None = None,
        source: str = "collector",
    ) -> Any:
        self.entered.set()
        assert self.gate.wait(10)
        self.calls.append((list(payloads), app_id))
        if self.fail:
            raise LogError("disk full")
        errors = [
            _Err(i, p.split(b":")[1].decode(), "nope", "$", p.decode())
            for i, p in enumerate(payloads)
            if p.startswith(b"bad:")
        ]
        reasons: dict[str, int] = {}
        for e in errors:
            reasons[e.reason] = reasons.get(e.reason, 0) + 1
        return _Result(len(payloads) - len(errors), len(errors), errors, reasons)


async def _wait_for(predicate: Any) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_single_request_receipt() -> None:
    fake = FakeIngestor()
    with IngestPipeline(fake, max_pending_events=100) as pipe:
        receipt = await pipe.submit(
            [b"ok", b"bad:schema_violation", b"ok"], app_id="shop", received_at_ms=1
        )
    assert (receipt.accepted, receipt.rejected) == (2, 1)
    assert receipt.errors == [
        {
            "index": 1,
            "reason": "schema_violation",
            "error": "nope",
            "path": "$",
            "event_id": "bad:schema_violation",
        }
    ]
    assert receipt.by_reason == {"schema_violation": 1}
    assert pipe.pending == 0


async def test_queued_requests_are_coalesced_and_split_back() -> None:
    fake = FakeIngestor()
    fake.gate.clear()
    # each request: a mix of good and bad payloads that names its own request and index
    bodies = [
        [b"bad:r%d_%d" % (r, i) if (r + i) % 3 == 0 else b"ok" for i in range(r + 1)]
        for r in range(8)
    ]
    with IngestPipeline(fake, max_pending_events=1000, workers=1) as pipe:
        tasks = [asyncio.ensure_future(pipe.submit(bodies[0], app_id="shop", received_at_ms=1))]
        await _wait_for(fake.entered.is_set)  # the only worker is busy with request 0
        tasks += [
            asyncio.ensure_future(pipe.submit(b, app_id="shop", received_at_ms=1))
            for b in bodies[1:]
        ]
        await _wait_for(lambda: pipe.pending == sum(map(len, bodies)))
        fake.gate.set()
        receipts = await asyncio.gather(*tasks)
    # the first request held the only worker; the other seven went in one append
    assert len(fake.calls) == 2
    assert fake.calls[1][0] == [p for b in bodies[1:] for p in b]
    for r, (body, receipt) in enumerate(zip(bodies, receipts, strict=True)):
        expected = [i for i, p in enumerate(body) if p.startswith(b"bad:")]
        assert [e["index"] for e in receipt.errors] == expected
        assert [e["reason"] for e in receipt.errors] == [f"r{r}_{i}" for i in expected]
        assert receipt.accepted == len(body) - len(expected)


async def test_apps_are_never_mixed_in_one_append() -> None:
    fake = FakeIngestor()
    fake.gate.clear()
    with IngestPipeline(fake, max_pending_events=1000, workers=1) as pipe:
        first = asyncio.ensure_future(pipe.submit([b"ok"], app_id="a", received_at_ms=1))
        await _wait_for(fake.entered.is_set)
        rest = [
            asyncio.ensure_future(pipe.submit([b"ok"], app_id=app, received_at_ms=1))
            for app in ("a", "b", "a", "b")
        ]
        await _wait_for(lambda: pipe.pending == 5)
        fake.gate.set()
        await asyncio.gather(first, *rest)
    assert sorted((len(p), app) for p, app in fake.calls) == [(1, "a"), (2, "a"), (2, "b")]


async def test_overload_refuses_at_once_and_stores_nothing() -> None:
    fake = FakeIngestor()
    fake.gate.clear()
    with IngestPipeline(fake, max_pending_events=3, workers=1) as pipe:
        held = asyncio.ensure_future(pipe.submit([b"ok"] * 2, app_id="a", received_at_ms=1))
        await _wait_for(lambda: pipe.pending == 2)
        with pytest.raises(OverloadedError, match="2 events pending, limit 3") as info:
            await pipe.submit([b"ok"] * 2, app_id="a", received_at_ms=1)
        assert info.value.retry_after == 1.0
        assert pipe.pending == 2
        fake.gate.set()
        await held
        # room again: a request larger than the limit still passes when alone
        await pipe.submit([b"ok"] * 5, app_id="a", received_at_ms=1)
    assert [len(p) for p, _ in fake.calls] == [2, 5]


async def test_log_failure_fails_the_requests_and_frees_the_room() -> None:
    fake = FakeIngestor(fail=True)
    with IngestPipeline(fake, max_pending_events=10) as pipe:
        with pytest.raises(LogError, match="disk full"):
            await pipe.submit([b"ok"], app_id="a", received_at_ms=1)
        assert pipe.pending == 0


async def test_close_finishes_admitted_requests() -> None:
    fake = FakeIngestor()
    fake.gate.clear()
    pipe = IngestPipeline(fake, max_pending_events=100, workers=2).start()
    tasks = [
        asyncio.ensure_future(pipe.submit([b"ok"] * 3, app_id="a", received_at_ms=1))
        for _ in range(5)
    ]
    await _wait_for(lambda: pipe.pending == 15)
    closer = asyncio.get_running_loop().run_in_executor(None, pipe.close)
    await asyncio.sleep(0.05)
    with pytest.raises(OverloadedError, match="shutting down"):
        await pipe.submit([b"ok"], app_id="a", received_at_ms=1)
    fake.gate.set()
    await closer
    receipts = await asyncio.gather(*tasks)
    assert sum(r.accepted for r in receipts) == 15
    assert sum(len(p) for p, _ in fake.calls) == 15


async def test_cancelled_request_still_counts_until_appended() -> None:
    fake = FakeIngestor()
    fake.gate.clear()
    with IngestPipeline(fake, max_pending_events=100, workers=1) as pipe:
        task = asyncio.ensure_future(pipe.submit([b"ok"] * 4, app_id="a", received_at_ms=1))
        await _wait_for(lambda: pipe.pending == 4)
        task.cancel()  # the client went away
        await asyncio.sleep(0.02)
        assert pipe.pending == 4
        fake.gate.set()
        await _wait_for(lambda: pipe.pending == 0)
    assert len(fake.calls) == 1
