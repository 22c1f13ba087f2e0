"""Checkpoints of a stream job: a versioned on-disk format, written atomically.

A checkpoint is a directory ``<root>/<id>/``::

    meta.json          format version, id, time, and per pipeline: source positions,
                       the pipeline watermark, each split's watermark, each window
                       operator's watermark, counters, the sink's pending commit id and
                       the names of the files below
    p<k>-op<i>.arrow   operator i's state of pipeline k (the operator's Arrow IPC bytes)
    p<k>-out.arrow     pipeline k's *outbox*: the rows it emitted since the previous
                       checkpoint, which the sink commits under this id (Arrow IPC)
    p<k>-late.arrow    the rows its window operators dropped as late since then, for the
                       late-events side output (``'fluvial.late-events.topic'``), if any

It is written into ``.tmp-<id>`` (every file fsynced, then the folder), renamed to
``<id>`` and the parent fsynced: a checkpoint directory exists completely or not at all.
The outbox makes the sink's staging durable *before* the commit, so a commit interrupted
by a crash can be redone from the checkpoint (sinks skip ids they already committed).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from fluvial.errors import PipelineError

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointStore",
    "PipelineState",
    "fsync_dir",
    "now_ms",
]

#: bump when the layout changes; a reader refuses other versions by name
FORMAT_VERSION = 1
KEEP = 3


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@dataclass(frozen=True)
class PipelineState:
    """One pipeline's part of a checkpoint."""

    #: split -> position, as the source reported it (JSON values)
    positions: dict[str, Any]
    #: the pipeline watermark (epoch ms; the minimum long before any row)
    watermark: int
    #: split -> its own watermark (None before its first row)
    split_watermarks: dict[str, int | None]
    #: step index -> the watermark that window operator has seen
    operator_watermarks: dict[int, int]
    #: step index -> the operator's snapshot (Arrow IPC bytes)
    operators: dict[int, bytes]
    #: the rows to commit to the sink under this checkpoint's id (None: none)
    outbox: pa.Table | None
    #: the late rows to commit to the late-events side output under this id (None: none)
    late_outbox: pa.Table | None = None
    #: rows_in, rows_out, late_rows so far
    counters: dict[str, int] = field(default_factory=dict)
    #: the watermarks of a pipeline's sources after the first (joins, unions), by index
    feed_watermarks: dict[str, int] = field(default_factory=dict)

    @property
    def state_bytes(self) -> int:
        """The size of the operator state."""
        return sum(len(b) for b in self.operators.values())


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint of a job."""

    id: int
    time_ms: int
    pipelines: dict[str, PipelineState]


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


class CheckpointStore:
    """The checkpoints of one job under *root* (the newest :data:`KEEP` are kept)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ids(self) -> list[int]:
        """The ids of complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(int(p.name) for p in self.root.iterdir() if p.name.isdigit())

    def latest(self) -> int | None:
        """The newest complete checkpoint's id, or None."""
        ids = self.ids()
        return ids[-1] if ids else None

    def write(self, checkpoint: Checkpoint) -> Path:
        """Write *checkpoint* durably and atomically; drop checkpoints beyond the newest few."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{checkpoint.id}"
        shutil.rmtree(tmp, ignore_errors=True)  # a crashed attempt at this id
        tmp.mkdir()
        pipelines: dict[str, Any] = {}
        for k, (name, state) in enumerate(checkpoint.pipelines.items()):
            operators = {}
            for i, data in state.operators.items():
                operators[str(i)] = f"p{k}-op{i}.arrow"
                _write_file(tmp / operators[str(i)], data)
            outbox = None
            if state.outbox is not None and state.outbox.num_rows:
                outbox = f"p{k}-out.arrow"
                _write_file(tmp / outbox, _ipc_bytes(state.outbox))
            late = None
            if state.late_outbox is not None and state.late_outbox.num_rows:
                late = f"p{k}-late.arrow"
                _write_file(tmp / late, _ipc_bytes(state.late_outbox))
            pipelines[name] = {
                "positions": state.positions,
                "watermark": state.watermark,
                "split_watermarks": state.split_watermarks,
                "operator_watermarks": {str(i): w for i, w in state.operator_watermarks.items()},
                "operators": operators,
                "state_bytes": state.state_bytes,
                # the sink commits this checkpoint's id; its rows are the outbox
                "sink": {
                    "commit_id": checkpoint.id,
                    "outbox": outbox,
                    "rows": 0 if state.outbox is None else state.outbox.num_rows,
                    "late": late,
                },
                "counters": state.counters,
                "feed_watermarks": state.feed_watermarks,
            }
        meta = {
            "format": FORMAT_VERSION,
            "id": checkpoint.id,
            "time_ms": checkpoint.time_ms,
            "pipelines": pipelines,
        }
        _write_file(tmp / "meta.json", json.dumps(meta, indent=1).encode())
        fsync_dir(tmp)
        final = self.root / str(checkpoint.id)
        if final.exists():  # an id reused after a crash that preceded its commit: replace
            self._remove(final)
        os.replace(tmp, final)
        fsync_dir(self.root)
        for old in self.ids()[:-KEEP]:
            self._remove(self.root / str(old))
        return final

    def _remove(self, path: Path) -> None:
        # rename first, so a crash mid-delete never leaves a partial "<id>" directory
        doomed = path.with_name(f".del-{path.name}")
        shutil.rmtree(doomed, ignore_errors=True)
        os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def meta(self, checkpoint_id: int) -> dict[str, Any]:
        """The ``meta.json`` of a checkpoint (format checked)."""
        path = self.root / str(checkpoint_id) / "meta.json"
        try:
            meta: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PipelineError(f"checkpoint {checkpoint_id}: cannot read {path}: {exc}") from exc
        if meta.get("format") != FORMAT_VERSION:
            raise PipelineError(
                f"checkpoint {checkpoint_id} in {self.root}: expected checkpoint format "
                f"{FORMAT_VERSION}, found {meta.get('format')!r}"
            )
        return meta

    def read(self, checkpoint_id: int) -> Checkpoint:
        """Load a complete checkpoint."""
        meta = self.meta(checkpoint_id)
        folder = self.root / str(checkpoint_id)
        pipelines = {}
        try:
            for name, p in meta["pipelines"].items():
                outbox = None
                if p["sink"]["outbox"]:
                    # memory-mapped: the rows are read once, when the sink writes them
                    source = pa.memory_map(str(folder / p["sink"]["outbox"]))
                    outbox = ipc.open_file(source).read_all()
                late = None
                if p["sink"].get("late"):
                    late = ipc.open_file(pa.memory_map(str(folder / p["sink"]["late"]))).read_all()
                pipelines[name] = PipelineState(
                    positions=dict(p["positions"]),
                    watermark=int(p["watermark"]),
                    split_watermarks=dict(p["split_watermarks"]),
                    operator_watermarks={
                        int(i): int(w) for i, w in p["operator_watermarks"].items()
                    },
                    operators={
                        int(i): (folder / f).read_bytes() for i, f in p["operators"].items()
                    },
                    outbox=outbox,
                    late_outbox=late,
                    counters={k: int(v) for k, v in p.get("counters", {}).items()},
                    feed_watermarks={k: int(v) for k, v in p.get("feed_watermarks", {}).items()},
                )
        except (OSError, KeyError, TypeError, ValueError, pa.ArrowInvalid) as exc:
            raise PipelineError(f"checkpoint {checkpoint_id} in {self.root}: {exc}") from exc
        return Checkpoint(int(meta["id"]), int(meta["time_ms"]), pipelines)


def now_ms() -> int:
    """Wall-clock epoch milliseconds (checkpoint and status times)."""
    return int(time.time() * 1000)
