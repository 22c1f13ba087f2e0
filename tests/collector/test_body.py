"""Body decoding: the size cap before and after gzip, bombs, broken streams."""

from __future__ import annotations

import gzip
import zlib

import pytest

from fluvial.collector.body import BadBody, BodyDecoder, BodyTooLarge, UnsupportedEncoding


def _feed(decoder: BodyDecoder, data: bytes, chunk: int) -> bytes:
    for i in range(0, len(data), chunk):
        decoder.feed(data[i : i + chunk])
    return decoder.finish()


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_gzip_round_trip_in_any_chunking(chunk: int) -> None:
    body = b"\n".join(b'{"n": %d}' % i for i in range(2000))
    assert _feed(BodyDecoder("gzip", limit=1 << 20), gzip.compress(body), chunk) == body


def test_identity_and_multi_member_gzip() -> None:
    assert _feed(BodyDecoder(None, limit=10), b"0123456789", 3) == b"0123456789"
    two = gzip.compress(b"abc") + gzip.compress(b"def")
    assert _feed(BodyDecoder("GZIP", limit=100), two, 5) == b"abcdef"


def test_wire_limit() -> None:
    with pytest.raises(BodyTooLarge, match="larger than 10 bytes"):
        _feed(BodyDecoder(None, limit=10), b"01234567890", 4)


def test_gzip_bomb_stops_at_the_cap_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * (50 << 20), compresslevel=9)  # 50 MiB in ~50 KiB
    decoder = BodyDecoder("gzip", limit=1 << 20)
    with pytest.raises(BodyTooLarge, match="after gzip decompression"):
        _feed(decoder, bomb, 4096)
    # never held more than the cap (+1 byte) of output
    assert sum(len(p) for p in decoder._parts) <= (1 << 20)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"not gzip at all", "invalid gzip body"),
        (gzip.compress(b"x" * 1000, mtime=0)[:-12], "ends before"),
        (zlib.compress(b"zlib, not gzip"), "invalid gzip body"),
        (b"", "empty body"),
    ],
)
def test_broken_gzip_is_a_bad_body(data: bytes, match: str) -> None:
    with pytest.raises(BadBody, match=match):
        _feed(BodyDecoder("gzip", limit=1 << 20), data, 5)


def test_unknown_encoding() -> None:
    with pytest.raises(UnsupportedEncoding, match="br"):
        BodyDecoder("br", limit=10)
