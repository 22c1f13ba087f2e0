"""Evaluating a table's rules on Arrow data: results, failing rows and passing rows.

>>> import pyarrow as pa
>>> from fluvial.quality.parse import parse_rules
>>> data = pa.table({"id": [1, 2, 2, None], "kind": ["a", "b", "z", "a"]})
>>> rules = parse_rules([{"IsPrimaryKey": "id"}, {"ColumnValues": {"column": "kind", "in": ["a", "b"]}}])
>>> report = evaluate(None, "refined.things", data, rules)
>>> report.passed, [r.failing_rows for r in report.results]
(False, [3, 1])
>>> report.failing_rows.to_pydict()["_rule"]
['IsPrimaryKey(id)', 'IsPrimaryKey(id); ColumnValues(kind)', 'IsPrimaryKey(id)']
>>> passing_rows(report, data).to_pydict()
{'id': [1], 'kind': ['a']}
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import sqlglot
from sqlglot import exp

from fluvial.errors import ConfigError, SqlError, UsageError, did_you_mean
from fluvial.quality.checks import ROW, Context, check
from fluvial.quality.rules import (
    CustomSql,
    DetectAnomalies,
    ReferentialIntegrity,
    RowCount,
    Rule,
)

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = [
    "RULE_COLUMN",
    "RULE_SEPARATOR",
    "QualityReport",
    "RuleResult",
    "evaluate",
    "passing_rows",
]

#: the column of ``failing_rows`` naming the error rules a row failed
RULE_COLUMN = "_rule"
#: what separates the names in ``_rule`` when a row failed several rules
RULE_SEPARATOR = "; "
_RESERVED = (ROW, RULE_COLUMN)


@dataclass(frozen=True)
class RuleResult:
    """One rule's result: whether it passed, its metrics, and how many rows failed it."""

    name: str
    kind: str
    severity: str
    passed: bool
    row_level: bool
    failing_rows: int
    message: str
    metrics: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "kind": self.kind,
            "severity": self.severity,
            "passed": self.passed,
            "row_level": self.row_level,
            "failing_rows": self.failing_rows,
            "message": self.message,
            "metrics": dict(self.metrics),
        }


