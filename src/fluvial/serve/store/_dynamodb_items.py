"""DynamoDB items for the DynamoDB store: attribute values, the head, staged chunks.

Pure functions over the low-level item dicts boto3 sends and receives (``{"S": …}``,
``{"B": …}``, ``{"N": …}``); the protocol that uses them is described in
:mod:`fluvial.serve.store.dynamodb`.

>>> items = [{"s": _b(b"k1"), "r": _s('{"v":1}'), "e": _n(1500)}]
>>> staged = _unpack(_pack(items, [b"k0"]))
>>> sorted(staged), staged[b"k0"]["d"], staged[b"k1"]["expires_at"]
([b'k0', b'k1'], {'BOOL': True}, {'N': '2'})
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["CHUNK_BYTES"]

CHUNK_BYTES = 300_000  # a staged chunk's rows (an item holds at most 400 KB)


def _b(value: bytes) -> dict[str, bytes]:
    return {"B": value}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


class _Head:
    """A table's head item: how many writes committed, and the one pending, if any."""

    def __init__(self, item: dict[str, Any] | None) -> None:
        item = item or {}
        self.commits = int(item["c"]["N"]) if "c" in item else 0
        self.pending: str | None = item["w"]["S"] if "w" in item else None


def _pack(items: list[dict[str, Any]], gone: list[bytes]) -> list[bytes]:
    """A write's rows and deleted keys as Arrow IPC chunks of at most ~300 KB each (an
    item holds 400 KB), so that staging a write takes a few items, not one per row."""
    keys = [bytes(item["s"]["B"]) for item in items] + gone
    rows = [item["r"]["S"] for item in items] + [None] * len(gone)
    expires = items[0]["e"]["N"] if items and "e" in items[0] else None
    table = pa.table(
        {
            "s": pa.array(keys, pa.binary()),
            "r": pa.array(rows, pa.string()),
            "e": pa.array([None if r is None else expires for r in rows], pa.string()),
        }
    )
    sizes = np.cumsum(pc.binary_length(table["r"]).fill_null(0).to_numpy() + 64)
    cuts = np.searchsorted(sizes, np.arange(CHUNK_BYTES, sizes[-1] + CHUNK_BYTES, CHUNK_BYTES))
    chunks, start = [], 0
    for cut in [*cuts.tolist(), table.num_rows]:
        if cut > start:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table.slice(start, cut - start))
            chunks.append(sink.getvalue().to_pybytes())
            start = cut
    return chunks


def _unpack(chunks: list[bytes]) -> dict[bytes, dict[str, Any]]:
    """The items :func:`_pack` packed, by key bytes (a delete has ``d``)."""
    staged: dict[bytes, dict[str, Any]] = {}
    for chunk in chunks:
        table = pa.ipc.open_stream(chunk).read_all()
        for key, row, expires in zip(
            table["s"].to_pylist(), table["r"].to_pylist(), table["e"].to_pylist(), strict=True
        ):
            item: dict[str, Any] = {"s": _b(key)}
            if row is None:
                item["d"] = {"BOOL": True}
            else:
                item["r"] = _s(row)
                if expires is not None:
                    item["e"] = {"N": expires}
                    item["expires_at"] = _n(math.ceil(int(expires) / 1000))
            staged[key] = item
    return staged


def _overlay(
    staged: dict[bytes, dict[str, Any]],
    rows: list[dict[str, Any]],
    bounds: tuple[bytes | None, bytes | None],
    now_ms: int,
) -> list[dict[str, Any]]:
    """*rows* with a committed but not yet rolled-forward write laid over them (its rows
    with key bytes in ``[lo, hi)``), in key order."""
    lo, hi = bounds
    merged = {bytes(item["s"]["B"]): item for item in rows}
    for key, item in staged.items():
        if (lo is None or key >= lo) and (hi is None or key < hi):
            merged[key] = item
    return [item for _, item in sorted(merged.items()) if "d" not in item and _live(item, now_ms)]


def _code(exc: Exception) -> str:
    response: dict[str, Any] = getattr(exc, "response", {}) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _live(item: dict[str, Any], now_ms: int) -> bool:
    return "e" not in item or int(item["e"]["N"]) > now_ms
