"""The Arrow kernels behind the backends, against plain Python computations."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from fluvial.errors import ValidationError
from fluvial.serve.store._codec import (
    decimal_from_int64,
    decimal_to_int64,
    hex_decode,
    hex_encode,
    last_per_key,
    order_key,
    split_changelog,
)

WORDS = ["", "a", "a\x00", "a\x00b", "a\x01", "ab", "b", "Z", "é", "\x00", "ü", "aa"]


def test_order_key_sorts_like_the_values() -> None:
    rng = np.random.default_rng(5)
    n = 3_000
    table = pa.table(
        {
            "s": pa.array(rng.choice(WORDS, n)),
            "i": pa.array(rng.integers(-3, 3, n) * (2**61), pa.int64()),
            "f": pa.array(rng.choice([-np.inf, -2.5, -1e-300, 0.0, 1e-300, 7.0, np.inf], n)),
            "b": pa.array(rng.random(n) < 0.5),
            "d": pa.array(
                [Decimal(int(x)) / 100 for x in rng.integers(-500, 500, n)], pa.decimal128(9, 2)
            ),
            "t": pa.array(rng.integers(-(10**15), 10**15, n), pa.int64()).cast(pa.timestamp("us")),
            "day": pa.array(rng.integers(-800, 800, n), pa.int32()).cast(pa.date32()),
        }
    )
    keys = order_key(table, table.column_names).to_pylist()
    rows = table.to_pylist()
    python = sorted(
        range(n),
        key=lambda i: tuple(v.encode() if isinstance(v, str) else v for v in rows[i].values()),
    )
    by_bytes = sorted(range(n), key=lambda i: keys[i])
    assert [tuple(rows[i].values()) for i in by_bytes] == [tuple(rows[i].values()) for i in python]
    # equal rows, equal bytes; different rows, different bytes
    assert len(set(keys)) == len({tuple(r.values()) for r in rows})


def test_order_key_refuses_null_keys() -> None:
    with pytest.raises(ValidationError, match="'k' has 1 null"):
        order_key(pa.table({"k": [1, None]}), ["k"])


def test_hex_matches_python() -> None:
    rng = np.random.default_rng(2)
    values = [bytes(rng.integers(0, 256, int(k), dtype=np.uint8)) for k in rng.integers(0, 9, 200)]
    values[5] = None  # type: ignore[call-overload]
    arr = pa.array(values, pa.binary()).slice(3)  # an offset, as after a filter
    text = hex_encode(arr, b"\\x").to_pylist()
    assert text == [None if v is None else "\\x" + v.hex() for v in values[3:]]
    assert hex_decode(hex_encode(arr), pa.binary()).to_pylist() == values[3:]


def test_decimal_unscaled_values() -> None:
    values = [Decimal("-999999999999999.99"), None, Decimal("0.01"), Decimal("123.45")]
    arr = pa.array(values, pa.decimal128(18, 2)).slice(1)
    ints = decimal_to_int64(arr)
    assert ints.to_pylist() == [None if v is None else int(v.scaleb(2)) for v in values[1:]]
    assert decimal_from_int64(ints, pa.decimal128(18, 2)).to_pylist() == values[1:]


def test_last_per_key_and_changelogs_match_a_replay() -> None:
    rng = np.random.default_rng(9)
    n = 500
    table = pa.table(
        {
            "k": rng.integers(0, 30, n),
            "t": pa.array(rng.integers(0, 3, n), pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "v": np.arange(n),
            "_op": pa.array(rng.integers(0, 4, n), pa.int8()),
        }
    )
    last: dict[tuple[int, dt.datetime], dict[str, object]] = {}
    state: dict[tuple[int, dt.datetime], dict[str, object]] = {}
    for row in table.to_pylist():
        key = (row["k"], row["t"])
        last[key] = row
        if row["_op"] in (0, 2):
            state[key] = {c: row[c] for c in ("k", "t", "v")}
        else:  # delete or update-before
            state.pop(key, None)
    assert sorted(r["v"] for r in last_per_key(table, ["k", "t"]).to_pylist()) == sorted(
        r["v"] for r in last.values()
    )
    upserts, deletes = split_changelog(table, ["k", "t"])
    got = {(r["k"], r["t"]): r for r in upserts.to_pylist()}
    assert got == state
    assert "_op" not in upserts.column_names
    for row in deletes.to_pylist():  # a deleted key's last kept change was a delete
        assert (row["k"], row["t"]) not in state
