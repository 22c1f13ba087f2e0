"""Request bodies: the size cap and streaming gzip decoding (safe against gzip bombs).

The cap counts the bytes on the wire *and* the bytes after decompression, and
decompression never produces more than one byte past the cap, so a 1 KiB body that
inflates to 10 GiB costs at most the cap in memory.

>>> import gzip
>>> d = BodyDecoder("gzip", limit=100)
>>> d.feed(gzip.compress(b'{"a": 1}'))
>>> d.finish()
b'{"a": 1}'
>>> d = BodyDecoder("gzip", limit=100)
>>> d.feed(gzip.compress(b"x" * 10_000))
Traceback (most recent call last):
...
fluvial.collector.body.BodyTooLarge: request body is larger than 100 bytes after gzip decompression (limit: collector.max_request_bytes)
"""

from __future__ import annotations

import zlib

from fluvial.errors import UsageError

__all__ = ["BadBody", "BodyDecoder", "BodyTooLarge", "UnsupportedEncoding"]

_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header and trailer, not raw deflate or zlib


class BadBody(UsageError):
    """The body cannot be decoded (HTTP 400)."""


class BodyTooLarge(UsageError):
    """The body is over the limit, on the wire or decompressed (HTTP 413)."""


class UnsupportedEncoding(UsageError):
    """A Content-Encoding other than gzip or identity (HTTP 415)."""


class BodyDecoder:
    """Collects a request body chunk by chunk, enforcing *limit* and undoing gzip."""

    def __init__(self, content_encoding: str | None, *, limit: int) -> None:
        encoding = (content_encoding or "identity").strip().lower()
        if encoding not in ("identity", "gzip", "x-gzip"):
            raise UnsupportedEncoding(
                f"unsupported Content-Encoding {content_encoding!r}: expected gzip or none"
            )
        self.limit = limit
        self.gzip = encoding != "identity"
        self._wire = 0
        self._size = 0
        self._parts: list[bytes] = []
        self._inflater = zlib.decompressobj(_GZIP_WBITS) if self.gzip else None

    def feed(self, chunk: bytes) -> None:
        """Add the next chunk from the wire."""
        self._wire += len(chunk)
        if self._wire > self.limit:
            raise BodyTooLarge(
                f"request body is larger than {self.limit} bytes (limit: collector.max_request_bytes)"
            )
        if self._inflater is None:
            self._parts.append(chunk)
            self._size = self._wire
            return
        self._inflate(chunk)

    def _inflate(self, data: bytes) -> None:
        assert self._inflater is not None
        while data:
            try:
                # max_length bounds the output of this call: a bomb stops one byte past the cap
                out = self._inflater.decompress(data, self.limit - self._size + 1)
            except zlib.error as exc:
                raise BadBody(f"invalid gzip body: {exc}; expected a gzip stream") from exc
            self._size += len(out)
            if self._size > self.limit:
                raise BodyTooLarge(
                    f"request body is larger than {self.limit} bytes after gzip "
                    "decompression (limit: collector.max_request_bytes)"
                )
            self._parts.append(out)
            if self._inflater.eof:
                # a gzip file may hold several members back to back (RFC 1952 section 2.2)
                data = self._inflater.unused_data
                if data:
                    self._inflater = zlib.decompressobj(_GZIP_WBITS)
            else:
                data = self._inflater.unconsumed_tail

    def finish(self) -> bytes:
        """The whole decoded body; raises :class:`BadBody` if the gzip stream is cut short."""
        if self._inflater is not None:
            if self._wire == 0:
                raise BadBody("empty body with Content-Encoding: gzip; expected a gzip stream")
            if not self._inflater.eof:
                raise BadBody("invalid gzip body: the stream ends before its end marker")
        return b"".join(self._parts)
