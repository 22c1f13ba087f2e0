"""Arrow kernels the store backends share: type checks, changelogs, decimals, hex, key bytes.

Everything here works on whole columns (NumPy and Arrow compute), never row by row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import SchemaError, ValidationError

__all__ = [
    "OP",
    "decimal_from_int64",
    "decimal_to_int64",
    "hex_decode",
    "hex_encode",
    "last_per_key",
    "order_key",
    "split_changelog",
    "successor",
    "supported",
]

#: the changelog column, with Flink's RowKind byte values
OP = "_op"
INSERT, UPDATE_BEFORE, UPDATE_AFTER, DELETE = 0, 1, 2, 3

_INTS = (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32())


def supported(typ: pa.DataType, *, key: bool = False) -> bool:
    """Whether every backend stores *typ* exactly (and orders it, as a key column)."""
    if typ in _INTS or pa.types.is_boolean(typ) or pa.types.is_date32(typ):
        return True
    if pa.types.is_decimal128(typ):
        return not key or typ.precision <= 18  # keys: an int64 unscaled value, ordered
    if pa.types.is_timestamp(typ):
        return True
    if pa.types.is_float32(typ) or pa.types.is_float64(typ):
        return True
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return True
    return not key and (pa.types.is_binary(typ) or pa.types.is_large_binary(typ))


def _array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


# -- changelogs ----------------------------------------------------------------------------


def last_per_key(table: pa.Table, key: Sequence[str]) -> pa.Table:
    """The last row of each key, in the order those rows came (a vectorized dedupe).

    >>> t = pa.table({"k": [1, 2, 1], "v": ["a", "b", "c"]})
    >>> last_per_key(t, ["k"]).to_pydict()
    {'k': [2, 1], 'v': ['b', 'c']}
    """
    if table.num_rows < 2:
        return table
    index = "__row"
    numbered = table.select(list(key)).append_column(index, pa.array(np.arange(table.num_rows)))
    last = numbered.group_by(list(key), use_threads=False).aggregate([(index, "max")])
    rows = np.sort(last[f"{index}_max"].to_numpy())
    return table if len(rows) == table.num_rows else table.take(pa.array(rows))


def split_changelog(changes: pa.Table, key: Sequence[str]) -> tuple[pa.Table, pa.Table]:
    """``(upserts, deletes)`` of a changelog: the last change per key wins; inserts and
    update-afters are upserted, deletes and update-befores delete (an update-before with
    no update-after is a row that left the result, e.g. through ``HAVING``). A table
    without an ``_op`` column is all inserts. Both results lack the ``_op`` column.

    >>> c = pa.table({"k": [1, 1, 1, 2, 2, 3, 3], "v": [1, 1, 2, 5, 5, 7, 7],
    ...               "_op": pa.array([0, 1, 2, 0, 3, 0, 1], pa.int8())})
    >>> up, dels = split_changelog(c, ["k"])
    >>> up.to_pydict(), dels.to_pydict()
    ({'k': [1], 'v': [2]}, {'k': [2, 3], 'v': [5, 7]})
    """
    if OP not in changes.column_names:
        return last_per_key(changes, key), changes.slice(0, 0)
    ops = pc.cast(changes[OP], pa.int8())
    if ops.null_count:
        raise ValidationError(f"changelog column '{OP}' has {ops.null_count} null value(s)")
    bad = pc.invert(
        pc.is_in(ops, pa.array([INSERT, UPDATE_BEFORE, UPDATE_AFTER, DELETE], pa.int8()))
    )
    if pc.any(bad).as_py():
        found = pc.filter(ops, bad)[0].as_py()
        raise ValidationError(f"changelog column '{OP}': expected 0, 1, 2 or 3, found {found}")
    last = last_per_key(changes, key)
    is_delete = pc.is_in(pc.cast(last[OP], pa.int8()), pa.array([UPDATE_BEFORE, DELETE], pa.int8()))
    data = last.drop_columns([OP])
    return data.filter(pc.invert(is_delete)), data.filter(is_delete)


# -- decimals: the unscaled integer inside a decimal128 ------------------------------------


def _int128_words(arr: pa.Array) -> np.ndarray:
    """The little-endian (low, high) int64 words of a decimal128 array, shape (n, 2)."""
    words = np.frombuffer(arr.buffers()[1], dtype="<i8")
    return words[2 * arr.offset : 2 * (arr.offset + len(arr))].reshape(-1, 2)


def decimal_to_int64(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The unscaled values of a decimal128 of precision <= 18, as int64 (nulls kept).

    >>> import decimal
    >>> decimal_to_int64(pa.array([decimal.Decimal("-1.25"), None], pa.decimal128(5, 2)))
    <pyarrow.lib.Int64Array object at ...>
    [
      -125,
      null
    ]
    """
    arr = _array(column)
    low = _int128_words(arr)[:, 0].copy()
    return pa.array(low, pa.int64(), mask=arr.is_null().to_numpy(zero_copy_only=False))


