"""Run batch models on Apache Spark (our EMR / Glue ETL): DuckDB SQL in, Arrow out.

A model is one SELECT written in DuckDB's dialect. :func:`run_select` registers its inputs
as Spark temporary views, transpiles the SELECT to Spark SQL with sqlglot, runs it and
returns the result as an Arrow table, so the rest of Fluvial (quality, quarantine, lake
writes) never sees Spark. Input names may be qualified (``refined.clicks``): each table
reference to an input is rewritten to its view (``refined__clicks``), keeping the original
name as the alias so qualified column references still resolve.

sqlglot's transpilation alone gives other results where DuckDB and Spark differ in meaning
(``arg_min`` skipping NULL values, ``/`` and ``avg`` of decimals, ``epoch_ms`` of a
timestamp, ISO weeks, ``infinity``…): the ordered rewrite passes of :data:`PASSES` close
those gaps. Given the inputs' schemas (:func:`run_select` passes them), the SELECT is first
qualified and typed with sqlglot's optimizer, so passes can depend on types.

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

import contextlib
import json
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


# -- helpers of the passes ---------------------------------------------------------------

_T = exp.DType
#: DuckDB literals of infinite times, and the finite bound Spark stands in with
_INFINITE = {"infinity": "9999-12-31 23:59:59.999999", "-infinity": "0001-01-01 00:00:00"}
_INFINITE["+infinity"] = _INFINITE["infinity"]
#: DuckDB ``to_<unit>(n)`` interval constructors → the Spark interval of one unit
_UNIT_INTERVALS = {
    "TO_MICROSECONDS": "INTERVAL '0.000001' SECOND",
    "TO_MILLISECONDS": "INTERVAL '0.001' SECOND",
    "TO_SECONDS": "INTERVAL '1' SECOND",
    "TO_MINUTES": "INTERVAL '1' MINUTE",
    "TO_HOURS": "INTERVAL '1' HOUR",
    "TO_DAYS": "INTERVAL '1' DAY",
    "TO_WEEKS": "INTERVAL '7' DAY",
    "TO_MONTHS": "INTERVAL '1' MONTH",
    "TO_YEARS": "INTERVAL '1' YEAR",
}
#: a DuckDB function of a timestamp (Spark spells it otherwise) → a Spark template
_CALENDAR = {
    "ISOYEAR": "CAST(DATE_PART('YEAROFWEEK', __a) AS BIGINT)",
    "YEARWEEK": "CAST(DATE_PART('YEAROFWEEK', __a) * 100 + WEEKOFYEAR(__a) AS BIGINT)",
}


def _template(sql: str, **args: exp.Expression) -> exp.Expression:
    """A Spark expression from *sql*, each column ``__name`` replaced by ``args[name]``."""
    tree = sqlglot.parse_one(sql, read="spark")
    assert isinstance(tree, exp.Expression)
    for column in list(tree.find_all(exp.Column)):
        key = column.name.removeprefix("__")
        if column.name.startswith("__") and key in args and not column.table:
            column.replace(args[key].copy())
    return tree


def _typed(node: exp.Expression | None, *types: exp.DType) -> bool:
    """Whether *node* is annotated with one of *types* (False when its type is unknown)."""
    kind = node.type if isinstance(node, exp.Expression) else None
    return kind is not None and kind.this in types


def _temporal(node: exp.Expression | None) -> bool:
    return _typed(node, *exp.DataType.TEMPORAL_TYPES)


def _interval(node: exp.Expression | None) -> bool:
    return isinstance(node, exp.Interval) or _typed(node, _T.INTERVAL)


def _function(node: exp.Expression, *names: str) -> bool:
    return isinstance(node, exp.Anonymous) and str(node.this).upper() in names


# -- the passes --------------------------------------------------------------------------


def _epochs(tree: exp.Expression) -> exp.Expression:
    """DuckDB's ``epoch_us(t)`` / ``epoch_ns(t)`` are numbers of a timestamp, ``epoch(t)``
    fractional seconds; ``epoch_ms`` is a number of a timestamp and a timestamp of a
    number. sqlglot reads every ``epoch_ms`` as the latter: the argument's type decides
    here (unknown: sqlglot's reading stays)."""
    for node in list(tree.find_all(exp.UnixToTime)):
        scale = node.args.get("scale")
        if (
            _temporal(node.this)
            and scale is not None
            and scale.sql() == exp.UnixToTime.MILLIS.sql()
        ):
            node.replace(_template("UNIX_MILLIS(__a)", a=node.this))
    templates = {"EPOCH_US": "UNIX_MICROS(__a)", "EPOCH_NS": "(UNIX_MICROS(__a) * 1000)"}
    for call in list(tree.find_all(exp.Anonymous)):
        name = str(call.this).upper()
        if name in templates and len(call.expressions) == 1:
            call.replace(_template(templates[name], a=call.expressions[0]))
    for epoch in list(tree.find_all(exp.TimeToUnix)):
        if not epoch.args.get("format"):
            epoch.replace(_template("CAST(UNIX_MICROS(__a) AS DOUBLE) / 1000000", a=epoch.this))
    return tree


def _interval_constructors(tree: exp.Expression) -> exp.Expression:
    """``to_milliseconds(n)`` and the other ``to_<unit>(n)``: *n* times one unit."""
    for node in list(tree.find_all(exp.Anonymous)):
        name = str(node.this).upper()
        if name in _UNIT_INTERVALS and len(node.expressions) == 1:
            node.replace(_template(f"(__a * {_UNIT_INTERVALS[name]})", a=node.expressions[0]))
    return tree


def _infinite_times(tree: exp.Expression) -> exp.Expression:
    """``'infinity'::TIMESTAMP`` (and ``-infinity``, dates too): Spark has no infinite
    times, so the latest (earliest) one it has stands in: the same in comparisons with
    every time but that bound."""
    for node in list(tree.find_all(exp.Cast)):
        value = node.this
        to = node.args.get("to")
        if not (isinstance(value, exp.Literal) and value.is_string and to is not None):
            continue
        bound = _INFINITE.get(value.name.strip().lower())
        if bound is None or not to.is_type(*exp.DataType.TEMPORAL_TYPES):
            continue
        if to.is_type(_T.DATE):
            bound = bound[:10]
        node.set("this", exp.Literal.string(bound))
    return tree


#: functions whose integer result is a BIGINT on DuckDB and an INT on Spark
_BIGINT_RESULTS: tuple[type[exp.Expression], ...] = (
    exp.Year,
    exp.Quarter,
    exp.Month,
    exp.Week,
    exp.WeekOfYear,
    exp.Day,
    exp.DayOfMonth,
    exp.DayOfYear,
    exp.DayOfWeek,
    exp.DayOfWeekIso,
    exp.Hour,
    exp.Minute,
    exp.Second,
    exp.RowNumber,
    exp.Rank,
    exp.DenseRank,
    exp.Ntile,
)


def _bigint_results(tree: exp.Expression) -> exp.Expression:
    """Date parts, ranks and string lengths are BIGINTs on DuckDB: the same on Spark, so a
    table keeps its column types whichever engine builds it."""
    for node in list(tree.find_all(*_BIGINT_RESULTS, exp.Length)):
        if isinstance(node, exp.Length) and _typed(node.this, _T.ARRAY):
            continue  # a list's length: _lists
        target = node.parent if isinstance(node.parent, exp.Window) else node
        if isinstance(target.parent, exp.Cast):
            continue
        target.replace(exp.cast(target.copy(), _T.BIGINT))
    return tree


def _hugeint_sums(tree: exp.Expression) -> exp.Expression:
    """DuckDB sums integers as HUGEINT (128 bits: no overflow; Arrow and the lake store it
    as DECIMAL(38, 0)); Spark as BIGINT, which overflows. Summing them as DECIMAL(38, 0)
    gives Spark DuckDB's type and range."""
    for node in list(tree.find_all(exp.Sum)):
        if _typed(
            node.this, *exp.DataType.SIGNED_INTEGER_TYPES, *exp.DataType.UNSIGNED_INTEGER_TYPES
        ):
            node.set("this", exp.cast(node.this, exp.DataType.build("DECIMAL(38, 0)")))
    return tree


def _calendar(tree: exp.Expression) -> exp.Expression:
    """ISO calendar parts and names, which Spark spells (or counts) otherwise: ``isoyear``,
    ``week`` (ISO), ``isodow`` (Monday 1), ``dayofweek`` (Sunday 0), ``dayname`` and
    ``monthname`` (full English names; Spark's are abbreviated)."""
    for node in list(tree.find_all(exp.Anonymous)):
        name = str(node.this).upper()
        if name in _CALENDAR and len(node.expressions) == 1:
            node.replace(_template(_CALENDAR[name], a=node.expressions[0]))
    rewrites: dict[type[exp.Expression], str] = {
        exp.Week: "WEEKOFYEAR(__a)",
        exp.DayOfWeekIso: "(WEEKDAY(__a) + 1)",
        exp.DayOfWeek: "(DAYOFWEEK(__a) - 1)",
        exp.Dayname: "DATE_FORMAT(__a, 'EEEE')",
        exp.Monthname: "DATE_FORMAT(__a, 'MMMM')",
    }
    for kind, sql in rewrites.items():
        for part in list(tree.find_all(kind)):
            if isinstance(part.this, exp.Expression) and len(part.args) <= 2:
                part.replace(_template(sql, a=part.this))
    return tree


def _lists(tree: exp.Expression) -> exp.Expression:
    """List functions: ``len(list)`` is the element count (Spark's ``LENGTH`` takes only
    strings); ``list_sum`` adds the non-null elements (NULL when there are none)."""
    for node in list(tree.find_all(exp.Length)):
        if _typed(node.this, _T.ARRAY):
            # ARRAY_SIZE (not SIZE, -1 for NULL outside ANSI mode), as sqlglot would spell it
            size = exp.Anonymous(this="ARRAY_SIZE", expressions=[node.this])
            node.replace(exp.cast(size, _T.BIGINT))
    for call in list(tree.find_all(exp.Anonymous)):
        if _function(call, "LIST_SUM", "ARRAY_SUM") and len(call.expressions) == 1:
            values = _template("FILTER(__a, __v -> __v IS NOT NULL)", a=call.expressions[0])
            call.replace(
                _template(
                    "AGGREGATE(SLICE(__f, 2, GREATEST(SIZE(__f) - 1, 0)), TRY_ELEMENT_AT(__f, 1),"
                    " (__acc, __v) -> __acc + __v)",
                    f=values,
                )
            )
    return tree


def _unaliased(node: exp.Expression) -> exp.Expression:
    return node.this if isinstance(node, exp.Alias) else node


def _subscripts_with_unnest(tree: exp.Expression) -> exp.Expression:
    """``generate_subscripts(l, 1) AS i, unnest(l) AS x`` (each element and its position,
    from 1) in one SELECT list: Spark allows one generator there, so both become one
    ``INLINE`` of (position, element) structs."""
    for select in list(tree.find_all(exp.Select)):
        items = select.expressions
        for at in range(len(items) - 1):
            pair = [_unaliased(items[at]), _unaliased(items[at + 1])]
            subs = next((p for p in pair if _function(p, "GENERATE_SUBSCRIPTS")), None)
            unnest = next((p for p in pair if isinstance(p, exp.Explode)), None)
            if subs is None or unnest is None or len(subs.expressions) != 2:
                continue
            array, dim = subs.expressions
            if dim.sql() != "1" or array.sql() != unnest.this.sql():
                continue
            names = {id(p): items[at + i].alias_or_name for i, p in enumerate(pair)}
            sql = (
                f"INLINE(TRANSFORM(__a, (__v, __i) -> STRUCT(CAST(__i + 1 AS BIGINT) AS `{names[id(subs)]}`,"
                f" __v AS `{names[id(unnest)]}`)))"
            )
            if pair[0] is unnest:  # keep the columns in the order written
                sql = (
                    f"INLINE(TRANSFORM(__a, (__v, __i) -> STRUCT(__v AS `{names[id(unnest)]}`,"
                    f" CAST(__i + 1 AS BIGINT) AS `{names[id(subs)]}`)))"
                )
            items[at].replace(_template(sql, a=array))
            items[at + 1].pop()
            break
    return tree


def _hoisted_unnest(tree: exp.Expression) -> exp.Expression:
    """``f(unnest(l)) AS x`` in a SELECT list (a cast of each element, say): Spark refuses a
    generator inside an expression, so it becomes ``EXPLODE(TRANSFORM(l, v -> f(v))) AS x``."""
    for select in list(tree.find_all(exp.Select)):
        for item in list(select.expressions):
            top = _unaliased(item)
            found = [e for e in top.find_all(exp.Explode) if e is not top]
            if len(found) != 1 or found[0].args.get("expressions"):
                continue
            unnest = found[0]
            path = unnest.parent
            blocked = False
            while path is not None and path is not item.parent:
                blocked = blocked or isinstance(path, exp.AggFunc | exp.Window | exp.Subquery)
                path = path.parent
            if blocked:
                continue
            array = unnest.this
            unnest.replace(exp.column("__v"))
            body = top.copy()
            top.replace(_template("EXPLODE(TRANSFORM(__a, __v -> __b))", a=array, b=body))
    return tree


def _spark_type(structure: Any) -> str:
    """A DuckDB JSON structure (``from_json``'s second argument) as a Spark type."""
    if isinstance(structure, dict):
        fields = ", ".join(f"`{k}`: {_spark_type(v)}" for k, v in structure.items())
        return f"STRUCT<{fields}>"
    if isinstance(structure, list) and len(structure) == 1:
        return f"ARRAY<{_spark_type(structure[0])}>"
    if isinstance(structure, str):
        if structure.upper() == "JSON":
            return "STRING"
        return exp.DataType.build(structure, dialect="duckdb").sql(dialect="spark")
    raise ValueError(f"not a JSON structure: {structure!r}")


def _json_structures(tree: exp.Expression) -> exp.Expression:
    """``from_json(j, '{"a": "BIGINT"}')``: DuckDB's structure is JSON, Spark's a type."""
    for node in list(tree.find_all(exp.FromJson)):
        shape = node.expression
        if not (isinstance(shape, exp.Literal) and shape.is_string):
            continue
        try:
            spark_type = _spark_type(json.loads(shape.name))
        except (ValueError, sqlglot.errors.SqlglotError):
            continue  # not a JSON structure: Spark reads it as its own schema
        node.set("expression", exp.Literal.string(spark_type))
    return tree


def _arg_min_max(tree: exp.Expression) -> exp.Expression:
    """DuckDB's ``arg_min(v, k)`` / ``arg_max`` skip rows whose *v* is NULL; Spark's
    ``MIN_BY`` / ``MAX_BY`` skip only NULL *k*: a NULL key for NULL values makes both agree.
    (``arg_min_null`` keeps NULL values, as ``MIN_BY`` does.)"""
    for node in list(tree.find_all(exp.ArgMin, exp.ArgMax)):
        if node.args.get("count") is not None or node.expression is None:
            continue
        key = _template("CASE WHEN __v IS NOT NULL THEN __k END", v=node.this, k=node.expression)
        node.set("expression", key)
    for call in list(tree.find_all(exp.Anonymous)):
        if _function(call, "ARG_MIN_NULL", "ARG_MAX_NULL") and len(call.expressions) == 2:
            fn = "MIN_BY" if str(call.this).upper() == "ARG_MIN_NULL" else "MAX_BY"
            value, key = call.expressions
            call.replace(_template(f"{fn}(__v, __k)", v=value, k=key))
    return tree


def _float_division(tree: exp.Expression) -> exp.Expression:
    """DuckDB's ``/`` of numbers is a DOUBLE (decimals included; ``//`` divides integers);
    Spark divides decimals as decimals, rounded to a few digits."""
    for node in list(tree.find_all(exp.Div)):
        left, right = node.this, node.expression
        if any(_interval(x) or _temporal(x) for x in (left, right)):
            continue
        # even when sqlglot types a side DOUBLE: a literal such as 1.0 is DECIMAL on Spark
        node.set("this", exp.cast(left, _T.DOUBLE))
    return tree


def _float_average(tree: exp.Expression) -> exp.Expression:
    """DuckDB averages numbers as DOUBLE; Spark averages decimals as decimals, rounded."""
    for node in list(tree.find_all(exp.Avg)):
        value = node.this
        if _interval(value) or _temporal(value):
            continue
        if isinstance(value, exp.Distinct):
            continue
        node.set("this", exp.cast(value, _T.DOUBLE))
    return tree


def _branches(node: exp.Expression) -> list[exp.Select]:
    if isinstance(node, exp.SetOperation):
        return _branches(node.this) + _branches(node.expression)
    if isinstance(node, exp.Subquery):
        return _branches(node.this)
    return [node] if isinstance(node, exp.Select) else []


def _union_names(tree: exp.Expression) -> exp.Expression:
    """A set operation's columns are named by its first SELECT; the later SELECTs' columns
    take the same names, so none repeats a name there (``SELECT id, t, id …``), which Spark's
    optimizer fails on (``PLAN_VALIDATION_FAILED_RULE_IN_BATCH``)."""
    for node in list(tree.find_all(exp.SetOperation)):
        if isinstance(node.parent, exp.SetOperation):
            continue  # the outermost one renames every branch
        first, *others = _branches(node)
        names = [e.alias_or_name for e in first.expressions]
        if not all(names) or "*" in names or len(set(names)) != len(names):
            continue
        for select in others:
            items = select.expressions
            if len(items) != len(names) or any(isinstance(e, exp.Star) for e in items):
                continue
            for item, name in zip(items, names, strict=True):
                if item.alias_or_name != name:
                    item.replace(exp.alias_(_unaliased(item).copy(), name))
    return tree


#: rewrites of the parsed (and, when the inputs' schemas are known, qualified and typed)
#: DuckDB SELECT, in order, where sqlglot alone gives other results on Spark
PASSES = (
    _boundary_date_diff,
    _epochs,
    _interval_constructors,
    _infinite_times,
    _bigint_results,
    _hugeint_sums,
    _calendar,
    _lists,
    _subscripts_with_unnest,
    _hoisted_unnest,
    _json_structures,
    _arg_min_max,
    _float_division,
    _float_average,
    _union_names,
)


def _qualified(tree: exp.Expression, schema: dict[str, object]) -> exp.Expression:
    """*tree* with every column qualified and stars expanded against *schema* (view →
    column → Spark type), its expressions annotated with types; *tree* unchanged (and
    untyped) when sqlglot cannot qualify it."""
    from sqlglot.optimizer.annotate_types import annotate_types
    from sqlglot.optimizer.qualify import qualify
    from sqlglot.schema import MappingSchema

    outer = _branches(tree)[:1]
    unnamed = [
        i
        for i, e in enumerate(outer[0].expressions if outer else [])
        if not isinstance(e, exp.Alias | exp.Column | exp.Star)
    ]
    if outer and any(isinstance(e, exp.Star) or e.is_star for e in outer[0].expressions):
        unnamed = []  # stars expand: positions move
    try:
        mapping = MappingSchema(dict(schema), dialect="spark", normalize=False)
        done = qualify(
            tree.copy(),
            dialect="duckdb",
            schema=mapping,
            quote_identifiers=False,
            validate_qualify_columns=False,
            identify=False,
        )
        for i in unnamed:  # an unnamed output keeps the engine's name, not "_col_<i>"
            item = _branches(done)[0].expressions[i]
            if isinstance(item, exp.Alias) and item.alias.startswith("_col_"):
                item.replace(item.this)
        for node in done.find_all(exp.FromJson):  # a type sqlglot cannot infer
            shape = node.expression
            if isinstance(shape, exp.Literal) and shape.is_string:
                with contextlib.suppress(ValueError, sqlglot.errors.SqlglotError):
                    kind = _spark_type(json.loads(shape.name))
                    node.type = exp.DataType.build(kind, dialect="spark")
        return annotate_types(done, schema=mapping, dialect="duckdb", overwrite_types=False)
    except (sqlglot.errors.SqlglotError, KeyError, ValueError, TypeError):
        return tree


def to_spark_sql(
    sql: str,
    views: Mapping[str, str] | None = None,
    schemas: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """Transpile one DuckDB SELECT to Spark SQL, pointing references to inputs at their views.

    With the inputs' *schemas*, the SELECT is first qualified and typed (sqlglot's
    optimizer), so the passes that depend on types (``epoch_ms`` of a timestamp, the
    DOUBLE of ``/`` and ``avg``, ``len`` of a list…) apply; without them, those keep
    sqlglot's reading.

    Args:
        sql: the SELECT, in DuckDB's dialect.
        views: input name (as written in *sql*, e.g. ``refined.clicks``) → view name.
        schemas: input name → column → type in Spark's syntax (``timestamp``,
            ``array<struct<a:bigint>>``…).

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
    if schemas:
        by_view: dict[str, object] = {views.get(k.lower(), k): dict(v) for k, v in schemas.items()}
        tree = _qualified(tree, by_view)
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


def _java_message(exc: Exception) -> str:
    """The first line of the innermost Java cause's message (what Spark refused)."""
    message = ""
    cause = getattr(exc, "java_exception", None)
    for _ in range(20):  # a cause chain is short; never follow a cycle
        if cause is None:
            break
        message = str(cause.getMessage() or "").strip() or message
        cause = cause.getCause()
    return message.splitlines()[0] if message else str(exc).strip().splitlines()[0]


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
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    views = {name: view_name(name) for name in inputs}
    schemas: dict[str, dict[str, str]] = {}
    try:
        for name, data in inputs.items():
            frame = _frame(spark, data, io_properties or {})
            frame.createOrReplaceTempView(views[name])
            schemas[name] = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
        result = spark.sql(to_spark_sql(sql, views, schemas)).toArrow()
    except PySparkException as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SqlError(message, source="spark") from exc
    except Py4JJavaError as exc:  # failed in the JVM outside pyspark's error classes
        raise SqlError(_java_message(exc), source="spark") from exc
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
