"""Lake maintenance: compaction, snapshot expiry, orphan removal and retention.

What pyiceberg leaves to its users, done so that readers and writers can keep running:

- :func:`compact` bin-packs a partition's small data files into files near a target size
  and swaps exactly those files in ONE overwrite commit. Rows appended meanwhile by another
  writer stay (the commit is rebased on the newest snapshot), and old files are left on
  disk, so a reader holding an older snapshot keeps reading.
- :func:`expire_snapshots` forgets old snapshots and deletes the files that no remaining
  snapshot references. A query that started before *older_than* may lose its files: pick
  *older_than* longer than the longest query.
- :func:`remove_orphans` deletes files in the table's folder that no metadata references
  (left by crashed writers), once they are older than a safety margin.
- :func:`retain` deletes rows older than a limit by the table's time column: whole files
  (whole partitions) where they lie entirely before the cutoff, a rewrite elsewhere.

Every change is an Iceberg transaction retried (refresh, re-plan, commit) when a concurrent
commit wins the race; after a bounded number of attempts :class:`CommitConflictError`.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

from fluvial.errors import CommitConflictError, NotFoundError, UsageError, did_you_mean

if TYPE_CHECKING:
    from pyiceberg.manifest import DataFile, ManifestFile
    from pyiceberg.table import Table
    from pyiceberg.table.metadata import TableMetadata

__all__ = [
    "CompactionResult",
    "ExpiryResult",
    "MiB",
    "RetentionResult",
    "commit_with_retry",
    "compact",
    "expire_snapshots",
    "referenced_files",
    "remove_orphans",
    "retain",
    "table_name",
    "time_column",
]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: snapshot summary key naming the maintenance operation that produced a snapshot
OPERATION_KEY = "fluvial.maintenance"

T = TypeVar("T")


def table_name(table: Table) -> str:
    """``namespace.table`` of a pyiceberg table."""
    return ".".join(table.name()[-2:])


def commit_with_retry(
    table: Table, attempt: Callable[[Table], T], *, what: str, attempts: int = 10
) -> T:
    """Run ``attempt(table)``; on a lost commit race refresh the table and run it again.

    *attempt* must plan from the table it is given (it is refreshed between attempts), so
    that a retry never commits a plan made against an outdated snapshot.

    Raises:
        CommitConflictError: every attempt lost to a concurrent commit.
    """
    from pyiceberg.exceptions import CommitFailedException, ValidationException

    last: Exception | None = None
    for n in range(attempts):
        try:
            return attempt(table)
        except (CommitFailedException, ValidationException) as exc:
            last = exc
            log.info("%s on %s lost a commit race (%s); retrying", what, table_name(table), exc)
            time.sleep(min(0.02 * 2**n, 1.0) * (1 + random.random()))
            table.refresh()
    raise CommitConflictError(
        f"{what} on '{table_name(table)}' conflicted with concurrent commits "
        f"{attempts} times; last: {last}"
    ) from last


# ---------------------------------------------------------------- compaction


@dataclass(frozen=True)
class CompactionResult:
    """What :func:`compact` did."""

    table: str
    snapshot_id: int | None = None
    rewritten_files: int = 0
    rewritten_bytes: int = 0
    added_files: int = 0
    added_bytes: int = 0
    rows: int = 0
    partitions: int = 0
    attempts: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return asdict(self)


@dataclass
class _Group:
    """A bin of small files of one partition and, once written, its replacement."""

    partition: Any
    files: list[DataFile]
    written: list[DataFile] = field(default_factory=list)
    rows: int = 0


def _bins(files: list[DataFile], target: int, min_inputs: int) -> list[list[DataFile]]:
    """First-fit-decreasing bins of at most *target* bytes, keeping bins worth rewriting."""
    bins: list[list[DataFile]] = []
    room: list[int] = []
    for f in sorted(files, key=lambda f: f.file_size_in_bytes, reverse=True):
        size = f.file_size_in_bytes
        for i, free in enumerate(room):
            if size <= free:
                bins[i].append(f)
                room[i] -= size
                break
        else:
            bins.append([f])
            room.append(target - size)
    return [b for b in bins if len(b) >= min_inputs]


def _plan_compaction(
    table: Table, target: int, small: int, min_inputs: int, max_files: int | None
) -> list[_Group]:
    from pyiceberg.manifest import FileFormat

    spec_id = table.spec().spec_id
    by_partition: dict[Any, list[DataFile]] = {}
    for task in table.scan().plan_files():
        f = task.file
        if task.delete_files or f.spec_id != spec_id or f.file_format != FileFormat.PARQUET:
            continue  # files with row deletes or from an old spec are left as they are
        if f.file_size_in_bytes < small:
            by_partition.setdefault(f.partition, []).append(f)
    groups = [
        _Group(partition, b)
        for partition, files in by_partition.items()
        for b in _bins(files, target, min_inputs)
    ]
    if max_files is not None:
        kept: list[_Group] = []
        budget = max_files
        for g in groups:
            if len(g.files) <= budget:
                kept.append(g)
                budget -= len(g.files)
        groups = kept
    return groups


def _write_group(table: Table, group: _Group) -> None:
    """Read a bin's files with pyarrow and write them back as one file (sorted if declared)."""
    import uuid

    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan, write_file
    from pyiceberg.partitioning import PartitionKey
    from pyiceberg.table import FileScanTask, WriteTask

    metadata = table.metadata
    schema = metadata.schema()
    data = ArrowScan(metadata, table.io, schema, AlwaysTrue()).to_table(
        [FileScanTask(f) for f in group.files]
    )
    order = metadata.sort_order()
    keys = [
        (
            schema.find_column_name(f.source_id),
            "ascending" if f.direction.value == "asc" else "descending",
        )
        for f in order.fields
        if str(f.transform) == "identity"
    ]
    if keys and data.num_rows:
        data = data.sort_by([(k, d) for k, d in keys if k is not None])
    spec = metadata.spec()
    key: PartitionKey | None = None
    if not spec.is_unpartitioned():
        key = PartitionKey(field_values=[], partition_spec=spec, schema=schema)
        key.__dict__["partition"] = group.partition  # the bin's partition, already transformed
    group.rows = data.num_rows
    if not data.num_rows:  # only empty files: the swap just removes them
        return
    task = WriteTask(
        write_uuid=uuid.uuid4(),
        task_id=0,
        schema=schema,
        record_batches=data.combine_chunks().to_batches(),
        partition_key=key,
    )
    group.written = list(write_file(table.io, metadata, iter([task])))