@dataclass(frozen=True, eq=False)
class QualityReport:
    """The result of evaluating a table's rules on one batch of its rows.

    ``failing_rows`` holds every row that failed at least one row-level **error** rule,
    once, in input order, with the column ``_rule`` naming every such rule it failed
    (``"; "``-joined, in rule order); ``failing_index`` holds their positions in the input.
    Rows that fail only ``warn`` rules are counted in ``results`` but not quarantined.
    """

    table: str
    run_id: str
    evaluated_at: datetime
    rows: int
    results: tuple[RuleResult, ...]
    failing_rows: pa.Table
    failing_index: pa.Array
    #: the batch's metrics recorded in history: ``row_count`` and ``null_rate:<column>``
    profile: dict[str, float | None]

    @property
    def passed(self) -> bool:
        """No error-severity rule failed."""
        return all(r.passed for r in self.results if r.severity == "error")

    @property
    def failed(self) -> list[RuleResult]:
        """The error-severity rules that failed."""
        return [r for r in self.results if r.severity == "error" and not r.passed]

    @property
    def warnings(self) -> list[RuleResult]:
        """The warn-severity rules that failed."""
        return [r for r in self.results if r.severity == "warn" and not r.passed]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (without the rows themselves)."""
        return {
            "table": self.table,
            "run_id": self.run_id,
            "evaluated_at": self.evaluated_at.isoformat(),
            "passed": self.passed,
            "rows": self.rows,
            "failing_rows": self.failing_rows.num_rows,
            "results": [r.to_dict() for r in self.results],
            "profile": dict(self.profile),
        }


def _profile(data: pa.Table) -> dict[str, float | None]:
    n = data.num_rows
    profile: dict[str, float | None] = {"row_count": float(n)}
    for name, column in zip(data.column_names, data.columns, strict=True):
        profile[f"null_rate:{name}"] = column.null_count / n if n else None
    return profile


def _validate(rules: list[Rule], data: pa.Table, table: str) -> None:
    names = data.column_names
    for clash in (c for c in _RESERVED if c in names):
        raise UsageError(f"{table}: the column name '{clash}' is reserved by quality checks")
    for rule in rules:
        for column in rule.columns():
            if column not in names:
                raise ConfigError(
                    f"rule '{rule.name}' on {table}: column '{column}' does not exist"
                    f"{did_you_mean(column, names)}"
                )


def _reads_lake(rule: Rule) -> bool:
    if isinstance(rule, ReferentialIntegrity):
        return True
    if isinstance(rule, CustomSql):
        try:
            tree = sqlglot.parse_one(rule.sql, read="duckdb")
        except sqlglot.errors.ParseError as exc:
            raise SqlError(str(exc), source=f"rule '{rule.name}'") from exc
        return any(t.db for t in tree.find_all(exp.Table))
    return False


def _failing(
    data: pa.Table, rule_failures: list[tuple[str, pa.Array]]
) -> tuple[pa.Table, pa.Array]:
    """Rows failing any of the rules once each, with ``_rule``; and their positions.

    Each row gets one bit per rule (in 64-bit words); the distinct bit patterns (few: one
    per combination of rules that occurs) are labelled once, so no string work is per row.
    """
    names = [name for name, _ in rule_failures]
    if not names:
        empty = pa.array([], pa.int64())
        return data.take(empty).append_column(RULE_COLUMN, pa.array([], pa.string())), empty
    words = (len(names) + 63) // 64
    codes = np.zeros((data.num_rows, words), dtype=np.uint64)
    for i, (_, failing) in enumerate(rule_failures):
        codes[failing.to_numpy(zero_copy_only=False), i // 64] |= np.uint64(1 << (i % 64))
    rows = np.flatnonzero(codes.any(axis=1))
    patterns = np.ascontiguousarray(codes[rows])
    keys = patterns[:, 0] if words == 1 else patterns.view(np.dtype((np.void, 8 * words))).ravel()
    distinct, which = np.unique(keys, return_inverse=True)
    labels = []
    for key in distinct:
        word = np.frombuffer(key.tobytes(), dtype=np.uint64)
        labels.append(
            RULE_SEPARATOR.join(
                name for j, name in enumerate(names) if int(word[j // 64]) >> (j % 64) & 1
            )
        )
    rules = pa.DictionaryArray.from_arrays(
        pa.array(which.ravel().astype(np.int32)), pa.array(labels, pa.string())
    ).cast(pa.string())
    index = pa.array(rows.astype(np.int64))
    return data.take(index).append_column(RULE_COLUMN, rules), index


def _lake_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_catalog = current_database() AND table_schema <> 'main'"
    ).fetchall()
    return sorted(r[0] for r in rows)


def _run(rules: list[Rule], ctx: Context) -> tuple[list[RuleResult], list[tuple[str, pa.Array]]]:
    """Check every rule on ``ctx.data`` (registered as ``_input`` / ``data`` meanwhile)."""
    con, data = ctx.con, ctx.data
    source = data.append_column(ROW, pa.array(np.arange(data.num_rows, dtype=np.int64)))
    con.register("_input", source)
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW data AS SELECT * EXCLUDE ({ROW}) FROM _input")
        ctx.types = {r[0]: r[1] for r in con.execute("DESCRIBE data").fetchall()}
        results: list[RuleResult] = []
        failures: list[tuple[str, pa.Array]] = []
        for rule in rules:
            outcome = check(rule, ctx)
            count = 0 if outcome.failing is None else len(outcome.failing)
            results.append(
                RuleResult(
                    rule.name,
                    rule.kind,
                    rule.severity,
                    outcome.passed,
                    rule.row_level,
                    count,
                    outcome.message,
                    outcome.metrics,
                )
            )
            if outcome.failing is not None and count and rule.severity == "error":
                failures.append((rule.name, outcome.failing))
        return results, failures
    finally:
        con.execute("DROP VIEW IF EXISTS data")
        con.unregister("_input")


def evaluate(
    project: Project | None,
    table_name: str,
    data: pa.Table,
    rules: list[Rule] | None = None,
    *,
    now: datetime | None = None,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> QualityReport:
    """Evaluate *table_name*'s rules (or *rules*) on *data*, vectorized: one query per rule.

    Args:
        project: the project (its rule files, history and lake); None only with *rules*
            that need neither history nor other lake tables.
        table_name: the table the data is (or will be) written to, ``zone.name``.
        data: the rows to check.
        rules: the rules; by default the table's rules from the project's files.
        now: the time DataFreshness compares with (default: now, UTC).
        connection: a lake connection (:func:`fluvial.lake.query.connect`) to reuse for
            rules that read other lake tables; by default one is opened when needed.

    Raises:
        ConfigError: a rule file or a rule is wrong for this data (a missing column…).
        SqlError: a CustomSql query failed.
        NotFoundError: a referenced table does not exist.
    """
    if rules is None:
        if project is None:
            raise UsageError("evaluate() needs a project or explicit rules")
        from fluvial.quality.files import load_rules

        rules = load_rules(project, table_name)
    _validate(rules, data, table_name)
    moment = now or datetime.now(UTC)
    history = None
    if project is not None and any(
        isinstance(r, DetectAnomalies) or (isinstance(r, RowCount) and r.within_pct is not None)
        for r in rules
    ):
        from fluvial.quality.history import open_history

        history = open_history(project)
    needs_lake = any(_reads_lake(r) for r in rules)
    lake = None
    if not needs_lake:
        con = duckdb.connect()
    elif connection is not None:
        con = connection
    elif project is not None:
        from fluvial.lake import connect, open_lake

        lake = open_lake(project)
        con = connect(lake)
    else:
        raise UsageError("rules that read other lake tables need a project or a connection")
    try:
        ctx = Context(con, data, table_name, moment, {}, history)
        if needs_lake:
            ctx.lake_tables = _lake_tables(con)
        results, failures = _run(rules, ctx)
    finally:
        if con is not connection:
            con.close()
        if lake is not None:
            lake.close()
    failing, index = _failing(data, failures)
    failing, index = _failing(data, failures)
    return QualityReport(
        table=table_name,
        run_id=uuid.uuid4().hex,
        evaluated_at=moment,
        rows=data.num_rows,
        results=tuple(results),
        failing_rows=failing,
        failing_index=index,
        profile=_profile(data),
    )


def passing_rows(report: QualityReport, data: pa.Table) -> pa.Table:
    """The rows of *data* that failed no row-level error rule (input order kept).

    Together with ``report.failing_rows`` (minus ``_rule``) they are exactly *data*.

    Raises:
        UsageError: *data* is not the table *report* was evaluated on (row count differs).
    """
    if data.num_rows != report.rows:
        raise UsageError(f"the report is of {report.rows:,} row(s), the data has {data.num_rows:,}")
    keep = np.ones(data.num_rows, dtype=bool)
    keep[report.failing_index.to_numpy(zero_copy_only=False)] = False
    return data.filter(pa.array(keep))
