"""The targets (file, collector over HTTP, log) and the ``fluvial generate`` commands."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from fluvial.cli import main
from fluvial.errors import AuthenticationError, FluvialError
from fluvial.generate import ClickstreamConfig, clickstream_batches, generate_clickstream
from fluvial.generate.sinks import Pacer, append_to_log, post_to_collector

START_ISO = "2026-05-01T00:00:00Z"
START_MS = 1_777_593_600_000


class _Collector(BaseHTTPRequestHandler):
    """A stand-in collector: 503 on every third request, counts lines, 401 for bad keys."""

    calls = 0
    bodies: ClassVar[list[bytes]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            type(self).calls += 1
            overloaded = type(self).calls % 3 == 1
        if self.headers.get("Authorization") != "Bearer good-key":
            self._answer(401, {"error": "unknown write key"})
        elif self.path != "/v1/events":
            self._answer(404, {"error": "not found"})
        elif overloaded:
            self._answer(503, {"error": "busy"}, {"Retry-After": "0"})
        else:
            with self.lock:
                type(self).bodies.append(body)
            lines = body.splitlines()
            bad = sum(not line.startswith(b'{"event_id"') for line in lines)
            self._answer(200, {"accepted": len(lines) - bad, "rejected": bad, "errors": []})

    def _answer(
        self, status: int, doc: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    _Collector.calls = 0
    _Collector.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_cli_writes_the_same_file_as_the_api(tmp_path: Path) -> None:
    out = tmp_path / "events.ndjson"
    args = ["generate", "clickstream", "-n", "3000", "--seed", "4", "--users", "200",
            "--start", START_ISO, "--out", str(out), "--quiet", "--invalid-fraction", "0.02"]  # fmt: skip
    assert main(args) == 0
    config = ClickstreamConfig(
        events=3000, seed=4, users=200, start_ms=START_MS, invalid_fraction=0.02
    )
    expected = b"".join(b.data for b in clickstream_batches(config))
    assert out.read_bytes() == expected
    assert main(args) == 0
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(expected).digest()
    first = orjson.loads(out.read_bytes().splitlines()[0])
    assert first["event_time"] >= "2026-05-01T00:00"


def test_cli_rejects_bad_targets_and_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "clickstream", "-n", "10"]) == 2
    assert "exactly one target" in capsys.readouterr().err
    assert main(["generate", "clickstream", "-n", "10", "--to", "ftp://x"]) == 2
    assert main(["generate", "clickstream", "-n", "10", "--to", "http://127.0.0.1:9"]) == 2
    assert "write key" in capsys.readouterr().err
    out = str(tmp_path / "x.ndjson")
    assert (
        main(["generate", "clickstream", "-n", "10", "--out", out, "--start", "last tuesday"]) == 2
    )
    assert "ISO-8601" in capsys.readouterr().err
    assert main(["generate", "nexmark", "-n", "10", "--to", "http://127.0.0.1:9"]) == 2


def test_cli_nexmark_file_and_json_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nexmark.ndjson"
    assert (
        main(
            [
                "generate",
                "nexmark",
                "-n",
                "500",
                "--start",
                START_ISO,
                "--out",
                str(out),
                "--json",
                "-q",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["sent"] == 500
    lines = out.read_bytes().splitlines()
    assert len(lines) == 500
    assert [orjson.loads(x)["event_type"] for x in lines[:5]] == [0, 1, 1, 1, 2]


def test_posts_batches_retries_503_and_counts_answers(collector: str) -> None:
    config = ClickstreamConfig(events=2_000, seed=1, start_ms=START_MS, invalid_fraction=0.05)
    result = post_to_collector(
        clickstream_batches(config), collector, "good-key", batch_size=100, concurrency=3
    )
    invalid_like = sum(not e.line.startswith(b'{"event_id"') for e in generate_clickstream(config))
    assert result.sent == 2_000
    assert result.accepted == 2_000 - invalid_like and result.rejected == invalid_like
    bodies = _Collector.bodies
    assert len(bodies) == 20 and all(b.count(b"\n") == 100 for b in bodies)
    assert _Collector.calls > 20  # some requests were answered 503 and sent again
    sent = b"".join(sorted(bodies))
    expected = b"".join(sorted(b.data for b in clickstream_batches(config)))
    assert sorted(sent.splitlines()) == sorted(expected.splitlines())


def test_a_bad_key_or_no_collector_fails_clearly(collector: str) -> None:
    batches = clickstream_batches(ClickstreamConfig(events=300, start_ms=START_MS))
    with pytest.raises(AuthenticationError, match="refused write key"):
        post_to_collector(batches, collector, "wrong-key")
    with pytest.raises(FluvialError, match="cannot reach the collector"):
        post_to_collector(
            clickstream_batches(ClickstreamConfig(events=10, start_ms=START_MS)),
            "http://127.0.0.1:9",
            "k",
        )


def test_rate_is_honoured() -> None:
    pacer = Pacer(2_000)
    began = time.monotonic()
    for _ in range(20):
        pacer.take(200)  # 4,000 events: a full bucket (one second's worth), then one second
    assert 0.85 < time.monotonic() - began < 1.6
    unlimited = Pacer(0)
    began = time.monotonic()
    unlimited.take(10**9)
    assert time.monotonic() - began < 0.01


def test_log_target_validates_and_appends(project: Any) -> None:
    pytest.importorskip("fluvial.events.ingest")
    config = ClickstreamConfig(
        events=3_000, seed=2, start_ms=START_MS, duplicate_fraction=0.02, invalid_fraction=0.05
    )
    events = list(generate_clickstream(config))
    result = append_to_log(clickstream_batches(config), project, batch_size=700)
    invalid = sum(e.kind.startswith("invalid:") for e in events)
    assert (result.sent, result.accepted, result.rejected) == (3_000, 3_000 - invalid, invalid)
    with project.open_log() as log:
        assert log.topic("events").records == 3_000 - invalid
        assert log.topic("events_failed").records == invalid
