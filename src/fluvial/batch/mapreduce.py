"""MapReduce over Arrow record batches, on local processes or on Spark (our EMR).

A :class:`MapReduceJob` is three functions and a shuffle:

- **map** receives one :class:`pyarrow.RecordBatch` of the input and returns its
  ``(keys, values)`` arrays, or a table with a ``key`` column and value columns (several
  value columns travel as one struct array);
- **combine** (optional) pre-aggregates each map task's output per key, before the shuffle;
- the **partitioner** assigns every key a reduce partition, vectorized
  (``partitioner(keys, n) -> numpy int array``; the default hashes keys with Polars);
- **reduce** receives one key group: the key (a Python value) and its values (an Arrow
  array, a struct array for several value columns). It returns one value, an array (one
  row per element), or a table (its rows), and the key is added to each output row.

Instead of a function, combine and reduce may name an Arrow hash aggregate (``"sum"``,
``"count"``, ``"min"``, ``"max"``, ``"mean"``, ``"list"``…), which runs vectorized over
every key at once.

Inputs are Arrow tables, Parquet / CSV / NDJSON files (or folders of them) and lake tables
(pyiceberg tables: the data files of their current snapshot). Executors:

- ``inline``: every task in this process, one after another (for debugging);
- ``local``: a :class:`concurrent.futures.ProcessPoolExecutor` with *spawn* workers; map
  tasks write their partitions as Arrow IPC files that reduce tasks read. Functions must be
  importable (defined at module level) so the workers can find them;
- ``spark``: ``parallelize`` the input splits, ``flatMap`` the map tasks into
  ``(partition, Arrow IPC block)`` pairs, ``groupByKey`` (Spark's shuffle) and reduce each
  partition; functions travel with cloudpickle.

The result is an Arrow table (rows in no particular order), optionally appended to a lake
table (created when missing).

>>> import pyarrow as pa, pyarrow.compute as pc
>>> def letters(batch):
...     return batch.column("word"), pc.utf8_length(batch.column("word"))
>>> job = MapReduceJob(letters, "sum", num_partitions=2)
>>> words = pa.table({"word": ["ab", "c", "ab"]})
>>> job.run(words, executor="inline").sort_by("key").to_pylist()
[{'key': 'ab', 'value': 4}, {'key': 'c', 'value': 1}]
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import re
import shutil
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import BatchError, SchemaError, UsageError, did_you_mean

if TYPE_CHECKING:
    from pyiceberg.table import Table as IcebergTable

    from fluvial.lake.catalog import Lake

__all__ = [
    "EXECUTORS",
    "FORMATS",
    "KeyValues",
    "MapFn",
    "MapReduceJob",
    "Partitioner",
    "ReduceFn",
    "Split",
    "hash_partitioner",
    "splits",
]

#: where a job's tasks run
EXECUTORS = ("inline", "local", "spark")
#: file formats by suffix
FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".json": "ndjson",
    ".jsonl": "ndjson",
    ".ndjson": "ndjson",
}

KeyValues: TypeAlias = tuple[pa.Array | pa.ChunkedArray, pa.Array | pa.ChunkedArray]
#: batch → (keys, values), or a table with a ``key`` column and value columns
MapFn: TypeAlias = Callable[[pa.RecordBatch], KeyValues | pa.Table | pa.RecordBatch]
#: (key, values of that key) → a value, an array, or a table
ReduceFn: TypeAlias = Callable[[Any, pa.Array], Any]
#: (keys, number of partitions) → the partition of each key
Partitioner: TypeAlias = Callable[[pa.Array, int], np.ndarray]
Executor: TypeAlias = Literal["inline", "local", "spark"]

_KEY = "key"
_VALUE = "value"
_BATCH_ROWS = 65_536
_SPLIT_ROWS = 1_000_000


def hash_partitioner(keys: pa.Array, num_partitions: int) -> np.ndarray:
    """Partition by a hash of the key: the same key lands in the same partition everywhere.

    Polars' hash is stable within one Polars version, which every task of a job shares.

    >>> hash_partitioner(pa.array(["a", "b", "a"]), 4).tolist()[0::2]
    [2, 2]
    """
    import polars as pl

    hashed = pl.Series(values=keys).hash(seed=0).to_numpy()
    return (hashed % np.uint64(num_partitions)).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Split:
    """One map task's share of the input: a file (or some of its row groups), or a table."""

    format: str
    path: str = ""
    row_groups: tuple[int, ...] | None = None
    table: pa.Table | None = None
    #: lake tables: the table's current schema; older files get its new columns as nulls
    schema: pa.Schema | None = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Read the split as record batches."""
        if self.format == "arrow":
            assert self.table is not None
            yield from self.table.to_batches(max_chunksize=_BATCH_ROWS)
        elif self.format == "parquet":
            import pyarrow.parquet as pq

            with _open(self.path) as stream:
                reader = pq.ParquetFile(stream)
                for batch in reader.iter_batches(_BATCH_ROWS, row_groups=self.row_groups):
                    yield self._conform(batch)
        elif self.format == "csv":
            import pyarrow.csv as csv

            with _open(self.path) as stream:
                yield from csv.open_csv(stream)
        elif self.format == "ndjson":
            import pyarrow.json as pj

            with _open(self.path) as stream:
                yield from pj.read_json(stream).to_batches(max_chunksize=_BATCH_ROWS)
        else:
            raise UsageError(
                f"unknown input format {self.format!r}{did_you_mean(self.format, FORMATS.values())}"
            )

    def _conform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if self.schema is None:
            return batch
        columns = [
            batch.column(f.name).cast(f.type)
            if f.name in batch.schema.names
            else pa.nulls(batch.num_rows, f.type)
            for f in self.schema
        ]
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)


def _open(path: str) -> Any:
    from pyarrow import fs

    if "://" not in path:
        return open(path, "rb")
    filesystem, inner = fs.FileSystem.from_uri(path)
    return filesystem.open_input_file(inner)


def _file_splits(path: Path | str, format: str | None, split_rows: int) -> list[Split]:
    text = str(path)
    local = (
        Path(text.removeprefix("file://"))
        if text.startswith("file://") or "://" not in text
        else None
    )
    if local is not None and local.is_dir():
        found = sorted(p for p in local.rglob("*") if p.suffix.lower() in FORMATS)
        return [s for p in found for s in _file_splits(p, format, split_rows)]
    fmt = format or FORMATS.get(Path(text).suffix.lower())
    if fmt is None:
        raise UsageError(f"cannot tell the format of {text!r}: expected one of {sorted(FORMATS)}")
    if fmt != "parquet":
        return [Split(fmt, text)]
    import pyarrow.parquet as pq

    with _open(text) as stream:
        meta = pq.ParquetFile(stream).metadata
    groups: list[list[int]] = [[]]
    rows = 0
    for i in range(meta.num_row_groups):
        if rows >= split_rows:
            groups.append([])
            rows = 0
        groups[-1].append(i)
        rows += meta.row_group(i).num_rows
    return [Split("parquet", text, tuple(g)) for g in groups if g] or [Split("parquet", text, ())]


def _lake_splits(table: IcebergTable) -> list[Split]:
    from fluvial.batch.engines.spark import lake_files

    schema = table.schema().as_arrow()
    return [Split("parquet", path, schema=schema) for path in lake_files(table)]


def splits(
    inputs: Any, *, format: str | None = None, split_rows: int = _SPLIT_ROWS, parts: int = 1
) -> list[Split]:
    """The map tasks' splits of *inputs*: Arrow tables, file or folder paths, lake tables.

    Args:
        inputs: one input or a list of them (pa.Table, str / Path of a file or folder,
            a pyiceberg table, or :class:`Split`).
        format: the files' format when their suffix does not say it.
        split_rows: the rows one Parquet split covers (whole row groups).
        parts: the splits an Arrow table is cut into.

    Raises:
        UsageError: an input of an unknown kind or format.
        UsageError: a lake table has row-level delete files.
    """
    items = inputs if isinstance(inputs, list | tuple) else [inputs]
    out: list[Split] = []
    for item in items:
        if isinstance(item, Split):
            out.append(item)
        elif isinstance(item, pa.Table | pa.RecordBatch):
            table = pa.Table.from_batches([item]) if isinstance(item, pa.RecordBatch) else item
            step = max(1, -(-table.num_rows // max(1, parts)))
            out += [
                Split("arrow", table=table.slice(i, step)) for i in range(0, table.num_rows, step)
            ]
        elif isinstance(item, str | Path):
            out += _file_splits(item, format, split_rows)
        elif hasattr(item, "scan") and hasattr(item, "schema"):
            out += _lake_splits(item)
        else:
            raise UsageError(
                f"expected an Arrow table, a file or folder path, or a lake table as input; "
                f"found {type(item).__name__}"
            )
    return out


def _key_values(output: Any, where: str) -> pa.Table:
    """A map or combine output as a table of ``key`` and ``value`` columns."""
    if isinstance(output, tuple) and len(output) == 2:
        keys, values = output
        return pa.table({_KEY: keys, _VALUE: values})
    if isinstance(output, pa.RecordBatch):
        output = pa.Table.from_batches([output])
    if not isinstance(output, pa.Table):
        raise SchemaError(
            f"{where} must return (keys, values) arrays or a table with a '{_KEY}' column; "
            f"found {type(output).__name__}"
        )
    if _KEY not in output.column_names:
        raise SchemaError(
            f"{where} returned a table without a '{_KEY}' column; found {output.column_names}"
        )
    rest = [name for name in output.column_names if name != _KEY]
    if not rest:
        raise SchemaError(f"{where} returned a table with a '{_KEY}' column and no value columns")
    if len(rest) == 1:
        value = output.column(rest[0])
    else:  # several value columns travel as one struct
        value = pa.StructArray.from_arrays(
            [output.column(n).combine_chunks() for n in rest], names=rest
        )
    return pa.table({_KEY: output.column(_KEY), _VALUE: value})


def _aggregate(data: pa.Table, how: str) -> pa.Table:
    try:
        out = data.group_by(_KEY).aggregate([(_VALUE, how)])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError) as exc:
        raise UsageError(f"cannot aggregate the values with {how!r}: {exc}") from exc
    return pa.table({_KEY: out.column(_KEY), _VALUE: out.column(f"{_VALUE}_{how}")})


def _rows(key_column: pa.Array, results: list[Any]) -> pa.Table:
    """Per-key results (values, arrays or tables) as one table with the key on every row."""
    first = next((r for r in results if r is not None), None)
    if isinstance(first, pa.Table | pa.RecordBatch | Mapping):
        tables = [
            pa.table(r)
            if isinstance(r, Mapping)
            else pa.Table.from_batches([r])
            if isinstance(r, pa.RecordBatch)
            else r
            for r in results
        ]
        lengths = np.array([t.num_rows for t in tables], dtype=np.int64)
        body = pa.concat_tables(tables, promote_options="permissive")
        keys = key_column.take(pa.array(np.repeat(np.arange(len(tables)), lengths)))
        return body.add_column(0, _KEY, keys) if _KEY not in body.column_names else body
    if isinstance(first, pa.Array | pa.ChunkedArray | np.ndarray | list):
        arrays = [
            pa.array(r) if not isinstance(r, pa.Array | pa.ChunkedArray) else r for r in results
        ]
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        chunks = [c for a in arrays for c in (a.chunks if isinstance(a, pa.ChunkedArray) else [a])]
        values = pa.chunked_array(chunks) if chunks else pa.chunked_array([], pa.null())
        keys = key_column.take(pa.array(np.repeat(np.arange(len(arrays)), lengths)))
        return pa.table({_KEY: keys, _VALUE: values})
    scalars = [r.as_py() if isinstance(r, pa.Scalar) else r for r in results]
    return pa.table({_KEY: key_column, _VALUE: pa.array(scalars)})


def _apply(data: pa.Table, fn: ReduceFn | str, where: str) -> pa.Table:
    """Apply a reduce (or combine) to every key group of *data*."""
    if isinstance(fn, str):
        return _aggregate(data, fn)
    if data.num_rows == 0:
        return pa.table({_KEY: data.column(_KEY), _VALUE: pa.array([], pa.null())})
    data = data.take(pc.sort_indices(data, [(_KEY, "ascending")]))
    keys = data.column(_KEY).combine_chunks()
    values = data.column(_VALUE).combine_chunks()
    runs = pc.run_end_encode(keys)
    ends = runs.run_ends.to_numpy()
    starts = np.concatenate(([0], ends[:-1]))
    group_keys = runs.values
    # one call per key group (not per row); the values are zero-copy slices
    results = [
        fn(key, values.slice(start, stop - start))
        for key, start, stop in zip(
            group_keys.to_pylist(), starts.tolist(), ends.tolist(), strict=True
        )
    ]
    try:
        return _rows(group_keys, results)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SchemaError(f"{where} returned values that do not form one column: {exc}") from exc


@dataclass(frozen=True)
class MapReduceJob:
    """A MapReduce job over Arrow record batches; see the module's documentation.

    Args:
        map_fn: batch → ``(keys, values)`` or a table with a ``key`` column.
        reduce_fn: ``(key, values) ->`` value | array | table, or an aggregate's name.
        combine_fn: the same contract as *reduce_fn*, run per map task before the shuffle;
            its output must be one value (or array) per key, as the reduce's input.
        partitioner: ``(keys, n) -> partition ids``; default :func:`hash_partitioner`.
        num_partitions: reduce tasks (default: the machine's cores).
        key_column: the key's name in the output.
    """

    map_fn: MapFn
    reduce_fn: ReduceFn | str
    combine_fn: ReduceFn | str | None = None
    partitioner: Partitioner | None = None
    num_partitions: int = field(default_factory=lambda: os.cpu_count() or 1)
    key_column: str = _KEY

    def __post_init__(self) -> None:
        if self.num_partitions < 1:
            raise UsageError(f"num_partitions must be at least 1, found {self.num_partitions}")

    # -- the tasks (run in workers) -------------------------------------------------------

    def map_task(self, split: Split) -> list[pa.Table | None]:
        """Map (and combine) one split; its output cut into the reduce partitions."""
        parts = [_key_values(self.map_fn(b), "map_fn") for b in split.batches()]
        parts = [p for p in parts if p.num_rows]
        if not parts:
            return [None] * self.num_partitions
        data = pa.concat_tables(parts, promote_options="permissive")
        if self.combine_fn is not None:
            combined = _apply(data, self.combine_fn, "combine_fn")
            data = _key_values(combined, "combine_fn")
        keys = data.column(_KEY).combine_chunks()
        partitioner = self.partitioner or hash_partitioner
        ids = np.asarray(partitioner(keys, self.num_partitions), dtype=np.int64)
        if ids.shape != (data.num_rows,) or (
            len(ids) and (ids.min() < 0 or ids.max() >= self.num_partitions)
        ):
            raise UsageError(
                f"the partitioner must return one partition in [0, {self.num_partitions}) per "
                f"key; found shape {ids.shape}, range [{ids.min()}, {ids.max()}]"
            )
        order = np.argsort(ids, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(np.bincount(ids, minlength=self.num_partitions))))
        data = data.take(pa.array(order))
        return [
            data.slice(int(lo), int(hi - lo)) if hi > lo else None
            for lo, hi in itertools.pairwise(bounds.tolist())
        ]

    def reduce_task(self, blocks: Sequence[pa.Table]) -> pa.Table:
        """Reduce one partition: every key group of the map outputs sent to it."""
        if not blocks:
            return pa.table({})
        data = pa.concat_tables(blocks, promote_options="permissive")
        out = _apply(data, self.reduce_fn, "reduce_fn")
        if self.key_column != _KEY:
            out = out.rename_columns(
                [self.key_column if n == _KEY else n for n in out.column_names]
            )
        return out

    # -- running -------------------------------------------------------------------------

    def run(
        self,
        inputs: Any,
        *,
        executor: Executor = "local",
        workers: int | None = None,
        format: str | None = None,
        lake: Lake | None = None,
        append_to: str | None = None,
        spark_master: str | None = None,
    ) -> pa.Table:
        """Run the job over *inputs* and return its output as one Arrow table.

        Args:
            inputs: Arrow tables, file or folder paths, lake tables (see :func:`splits`).
            executor: ``inline``, ``local`` (process pool) or ``spark``.
            workers: processes of the local executor (default: the machine's cores).
            format: the input files' format when their suffix does not say it.
            lake, append_to: append the output to this lake table (created when missing).
            spark_master: the Spark master URL (default: ``local[*]``).

        Raises:
            UsageError: an unknown executor, input or aggregate; functions the local
                executor cannot send to its workers.
            SchemaError: a function returned something of the wrong shape.
        """
        if executor not in EXECUTORS:
            raise UsageError(f"unknown executor {executor!r}{did_you_mean(executor, EXECUTORS)}")
        if append_to is not None and lake is None:
            raise UsageError("append_to needs the lake to append to (lake=...)")
        workers = workers or os.cpu_count() or 1
        todo = splits(inputs, format=format, parts=workers)
        if executor == "inline":
            outputs = self._run_inline(todo)
        elif executor == "local":
            outputs = self._run_local(todo, workers)
        else:
            outputs = _run_spark(self, todo, spark_master)
        outputs = [o for o in outputs if o.num_columns]
        result = (
            pa.concat_tables(outputs, promote_options="permissive")
            if outputs
            else pa.table({self.key_column: pa.array([], pa.null())})
        )
        if append_to is not None and lake is not None:
            from fluvial.lake.write import append

            if not lake.exists(append_to):
                lake.create_table(append_to, result.schema)
            append(lake.table(append_to), result)
        return result

    def _run_inline(self, todo: Sequence[Split]) -> list[pa.Table]:
        mapped = [self.map_task(s) for s in todo]
        return [
            self.reduce_task([m[p] for m in mapped if m[p] is not None])
            for p in range(self.num_partitions)
        ]

    def _run_local(self, todo: Sequence[Split], workers: int) -> list[pa.Table]:
        import multiprocessing

        try:
            pickle.dumps(self)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise UsageError(
                "the local executor runs tasks in spawned processes, which import the job's "
                f"functions by name: define them at module level (not lambdas or closures): {exc}"
            ) from exc
        shuffle = Path(tempfile.mkdtemp(prefix="fluvial-shuffle-"))
        try:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                written = list(
                    pool.map(_map_to_files, itertools.repeat(self), todo, itertools.repeat(shuffle))
                )
                inbox: list[list[str]] = [[] for _ in range(self.num_partitions)]
                for files in written:
                    for partition, path in files:
                        inbox[partition].append(path)
                return list(pool.map(_reduce_files, itertools.repeat(self), inbox))
        finally:
            shutil.rmtree(shuffle, ignore_errors=True)


def _write_ipc(table: pa.Table, path: Path) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _map_to_files(job: MapReduceJob, split: Split, shuffle: Path) -> list[tuple[int, str]]:
    """A local map task: its partitions written as Arrow IPC files in the shuffle folder."""
    task = uuid.uuid4().hex
    written: list[tuple[int, str]] = []
    for partition, block in enumerate(job.map_task(split)):
        if block is not None:
            path = shuffle / f"{partition:05d}-{task}.arrow"
            _write_ipc(block, path)
            written.append((partition, str(path)))
    return written


def _reduce_files(job: MapReduceJob, paths: Sequence[str]) -> pa.Table:
    """A local reduce task over the IPC files its partition received."""
    blocks = []
    for path in paths:
        with pa.memory_map(path) as source:
            blocks.append(pa.ipc.open_file(source).read_all())
    return job.reduce_task(blocks)


def _user_modules(job: MapReduceJob) -> list[Any]:
    """Modules of the job's functions that Spark's workers may not be able to import."""
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")}
    found = []
    for fn in (job.map_fn, job.reduce_fn, job.combine_fn, job.partitioner):
        name = getattr(fn, "__module__", None)
        module = sys.modules.get(name) if name else None
        path = getattr(module, "__file__", None)
        if module is None or path is None or name in (None, "__main__"):
            continue
        if str(name).startswith("fluvial."):
            continue
        if not any(str(Path(path).resolve()).startswith(str(Path(r).resolve())) for r in roots):
            found.append(module)
    return found


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def _from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def _spark_map(job: MapReduceJob, split: Split) -> list[tuple[int, bytes]]:
    """A Spark map task: (partition, Arrow IPC block) pairs for Spark's shuffle."""
    return [(p, _to_ipc(b)) for p, b in enumerate(job.map_task(split)) if b is not None]


def _spark_reduce(job: MapReduceJob, group: tuple[int, Any]) -> bytes:
    """A Spark reduce task over the blocks of one partition."""
    return _to_ipc(job.reduce_task([_from_ipc(b) for b in group[1]]))


def _partition_of(partition: int) -> int:
    return partition


def _run_spark(job: MapReduceJob, todo: Sequence[Split], master: str | None) -> list[pa.Table]:
    from functools import partial

    from pyspark import cloudpickle
    from pyspark.errors import PySparkException

    from fluvial.batch.engines.spark import spark_session

    context = spark_session(master).sparkContext
    # functions of scripts and test modules travel by value: workers cannot import them
    registered = set(cloudpickle.list_registry_pickle_by_value())
    added = [m for m in _user_modules(job) if m.__name__ not in registered]
    for module in added:
        cloudpickle.register_pickle_by_value(module)
    try:
        blocks = context.parallelize(list(todo), max(1, len(todo))).flatMap(
            partial(_spark_map, job)
        )
        grouped = blocks.groupByKey(job.num_partitions, _partition_of)
        return [_from_ipc(b) for b in grouped.map(partial(_spark_reduce, job)).collect()]
    except PySparkException as exc:
        raise BatchError(f"the MapReduce job failed on Spark: {_python_error(exc)}") from exc
    finally:
        for module in added:
            with contextlib.suppress(ValueError):
                cloudpickle.unregister_pickle_by_value(module)


def _python_error(exc: Exception) -> str:
    """The last line of a Python worker's traceback (the error itself), else the first."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception)\b", line)]
    return errors[-1] if errors else (lines[0] if lines else type(exc).__name__)
