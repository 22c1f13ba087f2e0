"""Where a stream job is: a small status file the runtime rewrites, read by ``stream status``.

The runtime writes ``<data_dir>/stream/<job>/status.json`` about every second (and at
every checkpoint and at the end): its process id, state (``running`` | ``finished`` |
``stopped`` | ``failed``) and per pipeline the watermark, rows in and out, late rows and
the operator state size of the last checkpoint. :func:`job_status` combines it with the
newest checkpoint's metadata; a ``running`` job whose process is gone is reported as
``dead`` (it was killed: resume it with ``--from checkpoint``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fluvial.stream.checkpoint import CheckpointStore, now_ms

__all__ = ["STATUS_FILE", "StatusWriter", "job_status", "list_jobs"]

STATUS_FILE = "status.json"


class StatusWriter:
    """Rewrites a job's status file (atomically: a reader never sees half a file)."""

    def __init__(self, job_dir: Path, job: str) -> None:
        self.path = job_dir / STATUS_FILE
        self.job = job
        self.started_ms = now_ms()

    def write(
        self,
        state: str,
        pipelines: Sequence[dict[str, Any]],
        checkpoint: dict[str, Any] | None,
    ) -> None:
        """Record *state*, the pipelines' counters and the last checkpoint (id, time)."""
        doc = {
            "job": self.job,
            "pid": os.getpid(),
            "state": state,
            "started_ms": self.started_ms,
            "updated_ms": now_ms(),
            "checkpoint": checkpoint,
            "pipelines": list(pipelines),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{STATUS_FILE}.tmp")
        # not fsynced: the status is advisory and rewritten every second
        tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def list_jobs(stream_dir: Path) -> list[str]:
    """Jobs with a status file or checkpoints under ``<data_dir>/stream``."""
    if not stream_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in stream_dir.iterdir()
        if p.is_dir() and ((p / STATUS_FILE).is_file() or (p / "checkpoints").is_dir())
    )


def job_status(job_dir: Path, now: int | None = None) -> list[dict[str, Any]]:
    """One row per pipeline of the job in *job_dir*: state, watermark, counters and the
    last checkpoint (id, age in seconds, operator state size in bytes)."""
    now = now_ms() if now is None else now
    status: dict[str, Any] = {}
    try:
        status = json.loads((job_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass  # killed before its first status write, or never run with this version
    store = CheckpointStore(job_dir / "checkpoints")
    latest = store.latest()
    meta = store.meta(latest) if latest is not None else {"pipelines": {}}
    state = status.get("state", "unknown")
    if state == "running" and not _alive(int(status.get("pid", -1))):
        state = "dead"
    from_status = {p["name"]: p for p in status.get("pipelines", [])}
    names = list(from_status) + [n for n in meta["pipelines"] if n not in from_status]
    rows = []
    for name in names:
        live = from_status.get(name, {})
        ckpt = meta["pipelines"].get(name, {})
        counters = ckpt.get("counters", {})
        watermark = live.get("watermark_ms", ckpt.get("watermark"))
        rows.append(
            {
                "job": job_dir.name,
                "pipeline": name,
                "sink": live.get("sink"),
                "state": state,
                "pid": status.get("pid"),
                "watermark_ms": watermark,
                "rows_in": live.get("rows_in", counters.get("rows_in")),
                "rows_out": live.get("rows_out", counters.get("rows_out")),
                "late_rows": live.get("late_rows", counters.get("late_rows")),
                "checkpoint_id": latest,
                "checkpoint_age_s": (
                    round((now - int(meta["time_ms"])) / 1000, 3) if latest is not None else None
                ),
                "state_bytes": ckpt.get("state_bytes"),
                "updated_age_s": (
                    round((now - int(status["updated_ms"])) / 1000, 3)
                    if "updated_ms" in status
                    else None
                ),
            }
        )
    return rows
