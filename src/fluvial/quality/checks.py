"""How each rule kind is checked: one DuckDB query (or one Arrow kernel) per rule.

The rows under check are registered in DuckDB as ``_input`` with an extra column
``__fluvial_row`` (their position), so a row-level check returns the positions of the
failing rows, and the caller takes them from the original Arrow table unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from fluvial.errors import ConfigError, NotFoundError, SqlError, did_you_mean
from fluvial.lake.query import quote
from fluvial.quality import anomaly
from fluvial.quality.rules import (
    ColumnValues,
    CustomSql,
    DataFreshness,
    DetectAnomalies,
    IsComplete,
    IsPrimaryKey,
    IsUnique,
    ReferentialIntegrity,
    RowCount,
    Rule,
)

if TYPE_CHECKING:
    from fluvial.quality.history import History

__all__ = ["CHECKS", "ROW", "Context", "Outcome", "check"]

#: the position column added to the rows under check
ROW = "__fluvial_row"


@dataclass
class Context:
    """What a check may use: the connection with ``_input`` and ``data``, and history."""

    con: duckdb.DuckDBPyConnection
    data: pa.Table
    table: str
    now: datetime
    #: DuckDB type of every column of ``data``
    types: dict[str, str]
    history: History | None = None
    #: lake tables visible on ``con`` (as ``zone.name``); None when not connected to the lake
    lake_tables: list[str] | None = None


@dataclass
class Outcome:
    """One rule's verdict; ``failing`` holds the failing rows' positions (row-level rules)."""

    passed: bool
    message: str
    metrics: dict[str, float | None] = field(default_factory=dict)
    failing: pa.Array | None = None


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _positions(ctx: Context, sql: str, params: list[Any] | None = None) -> pa.Array:
    """Run a query returning positions; the result as one sorted int64 array."""
    table = ctx.con.execute(sql, params or []).to_arrow_table()
    return table.column(0).combine_chunks().cast(pa.int64())


def _row_outcome(ctx: Context, failing: pa.Array, what: str) -> Outcome:
    n, bad = ctx.data.num_rows, len(failing)
    ratio = bad / n if n else 0.0
    message = f"{bad:,} of {n:,} row(s) {what}" if bad else "ok"
    return Outcome(bad == 0, message, {"failing_ratio": ratio}, failing)


def _cols(cols: tuple[str, ...], prefix: str = "") -> list[str]:
    return [prefix + quote(c) for c in cols]


def _is_complete(rule: IsComplete, ctx: Context) -> Outcome:
    failing = _positions(
        ctx, f"SELECT {ROW} FROM _input WHERE {quote(rule.column)} IS NULL ORDER BY 1"
    )
    outcome = _row_outcome(ctx, failing, f"have a null {rule.column}")
    n = ctx.data.num_rows
    outcome.metrics["completeness"] = 1 - len(failing) / n if n else 1.0
    return outcome


def _is_unique(rule: IsUnique, ctx: Context) -> Outcome:
    key = ", ".join(_cols(rule.key))
    present = " AND ".join(f"{c} IS NOT NULL" for c in _cols(rule.key))
    failing = _positions(
        ctx,
        f"SELECT {ROW} FROM (SELECT {ROW}, count(*) OVER (PARTITION BY {key}) AS _n "
        f"FROM _input WHERE {present}) WHERE _n > 1 ORDER BY 1",
    )
    return _row_outcome(ctx, failing, f"repeat a value of ({', '.join(rule.key)})")


def _is_primary_key(rule: IsPrimaryKey, ctx: Context) -> Outcome:
    key = ", ".join(_cols(rule.key))
    missing = " OR ".join(f"{c} IS NULL" for c in _cols(rule.key))
    failing = _positions(
        ctx,
        f"SELECT {ROW} FROM (SELECT {ROW}, {key}, count(*) OVER (PARTITION BY {key}) AS _n "
        f"FROM _input) WHERE {missing} OR _n > 1 ORDER BY 1",
    )
    return _row_outcome(ctx, failing, f"have a null or repeated key ({', '.join(rule.key)})")


def _column_values(rule: ColumnValues, ctx: Context) -> Outcome:
    col, typ = quote(rule.column), ctx.types[rule.column]
    conditions: list[str] = []
    params: list[Any] = []
    if rule.in_ is not None:
        conditions.append(f"list_contains(CAST(? AS {typ}[]), {col})")
        params.append(list(rule.in_))
    if rule.not_in is not None:
        conditions.append(f"NOT list_contains(CAST(? AS {typ}[]), {col})")
        params.append(list(rule.not_in))
    if rule.min is not None:
        conditions.append(f"{col} >= CAST(? AS {typ})")
        params.append(rule.min)
    if rule.max is not None:
        conditions.append(f"{col} <= CAST(? AS {typ})")
        params.append(rule.max)
    if rule.matches is not None:
        conditions.append(f"regexp_full_match(CAST({col} AS VARCHAR), ?)")
        params.append(rule.matches)
    fails = [f"({col} IS NOT NULL AND NOT ({' AND '.join(conditions)}))"] if conditions else []
    if not rule.allow_null:
        fails.append(f"{col} IS NULL")
    sql = f"SELECT {ROW} FROM _input WHERE {' OR '.join(fails)} ORDER BY 1"
    return _row_outcome(ctx, _positions(ctx, sql, params), f"fail the condition on {rule.column}")


def _row_count(rule: RowCount, ctx: Context) -> Outcome:
    n = ctx.data.num_rows
    metrics: dict[str, float | None] = {"row_count": float(n)}
    problems = [] if rule.bounds.holds(n) else [f"{n:,} row(s), expected {rule.bounds}"]
    note = ""
    if rule.within_pct is not None:
        history = (
            ctx.history.metric_history(ctx.table, "row_count", rule.last_runs)
            if (ctx.history is not None)
            else []
        )
        metrics["history_runs"] = float(len(history))
        if len(history) < rule.min_history:
            note = f"not enough history ({len(history)} of {rule.min_history} run(s))"
        else:
            mean = sum(history) / len(history)
            metrics["history_mean"] = mean
            allowed = rule.within_pct / 100 * mean
            if abs(n - mean) > allowed:
                problems.append(
                    f"{n:,} row(s) is more than {rule.within_pct:g}% from the mean "
                    f"{mean:,.1f} of the last {len(history)} run(s)"
                )
    message = "; ".join(problems) or (f"ok ({note})" if note else "ok")
    return Outcome(not problems, message, metrics)


def _referential(rule: ReferentialIntegrity, ctx: Context) -> Outcome:
    tables = ctx.lake_tables or []
    if rule.ref_table not in tables:
        raise NotFoundError(
            f"rule '{rule.name}' on {ctx.table}: table '{rule.ref_table}' does not exist"
            f"{did_you_mean(rule.ref_table, tables)}"
        )
    zone, _, name = rule.ref_table.partition(".")
    present = " AND ".join(f"i.{quote(c)} IS NOT NULL" for c in rule.key)
    match = " AND ".join(
        f"r.{quote(rc)} = i.{quote(c)}" for c, rc in zip(rule.key, rule.ref_key, strict=True)
    )
    sql = (
        f"SELECT i.{ROW} FROM _input i WHERE {present} AND NOT EXISTS "
        f"(SELECT 1 FROM {quote(zone)}.{quote(name)} r WHERE {match}) ORDER BY 1"
    )
    return _row_outcome(ctx, _positions(ctx, sql), f"reference no row of {rule.ref_table}")


def _as_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    assert isinstance(value, date)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _freshness(rule: DataFreshness, ctx: Context) -> Outcome:
    column = ctx.data.column(rule.column)
    if not (pa.types.is_timestamp(column.type) or pa.types.is_date(column.type)):
        raise ConfigError(
            f"rule '{rule.name}' on {ctx.table}: expected a timestamp or date column, "
            f"found {rule.column} of type {column.type}"
        )
    newest = pc.max(column).as_py()
    limit = rule.max_age.total_seconds()
    if newest is None:
        return Outcome(False, f"{rule.column} has no values", {"max_age_seconds": limit})
    age = (ctx.now - _as_utc(newest)).total_seconds()
    metrics: dict[str, float | None] = {"age_seconds": age, "max_age_seconds": limit}
    if age > limit:
        return Outcome(
            False, f"newest {rule.column} is {age:,.0f} s old (max {limit:,.0f})", metrics
        )
    return Outcome(True, "ok", metrics)


def _custom_sql(rule: CustomSql, ctx: Context) -> Outcome:
    try:
        if rule.rows:
            return _custom_rows(rule, ctx)
        rows = ctx.con.execute(rule.sql).fetchall()
    except duckdb.Error as exc:
        raise SqlError(str(exc).strip(), source=f"rule '{rule.name}' on {ctx.table}") from exc
    if len(rows) != 1 or len(rows[0]) != 1:
        shape = f"{len(rows)} row(s) of {len(rows[0]) if rows else 0} column(s)"
        raise SqlError(f"expected one number, found {shape}", source=f"rule '{rule.name}'")
    value = rows[0][0]
    if value is not None and not isinstance(value, int | float):
        raise SqlError(f"expected a number, found {value!r}", source=f"rule '{rule.name}'")
    number = None if value is None else float(value)
    passed = rule.bounds.holds(number)
    message = "ok" if passed else f"{value} is not {rule.bounds}"
    return Outcome(passed, message, {"value": number})


def _custom_rows(rule: CustomSql, ctx: Context) -> Outcome:
    names = [d[0] for d in ctx.con.execute(f"SELECT * FROM ({rule.sql}) LIMIT 0").description]
    known = [n for n in ctx.data.column_names]
    for name in names:
        if name not in known:
            raise ConfigError(
                f"rule '{rule.name}' on {ctx.table}: the query returns column '{name}', "
                f"which is not a column of the data{did_you_mean(name, known)}"
            )
    on = " AND ".join(f"i.{quote(n)} IS NOT DISTINCT FROM q.{quote(n)}" for n in names)
    sql = f"SELECT i.{ROW} FROM _input i SEMI JOIN ({rule.sql}) q ON {on} ORDER BY 1"
    return _row_outcome(ctx, _positions(ctx, sql), "are returned by the query")


def _anomalies(rule: DetectAnomalies, ctx: Context) -> Outcome:
    n = ctx.data.num_rows
    if rule.metric == "row_count":
        value: float | None = float(n)
    else:
        assert rule.column is not None
        value = ctx.data.column(rule.column).null_count / n if n else None
    if value is None:
        return Outcome(True, "ok (no rows: no null rate)", {"value": None})
    history = (
        ctx.history.metric_history(ctx.table, rule.metric_key, rule.last_runs)
        if ctx.history is not None
        else []
    )
    metrics: dict[str, float | None] = {"value": value, "history_runs": float(len(history))}
    if len(history) < rule.min_history:
        note = f"not enough history ({len(history)} of {rule.min_history} run(s))"
        return Outcome(True, f"ok ({note})", metrics)
    if rule.method == "zscore":
        threshold = 3.0 if rule.threshold is None else rule.threshold
        verdict = anomaly.zscore(value, history, threshold=threshold, tolerance=rule.tolerance)
    else:
        threshold = 1.5 if rule.threshold is None else rule.threshold
        verdict = anomaly.iqr(value, history, k=threshold, tolerance=rule.tolerance)
    metrics.update(low=verdict.low, high=verdict.high, score=_finite(verdict.score))
    if verdict.anomaly:
        return Outcome(
            False,
            f"{rule.metric_key} {value:,.6g} is outside the expected "
            f"{verdict.low:,.6g} .. {verdict.high:,.6g} ({rule.method}, {len(history)} run(s))",
            metrics,
        )
    return Outcome(True, "ok", metrics)


_Check = Callable[[Any, Context], Outcome]

#: the check of every rule class
CHECKS: dict[type[Rule], _Check] = {
    IsComplete: _is_complete,
    IsUnique: _is_unique,
    IsPrimaryKey: _is_primary_key,
    ColumnValues: _column_values,
    RowCount: _row_count,
    ReferentialIntegrity: _referential,
    DataFreshness: _freshness,
    CustomSql: _custom_sql,
    DetectAnomalies: _anomalies,
}


def check(rule: Rule, ctx: Context) -> Outcome:
    """Check one rule; DuckDB's errors become a ConfigError naming the rule.

    Raises:
        ConfigError: the rule cannot run on this data (a parameter of the wrong type…).
        SqlError: a CustomSql query failed.
        NotFoundError: a referenced table does not exist.
    """
    try:
        return CHECKS[type(rule)](rule, ctx)
    except duckdb.Error as exc:
        raise ConfigError(f"rule '{rule.name}' on {ctx.table}: {str(exc).strip()}") from exc
