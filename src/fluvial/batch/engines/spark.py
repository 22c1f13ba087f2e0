"""Run batch models on Apache Spark (our EMR / Glue ETL): DuckDB SQL in, Arrow out.

A model is one SELECT written in DuckDB's dialect. :func:`run_select` registers its inputs
as Spark temporary views, transpiles the SELECT to Spark SQL with sqlglot, runs it and
returns the result as an Arrow table, so the rest of Fluvial (quality, quarantine, lake
writes) never sees Spark. Input names may be qualified (``refined.clicks``): each table
reference to an input is rewritten to its view (``refined__clicks``), keeping the original
name as the alias so qualified column references still resolve.

Inputs are Arrow tables (``createDataFrame`` over Arrow) or Parquet files, which Spark reads
itself. Lake tables are read as the Parquet data files of their current snapshot
(:func:`lake_input`): Spark cannot load the Iceberg runtime here, so a table with row-level
delete files is refused rather than read wrongly. Writes stay with Fluvial (Arrow →
pyiceberg).

The session is local (``local[*]``) unless ``[batch] spark_master`` names a cluster; logs are
quiet (errors only), Arrow transfer is on and the session time zone is UTC. Spark 4 runs in
ANSI mode: overflow, division by zero and failed casts raise instead of giving NULL.

>>> to_spark_sql("SELECT strftime(at, '%Y-%m-%d') AS d FROM refined.clicks",
...              {"refined.clicks": "refined__clicks"})
"SELECT DATE_FORMAT(at, 'yyyy-MM-dd') AS d FROM refined__clicks AS clicks"
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

import pyarrow as pa
import sqlglot
from sqlglot import exp

from fluvial._deps import require
from fluvial.batch.engines.base import Engine, IcebergInput, Input
from fluvial.errors import ConfigError, SqlError, UsageError

if TYPE_CHECKING:
    from pyiceberg.table import Table as IcebergTable
    from pyspark.sql import DataFrame, SparkSession

    from fluvial.batch.warehouse import Warehouse
    from fluvial.lake.catalog import Lake
    from fluvial.project import Project

__all__ = [
    "DEFAULT_MASTER",
    "PASSES",
    "SparkEngine",
    "SparkInput",
    "lake_files",
    "lake_input",
    "lake_inputs",
    "run_select",
    "spark_session",
    "stop_session",
    "to_spark_sql",
    "view_name",
]

#: where Spark runs when ``[batch] spark_master`` is not set: in this process, every core
DEFAULT_MASTER = "local[*]"

#: an input: an Arrow table, or Parquet files (paths or URIs) that Spark reads itself
SparkInput: TypeAlias = pa.Table | IcebergInput | str | Path | Sequence[str | Path]

_LOG4J = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
"""

_LOCK = threading.Lock()


def _settings_master(project: Project) -> str:
    """``[batch] spark_master`` when the settings have it, else the local default."""
    batch = getattr(project.settings, "batch", None)
    master = getattr(batch, "spark_master", "") if batch is not None else ""
    return str(master).strip() or DEFAULT_MASTER


def _log_config() -> Path:
    path = Path(tempfile.gettempdir()) / "fluvial-spark-log4j2.properties"
    if not path.exists() or path.read_text(encoding="utf-8") != _LOG4J:
        path.write_text(_LOG4J, encoding="utf-8")
    return path


def spark_session(
    master: str | None = None, *, conf: Mapping[str, str] | None = None
) -> SparkSession:
    """The process's SparkSession, created on first use and shared afterwards.

    Args:
        master: the master URL (``local[*]``, ``spark://host:7077``…); default local.
        conf: extra Spark settings, applied when the session is created.

    Raises:
        MissingDependencyError: pyspark is not installed (``pip install 'fluvial[spark]'``).
        ConfigError: no Java runtime was found.
    """
    require("pyspark", "spark")
    from pyspark.sql import SparkSession

    with _LOCK:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            raise ConfigError("the Spark engine needs a Java 17+ runtime: set JAVA_HOME or PATH")
        master = master or DEFAULT_MASTER
        local = master.startswith("local")
        if local:  # one machine: no address lookup, no web UI, few shuffle partitions
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            # Python workers (MapReduce on Spark) run this interpreter, with its packages
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        settings: dict[str, str] = {
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
            "spark.sql.session.timeZone": "UTC",
            "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={_log_config().as_uri()}"
            " -Duser.timezone=UTC",
            "spark.ui.showConsoleProgress": "false",
        }
        if local:
            settings |= {
                "spark.ui.enabled": "false",
                "spark.driver.host": "127.0.0.1",
                "spark.sql.shuffle.partitions": str(max(2, (os.cpu_count() or 1) * 2)),
            }
        builder: Any = SparkSession.builder.master(master).appName("fluvial")
        for key, value in {**settings, **(conf or {})}.items():
            builder = builder.config(key, value)
        session: SparkSession = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
            # pyspark logs every failed query; Fluvial raises it as an SqlError instead
            logging.getLogger(name).setLevel(logging.CRITICAL)
        return session