def _live_paths(table: Table) -> set[str]:
    return {task.file.file_path for task in table.scan().plan_files()}


def compact(
    table: Table,
    *,
    target_file_size: int = 128 * MiB,
    min_input_files: int = 5,
    small_file_ratio: float = 0.75,
    max_files: int | None = None,
    attempts: int = 10,
) -> CompactionResult:
    """Bin-pack each partition's small data files into files near *target_file_size*.

    A file is small below ``small_file_ratio * target_file_size`` bytes; a bin is rewritten
    when it holds at least *min_input_files* files. Every bin is read with pyarrow and
    written as one new file; then ONE overwrite commit removes exactly the bins' files and
    adds the new ones. If another writer commits first, the swap is rebased on its snapshot
    (its rows stay); a bin whose files someone else removed meanwhile is dropped. The old
    files stay on disk for readers of older snapshots until :func:`expire_snapshots`.

    Args:
        table: the table to compact.
        target_file_size: the size to pack towards, in bytes.
        min_input_files: rewrite only bins of at least this many files.
        small_file_ratio: files at least this fraction of the target are left alone.
        max_files: rewrite at most this many input files in this run (None: all).
        attempts: commit attempts before :class:`CommitConflictError`.
    """
    if target_file_size <= 0 or min_input_files < 1:
        raise UsageError(
            f"expected target_file_size > 0 and min_input_files >= 1, found "
            f"{target_file_size} and {min_input_files}"
        )
    started = time.perf_counter()
    table.refresh()
    name = table_name(table)
    if table.current_snapshot() is None:
        return CompactionResult(name)
    small = int(target_file_size * small_file_ratio)
    groups = _plan_compaction(table, target_file_size, small, min_input_files, max_files)
    if not groups:
        return CompactionResult(name, table.current_snapshot().snapshot_id)  # type: ignore[union-attr]
    for group in groups:
        _write_group(table, group)

    tries = 0

    def swap(t: Table) -> int | None:
        nonlocal groups, tries
        tries += 1
        if tries > 1:  # rebased: drop bins whose inputs a concurrent commit removed
            live = _live_paths(t)
            stale = [g for g in groups if any(f.file_path not in live for f in g.files)]
            _delete_quietly(t, [f.file_path for g in stale for f in g.written])
            groups = [g for g in groups if g not in stale]
            if not groups:
                return None
        tx = t.transaction()
        with tx.update_snapshot(snapshot_properties={OPERATION_KEY: "compact"}).overwrite() as ow:
            # A rewrite conflicts only with the removal of its own input files, which the
            # overwrite checks when it is rebased ("missing required files to delete"). The
            # default serializable check would also refuse any concurrent append, so a busy
            # table could never be compacted.
            setattr(ow, "_validate_concurrency", lambda: None)  # noqa: B010
            for g in groups:
                for f in g.files:
                    ow.delete_data_file(f)
                for f in g.written:
                    ow.append_data_file(f)
        tx.commit_transaction()
        snap = t.current_snapshot()
        return snap.snapshot_id if snap else None

    try:
        snapshot_id = commit_with_retry(table, swap, what="compaction", attempts=attempts)
    except Exception:
        _delete_quietly(table, [f.file_path for g in groups for f in g.written])
        raise
    return CompactionResult(
        table=name,
        snapshot_id=snapshot_id,
        rewritten_files=sum(len(g.files) for g in groups),
        rewritten_bytes=sum(f.file_size_in_bytes for g in groups for f in g.files),
        added_files=sum(len(g.written) for g in groups),
        added_bytes=sum(f.file_size_in_bytes for g in groups for f in g.written),
        rows=sum(g.rows for g in groups),
        partitions=len({repr(g.partition) for g in groups}),
        attempts=tries,
        seconds=round(time.perf_counter() - started, 3),
    )


