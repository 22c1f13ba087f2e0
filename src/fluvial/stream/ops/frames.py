"""Snapshots of the keyed operators' state: one Polars frame and the input schema, as an
Arrow IPC stream (what checkpoints store for GROUP BY, deduplication and Top-N).

>>> data = dump_frame(pl.DataFrame({"k": ["a"], "n": [1]}), pa.schema([("k", pa.string())]))
>>> frame, schema = load_frame(data)
>>> frame.to_dicts(), schema.names
([{'k': 'a', 'n': 1}], ['k'])
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

__all__ = ["dump_frame", "load_frame"]

_SCHEMA = b"fluvial.input_schema"


def dump_frame(frame: pl.DataFrame | None, schema: pa.Schema | None) -> bytes:
    """*frame* (None: empty) and the operator's input *schema* as Arrow IPC bytes."""
    table = (frame if frame is not None else pl.DataFrame()).to_arrow()
    meta = {_SCHEMA: schema.serialize().to_pybytes()} if schema is not None else {}
    table = table.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def load_frame(data: bytes) -> tuple[pl.DataFrame | None, pa.Schema | None]:
    """The frame (None when empty) and input schema of :func:`dump_frame`'s bytes."""
    table = pa.ipc.open_stream(data).read_all()
    meta = table.schema.metadata or {}
    schema = pa.ipc.read_schema(pa.py_buffer(meta[_SCHEMA])) if _SCHEMA in meta else None
    frame = pl.from_arrow(table.replace_schema_metadata(None))
    assert isinstance(frame, pl.DataFrame)
    return (frame if frame.height else None), schema