def view_name(name: str) -> str:
    """The temporary view an input is registered as: ``zone.table`` → ``zone__table``.

    >>> view_name("refined.clicks"), view_name("raw.events-2024")
    ('refined__clicks', 'raw__events_2024')
    """
    return re.sub(r"\W", "_", name.replace(".", "__"))


def _table_key(table: exp.Table) -> str:
    return ".".join(part for part in (table.catalog, table.db, table.name) if part)


def _boundary_date_diff(tree: exp.Expression) -> exp.Expression:
    """DuckDB's ``date_diff`` counts unit boundaries crossed, Spark's counts whole units
    elapsed: truncating both ends to the unit first makes Spark count boundaries too."""
    for node in list(tree.find_all(exp.DateDiff)):
        if not node.args.get("date_part_boundary"):
            continue
        unit = node.args.get("unit")
        name = unit.name.upper() if isinstance(unit, exp.Expression) else "DAY"
        for arg in ("this", "expression"):
            node.set(arg, exp.TimestampTrunc(this=node.args[arg], unit=exp.var(name)))
        node.set("date_part_boundary", None)
    return tree


#: rewrites of the parsed DuckDB SELECT, in order, where sqlglot alone gives other results
PASSES = (_boundary_date_diff,)


def to_spark_sql(sql: str, views: Mapping[str, str] | None = None) -> str:
    """Transpile one DuckDB SELECT to Spark SQL, pointing references to inputs at their views.

    Args:
        sql: the SELECT, in DuckDB's dialect.
        views: input name (as written in *sql*, e.g. ``refined.clicks``) → view name.

    Raises:
        SqlError: the SQL does not parse (with line and column), or is not one statement.
    """
    try:
        statements = sqlglot.parse(sql, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        raise SqlError(
            str(first.get("description") or exc), line=first.get("line"), column=first.get("col")
        ) from exc
    trees = [s for s in statements if s is not None]
    if len(trees) != 1:
        raise SqlError(f"expected one SELECT statement, found {len(trees)}")
    tree = trees[0]
    if not isinstance(tree, exp.Expression):
        raise SqlError(f"expected a SELECT statement, found {type(tree).__name__}")
    views = {k.lower(): v for k, v in (views or {}).items()}
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in list(tree.find_all(exp.Table)):
        key = _table_key(table).lower()
        if key not in views or (key in ctes and not table.db):
            continue
        original = table.name
        table.set("this", exp.to_identifier(views[key]))
        table.set("db", None)
        table.set("catalog", None)
        if not table.alias and views[key] != original:
            table.set("alias", exp.TableAlias(this=exp.to_identifier(original)))
    for rewrite in PASSES:
        tree = rewrite(tree)
    try:
        return tree.sql(dialect="spark")
    except sqlglot.errors.SqlglotError as exc:  # e.g. a construct Spark has no form for
        raise SqlError(f"cannot translate to Spark SQL: {exc}") from exc


def _paths(data: str | Path | Sequence[str | Path]) -> list[str]:
    items = [data] if isinstance(data, str | Path) else list(data)
    return [str(p) if "://" in str(p) else Path(p).resolve().as_uri() for p in items]


def _iceberg(data: IcebergInput | str, io_properties: Mapping[str, str]) -> SparkInput:
    """An Iceberg table, by its metadata file, as its data files (or an empty table)."""
    from pyiceberg.table import StaticTable

    location = data.metadata_location if isinstance(data, IcebergInput) else data
    snapshot = data.snapshot_id if isinstance(data, IcebergInput) else None
    table = StaticTable.from_metadata(location, properties=dict(io_properties))
    return lake_input(table, snapshot_id=snapshot)


def _frame(spark: SparkSession, data: SparkInput, io_properties: Mapping[str, str]) -> DataFrame:
    from fluvial.lake.write import to_iceberg_types

    if isinstance(data, IcebergInput) or (
        isinstance(data, str) and data.endswith(".metadata.json")
    ):
        data = _iceberg(data, io_properties)
    if isinstance(data, pa.Table):
        # signed ints, microsecond times, no dictionaries: types Spark's Arrow reader takes
        return spark.createDataFrame(to_iceberg_types(data))
    assert not isinstance(data, IcebergInput)
    paths = _paths(data)
    if not paths:
        raise UsageError("an input of Parquet files needs at least one file")
    return spark.read.option("mergeSchema", "true").parquet(*paths)


def run_select(
    sql: str,
    inputs: Mapping[str, SparkInput],
    *,
    session: SparkSession | None = None,
    io_properties: Mapping[str, str] | None = None,
) -> pa.Table:
    """Run a DuckDB-dialect SELECT on Spark over named inputs; return the rows as Arrow.

    Args:
        sql: one SELECT in DuckDB's dialect, reading the inputs by name.
        inputs: name → Arrow table, Parquet files (paths, URIs or globs), or an Iceberg
            table (:class:`IcebergInput`, or the location of its ``.metadata.json``).
        session: the SparkSession (default: :func:`spark_session`).
        io_properties: pyiceberg FileIO properties for reading Iceberg metadata.

    Raises:
        SqlError: the SQL does not parse, or Spark refused or failed it (its message kept).
        UsageError: an Iceberg input has row-level delete files.
    """
    spark = session or spark_session()
    from pyspark.errors import PySparkException

    views = {name: view_name(name) for name in inputs}
    spark_sql = to_spark_sql(sql, views)
    try:
        for name, data in inputs.items():
            _frame(spark, data, io_properties or {}).createOrReplaceTempView(views[name])
        result = spark.sql(spark_sql).toArrow()
    except PySparkException as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SqlError(message, source="spark") from exc
    finally:
        for view in views.values():
            spark.catalog.dropTempView(view)
    return result


def lake_files(table: IcebergTable, *, snapshot_id: int | None = None) -> list[str]:
    """The Parquet data files of *table*'s current snapshot (or *snapshot_id*), as URIs.

    Raises:
        UsageError: the snapshot has row-level delete files, which plain Parquet reads
            would ignore (compact the table first, or use the DuckDB engine).
    """
    files: list[str] = []
    for task in table.scan(snapshot_id=snapshot_id).plan_files():
        if task.delete_files:
            name = ".".join(table.name())
            raise UsageError(
                f"table '{name}' has {len(task.delete_files)} row-level delete file(s) that "
                "the Spark engine cannot apply; compact the table or use the DuckDB engine"
            )
        files.append(task.file.file_path)
    return files


def lake_input(table: IcebergTable, *, snapshot_id: int | None = None) -> SparkInput:
    """*table* as a Spark input: its data files, or an empty Arrow table when it has none."""
    files = lake_files(table, snapshot_id=snapshot_id)
    if files:
        return files
    return table.scan(snapshot_id=snapshot_id).projection().as_arrow().empty_table()


def lake_inputs(lake: Lake, names: Sequence[str]) -> dict[str, SparkInput]:
    """Inputs for :func:`run_select` from lake tables named ``zone.table``.

    Raises:
        NotFoundError: a table does not exist (with a suggestion).
        UsageError: a table has row-level delete files.
    """
    return {name: lake_input(lake.table(name)) for name in names}


class SparkEngine(Engine):
    """Batch models on Spark: ``run_select`` over named inputs, on the shared session.

    The master is ``[batch] spark_master`` (default ``local[*]``). The session is created
    on first use (starting the JVM takes seconds) and shared by every engine in the
    process; :meth:`close` leaves it running for the next run.
    """

    name: ClassVar[str] = "spark"
    reads_warehouse: ClassVar[bool] = False

    def __init__(
        self,
        project: Project,
        lake: Lake,
        warehouse: Warehouse | None = None,
        *,
        master: str | None = None,
        conf: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(project, lake, warehouse)
        self.master = master or _settings_master(project)
        self.conf = dict(conf or {})

    @property
    def session(self) -> SparkSession:
        """The SparkSession (created on first use)."""
        return spark_session(self.master, conf=self.conf)

    def run_select(self, sql: str, inputs: Mapping[str, Input]) -> pa.Table:
        """Run a DuckDB-dialect SELECT over named inputs; see :func:`run_select`."""
        return run_select(sql, inputs, session=self.session, io_properties=self.lake.io_properties)


def stop_session() -> None:
    """Stop the shared SparkSession, if one runs (the next use starts a new one)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
