"""SESSION islands: the shifted global running maximum equals the per-key window one."""

from __future__ import annotations

import numpy as np
import polars as pl

from fluvial.stream.ops.session import _islands


def _reference(intervals: pl.DataFrame, keys: list[str]) -> pl.Series:
    """Per key in plain Python: a new session when start > every earlier end of the key."""
    ordered = intervals.sort([*keys, "__s"], nulls_last=True)
    island, last_key, end = 0, object(), None
    out = []
    for row in ordered.iter_rows(named=True):
        key = tuple(row[k] for k in keys)
        if key != last_key or row["__s"] > end:
            island += 1
            end = row["__e"]
        end = max(end, row["__e"])
        last_key = key
        out.append(island)
    return pl.Series("__island", out, pl.Int64)


def test_islands_match_a_per_key_reference_with_null_keys() -> None:
    rng = np.random.default_rng(3)
    n = 2_000
    starts = 1_700_000_000_000 + rng.integers(0, 200_000, n)
    keys = rng.integers(0, 40, n).astype(float)
    keys[rng.random(n) < 0.1] = np.nan
    frame = pl.DataFrame(
        {
            "k": pl.Series(keys).fill_nan(None).cast(pl.Int64),
            "s2": rng.choice(["a", "b"], n),
            "__s": starts,
            "__e": starts + rng.integers(1, 10_000, n),
        }
    )
    for keys_ in (["k"], ["k", "s2"]):
        got = _islands(frame, keys_)["__island"]
        assert got.equals(_reference(frame, keys_))
