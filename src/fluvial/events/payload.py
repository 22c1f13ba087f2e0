"""Splitting request bodies and NDJSON files into one payload (bytes) per event.

Nothing is dropped here: a body that cannot be split is passed on whole, and fails
validation as ``payload_format`` with its original text.

>>> split_payloads(b'{"a": 1}\\n\\n{"b": 2}\\n', "application/x-ndjson")
[b'{"a": 1}', b'{"b": 2}']
>>> split_payloads(b'[{"a": 1}, {"b": 2}]', "application/json; charset=utf-8")
[b'{"a":1}', b'{"b":2}']
>>> split_payloads(b'{"a": 1', "application/json")
[b'{"a": 1']
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from fluvial.errors import UsageError

__all__ = [
    "JSON_TYPES",
    "NDJSON_TYPES",
    "NdjsonChunk",
    "iter_ndjson",
    "split_payloads",
]

NDJSON_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonl",
        "application/jsonlines",
        "application/x-jsonlines",
        "application/json-lines",
        "text/plain",
    }
)
JSON_TYPES = frozenset({"application/json", "text/json", ""})

_BOM = b"\xef\xbb\xbf"


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _lines(body: bytes) -> list[bytes]:
    # bytes.splitlines splits on \n, \r\n and \r only (never inside a JSON string, where
    # control characters must be escaped)
    return [line for raw in body.splitlines() if (line := raw.strip())]


def split_payloads(body: bytes, content_type: str) -> list[bytes]:
    """One payload per event in a request *body* of *content_type*.

    - NDJSON (``application/x-ndjson``, ``application/ndjson``, ``application/jsonl``,
      ``text/plain``, …): one document per non-empty line.
    - JSON (``application/json``, ``application/*+json``, or no content type): a single
      object is returned as is; an array gives each element, re-serialized with orjson;
      anything unparsable is returned whole.

    Raises:
        UsageError: another content type (the collector answers 415).
    """
    media = _media_type(content_type)
    body = body.removeprefix(_BOM)
    if media in NDJSON_TYPES:
        return _lines(body)
    if media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json")):
        if not body.strip():
            return []
        if body.lstrip()[:1] != b"[":
            return [body]
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return [body]
        if not isinstance(doc, list):
            return [body]
        return [orjson.dumps(element) for element in doc]
    accepted = ", ".join(sorted(t for t in JSON_TYPES | NDJSON_TYPES if t))
    raise UsageError(
        f"unsupported content type {content_type!r}; expected one of {accepted} "
        "(or application/*+json)"
    )


@dataclass(frozen=True)
class NdjsonChunk:
    """Consecutive non-empty lines of an NDJSON file: ``lines[i]`` is 0-based line
    number of ``payloads[i]``; ``bytes_read`` counts the whole file so far."""

    payloads: list[bytes]
    lines: list[int]
    bytes_read: int


def iter_ndjson(path: Path, batch_size: int = 10_000) -> Iterator[NdjsonChunk]:
    """Read an NDJSON file in chunks of up to *batch_size* non-empty lines."""
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, found {batch_size}")
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, around the generator body
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        payloads: list[bytes] = []
        lines: list[int] = []
        read = 0
        for number, raw in enumerate(handle):
            read += len(raw)
            line = raw.strip()
            if number == 0:
                line = line.removeprefix(_BOM)
            if not line:
                continue
            payloads.append(line)
            lines.append(number)
            if len(payloads) >= batch_size:
                yield NdjsonChunk(payloads, lines, read)
                payloads, lines = [], []
        if payloads:
            yield NdjsonChunk(payloads, lines, read)