def decimal_from_int64(column: pa.Array | pa.ChunkedArray, typ: pa.DataType) -> pa.Array:
    """A decimal128 *typ* from its unscaled int64 values (the inverse of the above)."""
    arr = _array(pc.cast(column, pa.int64()))
    values = arr.fill_null(0).to_numpy()
    words = np.empty((len(values), 2), dtype="<i8")
    words[:, 0] = values
    words[:, 1] = values >> 63  # sign extension into the high word
    validity = pc.is_valid(arr).buffers()[1] if arr.null_count else None
    return pa.Array.from_buffers(typ, len(values), [validity, pa.py_buffer(words.tobytes())])


# -- hex text for binary values --------------------------------------------------------------

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UNHEX = np.zeros(256, dtype=np.uint8)
_UNHEX[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.uint8)
_UNHEX[np.frombuffer(b"ABCDEF", dtype=np.uint8)] = np.arange(10, 16, dtype=np.uint8)


def _offsets(arr: pa.Array) -> np.ndarray:
    width = (
        "<i8" if pa.types.is_large_binary(arr.type) or pa.types.is_large_string(arr.type) else "<i4"
    )
    return np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset : arr.offset + len(arr) + 1]


def hex_encode(column: pa.Array | pa.ChunkedArray, prefix: bytes = b"") -> pa.Array:
    """Binary values as lowercase hex strings after *prefix* (PostgreSQL's bytea text
    form is ``\\x…``); nulls kept.

    >>> hex_encode(pa.array([b"\\x00\\xff", None, b""]), b"\\\\x").to_pylist()
    ['\\\\x00ff', None, '\\\\x']
    """
    arr = _array(pc.cast(column, pa.large_binary()))
    offsets = _offsets(arr).astype(np.int64)
    start, stop = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(arr.buffers()[2] or b"", dtype=np.uint8)[start:stop]
    lengths = np.diff(offsets)
    out_len = 2 * lengths + len(prefix)
    out_offsets = np.zeros(len(arr) + 1, dtype=np.int64)
    np.cumsum(out_len, out=out_offsets[1:])
    out = np.empty(int(out_offsets[-1]), dtype=np.uint8)
    # each row: the prefix, then two hex digits per byte
    starts = out_offsets[:-1]
    for i, byte in enumerate(prefix):  # the prefix is a couple of bytes, not rows
        out[starts + i] = byte
    body = np.ones(len(out), dtype=bool)
    for i in range(len(prefix)):
        body[starts + i] = False
    digits = np.empty((len(data), 2), dtype=np.uint8)
    digits[:, 0] = _HEX[data >> 4]
    digits[:, 1] = _HEX[data & 15]
    out[body] = digits.reshape(-1)
    validity = pc.is_valid(arr).buffers()[1] if arr.null_count else None
    result = pa.Array.from_buffers(
        pa.large_string(),
        len(arr),
        [validity, pa.py_buffer(out_offsets.tobytes()), pa.py_buffer(out.tobytes())],
    )
    return pc.cast(result, pa.string())