def _delete_quietly(table: Table, paths: Iterable[str]) -> int:
    n = 0
    for path in paths:
        try:
            table.io.delete(path)
            n += 1
        except FileNotFoundError:
            pass
        except OSError as exc:  # a file left behind is an orphan, not a failure
            log.warning("could not delete %s: %s", path, exc)
    return n


# ---------------------------------------------------------------- references


class _References:
    """The files a set of snapshots references; each manifest is read once."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._entries: dict[str, list[tuple[str, bool, int]]] = {}

    def manifests(self, metadata: TableMetadata, snapshot_id: int) -> list[ManifestFile]:
        snap = metadata.snapshot_by_id(snapshot_id)
        return [] if snap is None else list(snap.manifests(self.table.io))

    def files(self, manifest: ManifestFile) -> list[tuple[str, bool, int]]:
        """(path, live, bytes) of every entry in a manifest."""
        from pyiceberg.manifest import ManifestEntryStatus

        path = manifest.manifest_path
        if path not in self._entries:
            self._entries[path] = [
                (
                    e.data_file.file_path,
                    e.status != ManifestEntryStatus.DELETED,
                    e.data_file.file_size_in_bytes,
                )
                for e in manifest.fetch_manifest_entry(self.table.io, discard_deleted=False)
            ]
        return self._entries[path]


def _norm(uri: str) -> str:
    """A path comparable across ``file:///x``, ``file:/x`` and ``/x`` spellings."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return parsed.path
    return f"{parsed.netloc}{parsed.path}"


