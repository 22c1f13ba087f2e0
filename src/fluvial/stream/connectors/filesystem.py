"""``'connector' = 'filesystem'``: files in a directory as a bounded source or a sink.

Options: ``'path'`` (a file, or a directory read recursively in name order, skipping
names that start with ``.`` or ``_``), ``'format'`` (``json`` | ``csv`` | ``parquet``
and their options, see :mod:`~fluvial.stream.connectors.formats`), and for the sink
``'sink.rolling-policy.file-size'`` (bytes of Arrow data per part file, default 128 MB).

The source has one split per file (its path relative to ``'path'``); a position is the
number of rows already produced from it, so a restore resumes mid-file.

The sink writes like Flink's: rows go to hidden in-progress files
(``.part-<uuid>-<n>.inprogress``) and ``commit(id)`` renames them to
``part-<id>-<n>.<ext>`` and fsyncs the directory. Part 0 is renamed last, so its
existence means the commit is complete: a repeated id with ``part-<id>-0`` present is
skipped, and a commit interrupted half-way is redone whole (the renames overwrite).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from fluvial.stream.connectors.base import ConnectorContext, Sink, Source, SourceBatch
from fluvial.stream.connectors.formats import FORMATS, Format, make_format
from fluvial.stream.connectors.options import Options

if TYPE_CHECKING:
    from fluvial.stream.sql.ast import CreateTable

__all__ = ["FileSink", "FileSource", "list_files"]

FORMAT_OPTIONS = tuple(o for f in FORMATS.values() for o in f.options)
OPTIONAL = ("sink.rolling-policy.file-size", "partition.default-name", *FORMAT_OPTIONS)
DEFAULT_FILE_SIZE = 128 * 1024 * 1024


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def list_files(root: Path) -> list[Path]:
    """*root* itself if a file, else its visible files, recursively, in name order."""
    if root.is_file():
        return [root]
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        files.extend(Path(dirpath, f) for f in filenames if not _hidden(f))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _resolve(opts: Options, context: ConnectorContext) -> Path:
    path = Path(opts.require("path"))
    if not path.is_absolute() and context.project is not None:
        path = context.project.root / path
    return path


class FileSource(Source):
    """Reads every file under ``'path'`` once, split by file."""

    bounded: ClassVar[bool] = True
    required_options: ClassVar[tuple[str, ...]] = ("path", "format")
    optional_options: ClassVar[tuple[str, ...]] = OPTIONAL

    def __init__(
        self, table: CreateTable, options: Mapping[str, str], context: ConnectorContext
    ) -> None:
        super().__init__(table, options, context)
        self.opts = Options(table, options)
        self.root = _resolve(self.opts, context)
        self.format: Format = make_format(self.schema, self.opts)
        self._files: dict[str, Path] = {}
        self._done: dict[str, int] = {}  # split -> rows produced
        self._finished: set[str] = set()
        self._current: tuple[str, Iterator[pa.Table]] | None = None

    def open(self, positions: Mapping[str, Any] | None = None) -> None:
        if not self.root.exists():
            raise self.opts.error(
                f"'path' {str(self.root)!r}: expected a file or a directory, found nothing"
            )
        base = self.root if self.root.is_dir() else self.root.parent
        self._files = {p.relative_to(base).as_posix(): p for p in list_files(self.root)}
        positions = positions or {}
        self._done = {split: int(positions.get(split, 0)) for split in self._files}

    def splits(self) -> list[str]:
        return list(self._files)

    def positions(self) -> dict[str, Any]:
        return dict(self._done)

    def poll(self, max_rows: int = 65_536, timeout: float = 0.0) -> list[SourceBatch]:
        while True:
            if self._current is None:
                todo = [s for s in self._files if s not in self._finished]
                if not todo:
                    return []
                split = todo[0]
                self._current = (
                    split,
                    self.format.read(self._files[split], self._done[split], max_rows),
                )
            split, batches = self._current
            table = next(batches, None)
            if table is None:
                self._finished.add(split)
                self._current = None
                continue
            if table.num_rows == 0:
                continue
            self._done[split] += table.num_rows
            return [SourceBatch(split, table, self._done[split])]

    def finished(self) -> bool:
        return len(self._finished) == len(self._files)

    def close(self) -> None:
        self._current = None


#: characters Flink (Hive's ``escapePathName``) writes as ``%XX`` in partition folders
_ESCAPED = frozenset("\"#%'*/:=?\\\x7f{[]^")
#: Flink's folder name for a NULL or empty partition value
DEFAULT_PARTITION = "__DEFAULT_PARTITION__"


class FileSink(Sink):
    """Writes part files into the directory ``'path'``, made visible per checkpoint."""

    required_options: ClassVar[tuple[str, ...]] = ("path", "format")
    optional_options: ClassVar[tuple[str, ...]] = OPTIONAL

    def __init__(
        self, table: CreateTable, options: Mapping[str, str], context: ConnectorContext
    ) -> None:
        super().__init__(table, options, context)
        self.opts = Options(table, options)
        self.root = _resolve(self.opts, context)
        #: ``PARTITIONED BY``: rows go to ``col=value/…`` folders, without those columns
        self.partition_by = list(table.partition_by)
        data = pa.schema([f for f in self.schema if f.name not in self.partition_by])
        self.format: Format = make_format(data, self.opts)
        self.default_partition = self.opts.get("partition.default-name") or DEFAULT_PARTITION
        self.file_size = self.opts.integer("sink.rolling-policy.file-size", DEFAULT_FILE_SIZE)
        self._id = uuid.uuid4().hex
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._staged: list[Path] = []
        self._count = 0

    def open(self, last_committed: int | None = None) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise self.opts.error(
                f"'path' {str(self.root)!r}: a filesystem sink writes into a directory, "
                "found a file"
            )
        self.root.mkdir(parents=True, exist_ok=True)

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self._buffer.append(table)
        self._buffered += table.nbytes
        if self.file_size is not None and self._buffered >= self.file_size:
            self._roll()

    def _roll(self) -> None:
        """Write the buffered rows to new in-progress files (fsynced): one file, or one per
        partition (vectorized: one Polars ``partition_by``)."""
        if not self._buffer:
            return
        rows = pa.concat_tables(self._buffer)
        self._buffer, self._buffered = [], 0
        if not self.partition_by:
            self._write(self.root, rows)
            return
        import polars as pl

        frame = pl.from_arrow(rows)
        assert isinstance(frame, pl.DataFrame)
        for part in frame.partition_by(self.partition_by, maintain_order=True):
            first = part.row(0, named=True)
            folder = self.root.joinpath(
                *(f"{c}={self._value(first[c])}" for c in self.partition_by)
            )
            folder.mkdir(parents=True, exist_ok=True)
            data = part.drop(self.partition_by).to_arrow()
            self._write(folder, data.cast(self.format.schema))

    def _value(self, value: object) -> str:
        """A partition folder's value (Flink: the value's string, the default name if NULL)."""
        if value is None or value == "":
            return self.default_partition
        return "".join(
            f"%{ord(c):02X}" if c in _ESCAPED or ord(c) < 0x20 else c for c in str(value)
        )

    def _write(self, folder: Path, rows: pa.Table) -> None:
        path = folder / f".part-{self._id}-{self._count}.inprogress"
        self._count += 1
        self.format.write(rows, path)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._staged.append(path)

    def _final(self, folder: Path, checkpoint_id: int, n: int) -> Path:
        return folder / f"part-{checkpoint_id}-{n}.{self.format.extension}"

    def _committed(self, checkpoint_id: int) -> bool:
        name = f"part-{checkpoint_id}-0.{self.format.extension}"
        if not self.partition_by:
            return (self.root / name).exists()
        return any(
            True for _ in self.root.glob("/".join(["*"] * len(self.partition_by)) + "/" + name)
        )

    def commit(self, checkpoint_id: int) -> None:
        if self._committed(checkpoint_id):  # committed before: drop the replay
            self._discard()
            return
        self._roll()
        staged, self._staged = self._staged, []
        # part 0 last: its presence marks a complete commit
        for n in reversed(range(len(staged))):
            os.replace(staged[n], self._final(staged[n].parent, checkpoint_id, n))
        for folder in {p.parent for p in staged}:
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _discard(self) -> None:
        for path in self._staged:
            path.unlink(missing_ok=True)
        self._staged, self._buffer, self._buffered = [], [], 0

    def close(self) -> None:
        self._discard()
