"""Vectorized text for generated events: UUIDs, timestamps, money and JSON by concatenation.

The generators build each JSON line by joining Arrow string columns element-wise; every
piece is either a JSON literal encoded once (see :mod:`fluvial.generate.catalog`) or text
made here from numbers, which never needs escaping.

>>> import numpy as np
>>> uuid_strings(np.zeros((1, 16), np.uint8)).to_pylist()
['00000000-0000-4000-8000-000000000000']
>>> iso_millis(np.array([1_700_000_000_123])).to_pylist()
['2023-11-14T22:13:20.123Z']
>>> money(np.array([1999, 5, -250])).to_pylist()
['19.99', '0.05', '-2.50']
>>> concat('{"a":', pa.array(["1", None]), "}").to_pylist()
['{"a":1}', None]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "concat",
    "fixed_width_strings",
    "iso_millis",
    "join_lines",
    "money",
    "sql_millis",
    "uuid_strings",
]

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# positions of the 32 hex digits within the 36 characters of a UUID's text
_UUID_DIGITS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def fixed_width_strings(chars: np.ndarray) -> pa.StringArray:
    """An Arrow string array from an ``(n, width)`` uint8 matrix of ASCII characters."""
    n, width = chars.shape
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(width)
    data = np.ascontiguousarray(chars, dtype=np.uint8)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def uuid_strings(raw: np.ndarray) -> pa.StringArray:
    """Version-4 UUID text from ``(n, 16)`` random bytes (version and variant bits are set)."""
    raw = np.array(raw, dtype=np.uint8, copy=True)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    nibbles = np.empty((len(raw), 32), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    chars = np.full((len(raw), 36), ord("-"), dtype=np.uint8)
    chars[:, _UUID_DIGITS] = _HEX[nibbles]
    return fixed_width_strings(chars)


def iso_millis(ms: np.ndarray) -> pa.StringArray:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` for each epoch-millisecond value."""
    text = np.datetime_as_string(np.asarray(ms, dtype=np.int64).astype("datetime64[ms]"), "ms")
    chars = np.empty((len(text), 24), dtype=np.uint8)
    chars[:, :23] = np.frombuffer(text.astype("S23").tobytes(), np.uint8).reshape(-1, 23)
    chars[:, 23] = ord("Z")
    return fixed_width_strings(chars)


def sql_millis(ms: np.ndarray) -> pa.StringArray:
    """``YYYY-MM-DD HH:MM:SS.mmm`` (Flink's TIMESTAMP(3) text) for each epoch-millisecond value.

    >>> sql_millis(np.array([0])).to_pylist()
    ['1970-01-01 00:00:00.000']
    """
    text = np.datetime_as_string(np.asarray(ms, dtype=np.int64).astype("datetime64[ms]"), "ms")
    chars = np.frombuffer(text.astype("S23").tobytes(), np.uint8).reshape(-1, 23).copy()
    chars[:, 10] = ord(" ")
    return fixed_width_strings(chars)


def money(cents: np.ndarray) -> pa.Array:
    """Amounts in cents as JSON numbers with two decimals (``1999`` -> ``19.99``)."""
    cents = np.asarray(cents, dtype=np.int64)
    sign = pa.array(np.where(cents < 0, "-", ""))
    whole = pa.array(np.abs(cents) // 100).cast(pa.string())
    frac = pc.utf8_lpad(pa.array(np.abs(cents) % 100).cast(pa.string()), 2, "0")
    return concat(sign, whole, ".", frac)


def concat(*parts: Any, skip_nulls: bool = False) -> pa.Array:
    """Join strings element-wise; a null part makes the row null unless *skip_nulls*."""
    return pc.binary_join_element_wise(
        *parts, "", null_handling="skip" if skip_nulls else "emit_null"
    )


def join_lines(lines: pa.Array) -> tuple[bytes, np.ndarray]:
    """All *lines* as one NDJSON buffer, and the offsets where each line starts (n + 1)."""
    terminated = concat(lines, "\n")
    if isinstance(terminated, pa.ChunkedArray):
        terminated = terminated.combine_chunks()
    terminated = terminated.cast(pa.large_string())
    offsets = np.frombuffer(terminated.buffers()[1], dtype=np.int64)[
        terminated.offset : terminated.offset + len(terminated) + 1
    ]
    data = terminated.buffers()[2]
    start, end = int(offsets[0]), int(offsets[-1])
    body = b"" if data is None else bytes(memoryview(data)[start:end])
    return body, (offsets - start).copy()
