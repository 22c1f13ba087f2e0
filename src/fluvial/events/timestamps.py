"""Vectorized event-time parsing: ISO-8601 strings and epoch milliseconds to UTC ms.

Values arrive as parsed JSON: ``None``, integers (epoch milliseconds) or strings that
already match the RFC 3339 shape (see ``ISO_PATTERN``). The conversion runs over the whole
batch in Arrow; calendar-invalid strings (``2026-02-30T…``) come back as null with their
position in a mask.

>>> ms, bad = to_epoch_ms(["2026-11-24T10:00:00Z", 1795000000123, None,
...                        "2026-11-24T11:00:00.5+01:00", "2026-02-30T00:00:00Z"])
>>> ms.to_pylist(), bad.tolist()
([1795514400000, 1795000000123, None, 1795514400500, None], [False, False, False, False, True])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["to_epoch_ms"]

_TS = pa.timestamp("ms", tz="UTC")


def _iso_to_ms(strings: pa.Array) -> tuple[pa.Array, np.ndarray]:
    bad = np.zeros(len(strings), dtype=bool)
    try:  # Arrow's ISO-8601 cast handles "Z", "±hh:mm" and fractions of up to 3 digits
        return pc.cast(strings, _TS).view(pa.int64()), bad
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # It rejects digits finer than milliseconds: truncate them (a regex pass costs more
    # than the cast, so only when needed), then retry.
    trimmed = pc.replace_substring_regex(strings, r"(\.\d{3})\d+", r"\1")
    try:
        return pc.cast(trimmed, _TS).view(pa.int64()), bad
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # Some value is not a real date or time (30 February, 25:00): find the culprits by
    # halving — O(k log n) vectorized casts for k bad values, never a loop over rows.
    return _bisect_cast(trimmed)


def _bisect_cast(strings: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Arrow's cast of *strings* to epoch ms, with null (and ``bad``) where it fails."""
    try:
        return pc.cast(strings, _TS).view(pa.int64()), np.zeros(len(strings), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(strings) == 1:
            return pa.nulls(1, pa.int64()), np.ones(1, dtype=bool)
    half = len(strings) // 2
    left, left_bad = _bisect_cast(strings.slice(0, half))
    right, right_bad = _bisect_cast(strings.slice(half))
    return pa.concat_arrays([left, right]), np.concatenate([left_bad, right_bad])


def to_epoch_ms(values: Sequence[object]) -> tuple[pa.Array, np.ndarray]:
    """UTC epoch milliseconds (int64, null where *values* is None or invalid) and a mask
    of the invalid positions."""
    n = len(values)
    # the common cases: every value is a string, or every value is epoch ms (guessed from
    # the first value: a failed conversion costs more than the guess)
    strings_first = n > 0 and values[0].__class__ is str
    for attempt in (True, False) if strings_first else (False, True):
        try:
            if attempt:
                return _iso_to_ms(pa.array(values, pa.string()))
            return pa.array(values, pa.int64()), np.zeros(n, dtype=bool)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    # a batch mixing both forms: split by type (a cheap pass), convert each side in Arrow
    numbers = pa.array([None if v.__class__ is str else v for v in values], pa.int64())
    iso, bad = _iso_to_ms(
        pa.array([v if v.__class__ is str else None for v in values], pa.string())
    )
    return pc.coalesce(numbers, iso), bad