def _within(uri: str, location: str) -> bool:
    return _norm(uri).startswith(_norm(location).rstrip("/") + "/")


# ---------------------------------------------------------------- snapshot expiry


@dataclass(frozen=True)
class ExpiryResult:
    """What :func:`expire_snapshots` did."""

    table: str
    expired_snapshots: list[int] = field(default_factory=list)
    deleted_data_files: int = 0
    deleted_manifests: int = 0
    deleted_manifest_lists: int = 0
    deleted_bytes: int = 0
    #: unreferenced data files outside the table's folder (registered in place), kept
    kept_external_files: int = 0
    deleted_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return asdict(self)


def _to_expire(table: Table, older_than: datetime, retain_last: int) -> list[int]:
    from pyiceberg.table.snapshots import ancestors_of

    metadata = table.metadata
    current = table.current_snapshot()
    keep: set[int] = {ref.snapshot_id for ref in metadata.refs.values()}
    if current is not None:
        for i, snap in enumerate(ancestors_of(current, metadata)):
            if i >= retain_last:
                break
            keep.add(snap.snapshot_id)
    # A snapshot's age is counted from when it stopped being current (the next entry of the
    # snapshot log), not from its creation: a reader that picked it up as the current one
    # less than *older_than* ago must keep finding its files.
    retired: dict[int, int] = {}
    log_entries = sorted(metadata.snapshot_log, key=lambda e: e.timestamp_ms)
    for entry, nxt in itertools.pairwise(log_entries):
        retired[entry.snapshot_id] = max(retired.get(entry.snapshot_id, 0), nxt.timestamp_ms)
    if log_entries:
        retired.pop(log_entries[-1].snapshot_id, None)  # the current one is not retired
    cutoff = int(older_than.timestamp() * 1000)
    return sorted(
        s.snapshot_id
        for s in metadata.snapshots
        if s.snapshot_id not in keep and retired.get(s.snapshot_id, s.timestamp_ms) < cutoff
    )


def expire_snapshots(
    table: Table,
    *,
    older_than: datetime | timedelta,
    retain_last: int = 1,
    delete_files: bool = True,
    attempts: int = 10,
) -> ExpiryResult:
    """Expire snapshots older than *older_than* and delete the files only they referenced.

    A snapshot's age counts from when a newer one replaced it as the current snapshot, so
    a query that started less than *older_than* ago never loses its files. The newest
    *retain_last* snapshots of the current branch and every branch or tag head are kept
    whatever their age. After the commit, a data file, manifest or manifest list
    is deleted when an expired snapshot referenced it and no remaining snapshot does; data
    files outside the table's folder (registered in place) are never deleted.

    Args:
        table: the table.
        older_than: a time, or an age (``timedelta``) counted back from now.
        retain_last: keep at least this many recent snapshots (>= 1).
        delete_files: False to only forget the snapshots.
        attempts: commit attempts before :class:`CommitConflictError`.
    """
    if retain_last < 1:
        raise UsageError(f"retain_last must be at least 1, found {retain_last}")
    if isinstance(older_than, timedelta):
        older_than = datetime.now(UTC) - older_than
    name = table_name(table)
    table.refresh()
    before = table.metadata

    def expire(t: Table) -> list[int]:
        ids = _to_expire(t, older_than, retain_last)
        if ids:
            t.maintenance.expire_snapshots().by_ids(ids).commit()
        return ids

    ids = commit_with_retry(table, expire, what="snapshot expiry", attempts=attempts)
    if not ids or not delete_files:
        return ExpiryResult(name, ids)
    table.refresh()
    after = table.metadata  # includes snapshots committed concurrently since
    refs = _References(table)
    kept_lists = {s.manifest_list for s in after.snapshots}
    kept_manifests: set[str] = set()
    kept_files: set[str] = set()
    for snap in after.snapshots:
        for m in refs.manifests(after, snap.snapshot_id):
            if m.manifest_path not in kept_manifests:
                kept_manifests.add(m.manifest_path)
                kept_files.update(p for p, live, _ in refs.files(m) if live)
    gone_lists: set[str] = set()
    gone_manifests: set[str] = set()
    gone_files: dict[str, int] = {}
    for sid in ids:
        old = before.snapshot_by_id(sid)
        if old is None:
            continue
        if old.manifest_list not in kept_lists:
            gone_lists.add(old.manifest_list)
        for m in refs.manifests(before, sid):
            if m.manifest_path not in kept_manifests:
                gone_manifests.add(m.manifest_path)
            for path, _, size in refs.files(m):
                if path not in kept_files:
                    gone_files[path] = size
    location = table.location()
    external = [p for p in gone_files if not _within(p, location)]
    data = [p for p in gone_files if _within(p, location)]
    _delete_quietly(table, data)
    _delete_quietly(table, gone_manifests)
    _delete_quietly(table, gone_lists)
    return ExpiryResult(
        table=name,
        expired_snapshots=ids,
        deleted_data_files=len(data),
        deleted_manifests=len(gone_manifests),
        deleted_manifest_lists=len(gone_lists),
        deleted_bytes=sum(gone_files[p] for p in data),
        kept_external_files=len(external),
        deleted_files=sorted([*data, *gone_manifests, *gone_lists]),
    )


