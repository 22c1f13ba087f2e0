"""Forgetting in the files stream jobs leave under the data dir: checkpoints and sink output.

- **Checkpoints** (``<data_dir>/stream/**/checkpoints/<id>/``): a pipeline's *outbox* and
  late rows (``p<k>-out.arrow``, ``p<k>-late.arrow``) are plain rows, rewritten without
  the subject's (``meta.json``'s row count follows). Operator state files have a format
  per operator and are not edited: when one holds an id, :func:`forget_checkpoints`
  reports it, and the job must be reset (its checkpoints removed) to forget it. Older
  checkpoints than the newest (kept as fallbacks) that hold an id are removed whole.
- **Files of the ``filesystem`` sink** (committed ``part-<id>-<n>.json|csv|parquet`` under
  the data dir): rewritten without the subject's rows, keeping their names (part 0 marks
  a committed checkpoint, so an emptied part stays, empty). Headerless CSV has no column
  names, so there a line goes when any field holds an id as a whole word.

Every rewrite goes to a temporary file beside the original, fsynced, renamed over it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from fluvial.log.embedded.durability import fsync_dir

__all__ = ["FileForgetting", "forget_checkpoints", "forget_sink_files"]

Mask = Callable[[pa.Table], pa.Array | pa.ChunkedArray]
_PART = re.compile(r"^part-\d+-\d+\.(json|csv|parquet)$")
_ROWS = re.compile(r"^p(\d+)-(out|late)\.arrow$")


@dataclass
class FileForgetting:
    """Rows removed per file, and what could not be edited."""

    rows: dict[str, int] = field(default_factory=dict)
    untouched: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.forget.tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _hits(mask: Mask, table: pa.Table) -> pa.Array | pa.ChunkedArray:
    return pc.fill_null(mask(table), False)


def _ipc(table: pa.Table) -> bytes:
    """An Arrow IPC *file*, as checkpoints are written."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _checkpoints(data_dir: Path) -> Iterator[Path]:
    stream = data_dir / "stream"
    if stream.exists():
        for meta in sorted(stream.rglob("meta.json")):
            if meta.parent.name.isdigit() and meta.parent.parent.name == "checkpoints":
                yield meta.parent


def forget_checkpoints(
    data_dir: Path, mask: Mask, pattern: re.Pattern[bytes], *, dry_run: bool
) -> FileForgetting:
    """Remove the subject's rows from every checkpoint's outboxes (*mask* selects them);
    report operator state files whose bytes match *pattern*."""
    result = FileForgetting()
    checkpoints = list(_checkpoints(data_dir))
    latest: dict[Path, int] = {}
    for directory in checkpoints:
        root = directory.parent
        latest[root] = max(latest.get(root, -1), int(directory.name))
    for directory in checkpoints:
        if int(directory.name) != latest[directory.parent]:
            # only the newest checkpoint is restored from: an older one that holds the
            # subject anywhere goes whole
            if any(pattern.search(p.read_bytes()) for p in directory.iterdir() if p.is_file()):
                result.removed.append(str(directory))
                if not dry_run:
                    shutil.rmtree(directory)
                    fsync_dir(directory.parent)
            continue
        meta_path = directory / "meta.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        changed = False
        for path in sorted(directory.glob("*.arrow")):
            match = _ROWS.match(path.name)
            if match is None:
                if pattern.search(path.read_bytes()):
                    result.untouched.append(str(path))
                continue
            table = pa.ipc.open_file(pa.py_buffer(path.read_bytes())).read_all()
            hits = _hits(mask, table)
            n = int(pc.sum(hits).as_py() or 0)
            if not n:
                continue
            result.rows[str(path)] = n
            if dry_run:
                continue
            kept = table.filter(pc.invert(hits))
            _replace(path, _ipc(kept))
            if match.group(2) == "out":
                for state in meta.get("pipelines", {}).values():
                    sink = state.get("sink") or {}
                    if sink.get("outbox") == path.name:
                        sink["rows"] = kept.num_rows
                        changed = True
        if changed:
            _replace(meta_path, json.dumps(meta, indent=1).encode())
    return result


def _lines(raw: bytes) -> list[bytes]:
    return [line for line in raw.split(b"\n") if line.strip()]


def _forget_json_lines(path: Path, mask: Mask, *, dry_run: bool) -> int | None:
    """JSON lines: the subject's rows removed as whole lines; None when the file does not
    parse as one row per line."""
    from pyarrow import json as pajson

    raw = path.read_bytes()
    lines = _lines(raw)
    if not lines:
        return 0
    try:
        table = pajson.read_json(pa.py_buffer(raw))
    except (pa.ArrowInvalid, OSError):
        return None
    if table.num_rows != len(lines):
        return None
    hits = _hits(mask, table).to_pylist()
    n = sum(hits)
    if n and not dry_run:
        kept = [line for line, hit in zip(lines, hits, strict=True) if not hit]
        _replace(path, b"".join(line + b"\n" for line in kept))
    return n


def _forget_csv_lines(path: Path, pattern: re.Pattern[bytes], *, dry_run: bool) -> int:
    """Headerless CSV (columns by position, so no names to go by): every line holding an
    id as a whole word goes."""
    lines = _lines(path.read_bytes())
    kept = [line for line in lines if not pattern.search(line)]
    n = len(lines) - len(kept)
    if n and not dry_run:
        _replace(path, b"".join(line + b"\n" for line in kept))
    return n


def forget_sink_files(
    data_dir: Path,
    mask: Mask,
    pattern: re.Pattern[bytes],
    *,
    skip: tuple[Path, ...],
    dry_run: bool,
) -> FileForgetting:
    """Remove the subject's rows from committed ``filesystem`` sink part files under
    *data_dir* (folders in *skip* — the log, the lake — are not looked at)."""
    import pyarrow.parquet as pq

    result = FileForgetting()
    skipped = tuple(p.resolve() for p in skip)
    for path in sorted(data_dir.rglob("part-*")):
        if not _PART.match(path.name) or not path.is_file():
            continue
        if any(path.resolve().is_relative_to(s) for s in skipped):
            continue
        kind = path.suffix
        n: int | None
        if kind == ".parquet":
            table = pq.read_table(path)
            hits = _hits(mask, table)
            n = int(pc.sum(hits).as_py() or 0)
            if n and not dry_run:
                sink = pa.BufferOutputStream()
                pq.write_table(table.filter(pc.invert(hits)), sink)
                _replace(path, bytes(sink.getvalue().to_pybytes()))
        elif kind == ".csv":
            n = _forget_csv_lines(path, pattern, dry_run=dry_run)
        else:
            n = _forget_json_lines(path, mask, dry_run=dry_run)
        if n is None:
            if pattern.search(path.read_bytes()):
                result.untouched.append(str(path))
        elif n:
            result.rows[str(path)] = n
    return result