def hex_decode(column: pa.Array | pa.ChunkedArray, typ: pa.DataType, skip: int = 0) -> pa.Array:
    """Hex strings (after *skip* prefix characters) back to binary values of *typ*."""
    arr = _array(pc.cast(column, pa.large_string()))
    offsets = _offsets(arr).astype(np.int64)
    text = np.frombuffer(arr.buffers()[2] or b"", dtype=np.uint8)
    lengths = np.diff(offsets) - skip
    if arr.null_count:
        lengths = np.where(arr.is_null().to_numpy(zero_copy_only=False), 0, lengths)
    keep = np.zeros(len(text), dtype=bool)
    # mark each row's hex digits: from offset+skip for `lengths` characters
    starts = offsets[:-1] + skip
    marks = np.zeros(len(text) + 1, dtype=np.int64)
    np.add.at(marks, starts[lengths > 0], 1)
    np.add.at(marks, (starts + lengths)[lengths > 0], -1)
    keep = np.cumsum(marks[:-1]) > 0
    digits = _UNHEX[text[keep]].reshape(-1, 2)
    data = (digits[:, 0] << 4) | digits[:, 1]
    out_offsets = np.zeros(len(arr) + 1, dtype=np.int64)
    np.cumsum(lengths // 2, out=out_offsets[1:])
    validity = pc.is_valid(arr).buffers()[1] if arr.null_count else None
    result = pa.Array.from_buffers(
        pa.large_binary(),
        len(arr),
        [
            validity,
            pa.py_buffer(out_offsets.tobytes()),
            pa.py_buffer(data.astype(np.uint8).tobytes()),
        ],
    )
    return pc.cast(result, typ)


# -- order-preserving key bytes ----------------------------------------------------------------

_SIGN = np.uint64(1 << 63)


def _fixed(words: np.ndarray, width: int) -> pa.Array:
    """Rows of *width* big-endian bytes (one row per element of *words*) as binary."""
    data = np.ascontiguousarray(words).tobytes()
    arr = pa.Array.from_buffers(pa.binary(width), len(data) // width, [None, pa.py_buffer(data)])
    return pc.cast(arr, pa.binary())


def _ordered_int(values: np.ndarray) -> pa.Array:
    return _fixed((values.astype(np.int64).view(np.uint64) ^ _SIGN).astype(">u8"), 8)


def _key_component(column: pa.Array, typ: pa.DataType) -> pa.Array:
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        raw = pc.cast(pc.cast(column, pa.string()), pa.binary())
        # 0x00 is escaped as 00 ff and the value ends with 00 01: self-delimiting, and
        # a string sorts before every longer string it is a prefix of
        escaped = pc.replace_substring(raw, b"\x00", b"\x00\xff")
        return pc.binary_join_element_wise(escaped, pa.scalar(b"\x00\x01"), pa.scalar(b""))
    if pa.types.is_boolean(typ):
        return _fixed(pc.cast(column, pa.uint8()).to_numpy(), 1)
    if pa.types.is_floating(typ):
        bits = pc.cast(column, pa.float64()).to_numpy().view(np.uint64)
        flipped = np.where(bits & _SIGN, ~bits, bits | _SIGN)  # negatives reversed
        return _fixed(flipped.astype(">u8"), 8)
    if pa.types.is_decimal128(typ):
        words = _int128_words(column)
        both = np.empty((len(words), 2), dtype=">u8")  # big-endian: high word, then low
        both[:, 0] = words[:, 1].view(np.uint64) ^ _SIGN
        both[:, 1] = words[:, 0].view(np.uint64)
        return _fixed(both, 16)
    if pa.types.is_date32(typ):
        return _ordered_int(pc.cast(column, pa.int32()).to_numpy())
    return _ordered_int(pc.cast(column, pa.int64()).to_numpy())


def order_key(table: pa.Table, columns: Sequence[str]) -> pa.Array:
    """One binary value per row whose byte order is the order of the rows' *columns*
    (for stores that sort by bytes, such as a Redis sorted set). Columns must not be null.

    >>> keys = order_key(pa.table({"a": [2, -1, 2], "b": ["x", "y", ""]}), ["a", "b"])
    >>> sorted(range(3), key=lambda i: keys[i].as_py())
    [1, 2, 0]
    """
    parts = []
    for name in columns:
        column = _array(table[name])
        if column.null_count:
            raise ValidationError(f"key column '{name}' has {column.null_count} null value(s)")
        if not supported(column.type, key=True):
            raise SchemaError(f"key column '{name}' has the unsupported type {column.type}")
        parts.append(_key_component(column, column.type))
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, pa.scalar(b""))


def successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with *prefix* (None:
    there is none, the prefix is all 0xff bytes).

    >>> successor(b"ab"), successor(b"a\\xff"), successor(b"\\xff")
    (b'ac', b'b', None)
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])