# ---------------------------------------------------------------- orphans


def referenced_files(table: Table) -> set[str]:
    """Normalized paths of every file the table's metadata references (any snapshot)."""
    metadata = table.metadata
    refs = _References(table)
    paths: set[str] = set()
    if table.metadata_location:
        paths.add(table.metadata_location)
    paths.update(entry.metadata_file for entry in metadata.metadata_log)
    paths.update(s.statistics_path for s in metadata.statistics)
    paths.update(s.statistics_path for s in metadata.partition_statistics)
    for snap in metadata.snapshots:
        paths.add(snap.manifest_list)
        for m in refs.manifests(metadata, snap.snapshot_id):
            paths.add(m.manifest_path)
            paths.update(p for p, _, _ in refs.files(m))
    return {_norm(p) for p in paths}


def _filesystem(table: Table, location: str) -> tuple[Any, str]:
    """The pyarrow filesystem and root path of *location*, configured as the table's
    FileIO is (an ``s3://`` warehouse's endpoint, region and credentials)."""
    from pyarrow import fs as pafs
    from pyiceberg.io.pyarrow import PyArrowFileIO

    io = table.io
    if isinstance(io, PyArrowFileIO):
        scheme, netloc, path = io.parse_location(location)
        return io.fs_by_scheme(scheme, netloc), path
    return pafs.FileSystem.from_uri(location)


def remove_orphans(
    table: Table, *, older_than: timedelta = timedelta(days=3), dry_run: bool = False
) -> list[str]:
    """Delete files under the table's location that no metadata references.

    Only files last modified more than *older_than* ago are touched: a writer that has
    written a file but not committed it yet must not lose it. Returns the orphans' URIs
    (deleted, or only found with *dry_run*).
    """
    from pyarrow import fs as pafs

    table.refresh()
    location = table.location()
    filesystem, root = _filesystem(table, location)
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    except FileNotFoundError:
        return []
    referenced = referenced_files(table)  # listed after: a file committed since is seen
    cutoff = datetime.now(UTC) - older_than
    base = location.rstrip("/")
    orphans: list[str] = []
    for info in infos:
        if info.type != pafs.FileType.File or info.mtime is None:
            continue
        mtime = info.mtime if info.mtime.tzinfo else info.mtime.replace(tzinfo=UTC)
        uri = base + "/" + info.path[len(root.rstrip("/")) + 1 :]
        if mtime < cutoff and _norm(uri) not in referenced:
            orphans.append(uri)
    orphans.sort()
    if not dry_run:
        _delete_quietly(table, orphans)
    return orphans


# ---------------------------------------------------------------- retention

_TIME_TRANSFORMS = ("identity", "hour", "day", "month", "year")


@dataclass(frozen=True)
class RetentionResult:
    """What :func:`retain` did."""

    table: str
    column: str
    cutoff: str
    deleted_rows: int = 0
    removed_files: int = 0
    added_files: int = 0
    snapshot_ids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return asdict(self)


def time_column(table: Table) -> str:
    """The table's event-time column: the source of its time partition, else its sort key.

    Raises:
        UsageError: the table has no date or timestamp partition or sort column.
    """
    from pyiceberg.types import DateType, TimestampType, TimestamptzType

    schema = table.schema()
    sources = [(f.source_id, str(f.transform)) for f in table.spec().fields] + [
        (f.source_id, str(f.transform)) for f in table.sort_order().fields
    ]
    for source_id, transform in sources:
        fld = schema.find_field(source_id)
        if transform in _TIME_TRANSFORMS and isinstance(
            fld.field_type, DateType | TimestampType | TimestamptzType
        ):
            return schema.find_column_name(source_id) or fld.name
    raise UsageError(
        f"table '{table_name(table)}' has no time partition or sort column; "
        "say which column holds the event time"
    )


def _cutoff_literal(table: Table, column: str, cutoff: datetime) -> str:
    from pyiceberg.types import DateType, TimestampType, TimestamptzType

    try:
        kind = table.schema().find_field(column).field_type
    except ValueError:
        names = [f.name for f in table.schema().fields]
        raise NotFoundError(
            f"column '{column}' is not in '{table_name(table)}'{did_you_mean(column, names)}"
        ) from None
    if isinstance(kind, TimestamptzType):
        return cutoff.isoformat()
    if isinstance(kind, TimestampType):
        return cutoff.astimezone(UTC).replace(tzinfo=None).isoformat()
    if isinstance(kind, DateType):
        return date.isoformat(cutoff.astimezone(UTC).date())
    raise UsageError(f"column '{column}' is {kind}, expected a date or a timestamp")


def retain(
    table: Table,
    *,
    days: float,
    now: datetime | None = None,
    column: str | None = None,
    attempts: int = 10,
) -> RetentionResult:
    """Delete the rows whose event time is more than *days* before *now*.

    Files (hence whole partitions) lying entirely before the cutoff are dropped from the
    table without being read; a file straddling it is rewritten without the old rows.
    Rows are found by *column*, by default :func:`time_column`. Deleted files stay on disk
    for readers of older snapshots until :func:`expire_snapshots`.
    """
    from pyiceberg.expressions import LessThan

    less_than: Any = LessThan  # pydantic's generated signature hides the positional form
    if days < 0:
        raise UsageError(f"days must be >= 0, found {days}")
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    cutoff = now - timedelta(days=days)
    table.refresh()
    col = column or time_column(table)
    literal = _cutoff_literal(table, col, cutoff)
    name = table_name(table)
    if table.current_snapshot() is None:
        return RetentionResult(name, col, cutoff.isoformat())
    before = {s.snapshot_id for s in table.metadata.snapshots}

    def delete(t: Table) -> None:
        import warnings

        with warnings.catch_warnings():  # "did not match any records" is not news here
            warnings.simplefilter("ignore", UserWarning)
            t.delete(less_than(col, literal), snapshot_properties={OPERATION_KEY: "retain"})

    commit_with_retry(table, delete, what="retention", attempts=attempts)
    table.refresh()
    ours = [
        s
        for s in table.metadata.snapshots
        if s.snapshot_id not in before
        and s.summary is not None
        and s.summary.additional_properties.get(OPERATION_KEY) == "retain"
    ]

    def total(key: str) -> int:
        return sum(int(s.summary.additional_properties.get(key, 0)) for s in ours if s.summary)

    return RetentionResult(
        table=name,
        column=col,
        cutoff=cutoff.isoformat(),
        deleted_rows=total("deleted-records") - total("added-records"),
        removed_files=total("deleted-data-files"),
        added_files=total("added-data-files"),
        snapshot_ids=[s.snapshot_id for s in ours],
    )
