"""Quality rules: what a table's rows must satisfy, in the spirit of DQDL.

One frozen dataclass per rule kind; :mod:`fluvial.quality.parse` reads them from YAML.
A row-level rule says which rows fail (they can be quarantined); the others judge the
batch as a whole.

>>> IsUnique(key=("a", "b")).default_name(), IsUnique.row_level
('IsUnique(a, b)', True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Literal

__all__ = [
    "SEVERITIES",
    "Bounds",
    "ColumnValues",
    "CustomSql",
    "DataFreshness",
    "DetectAnomalies",
    "IsComplete",
    "IsPrimaryKey",
    "IsUnique",
    "ReferentialIntegrity",
    "RowCount",
    "Rule",
    "Severity",
]

Severity = Literal["warn", "error"]
SEVERITIES: tuple[Severity, ...] = ("error", "warn")


@dataclass(frozen=True, kw_only=True)
class Bounds:
    """Inclusive bounds on a number: ``min``, ``max``, ``between: [lo, hi]`` or ``equals``.

    >>> Bounds(min=1, max=3).holds(2), Bounds(min=1).holds(0), Bounds().holds(5)
    (True, False, True)
    >>> str(Bounds(min=1, max=3))
    'between 1 and 3'
    """

    min: float | None = None
    max: float | None = None

    @property
    def empty(self) -> bool:
        return self.min is None and self.max is None

    def holds(self, value: float | None) -> bool:
        """Whether *value* lies within the bounds (None never does unless there are none)."""
        if self.empty:
            return True
        if value is None:
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        if self.min is not None and self.min == self.max:
            return f"= {_num(self.min)}"
        if self.min is not None and self.max is not None:
            return f"between {_num(self.min)} and {_num(self.max)}"
        if self.min is not None:
            return f">= {_num(self.min)}"
        if self.max is not None:
            return f"<= {_num(self.max)}"
        return "any"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One quality rule. Subclasses are the rule kinds; ``name`` identifies it in results."""

    kind: ClassVar[str] = ""
    #: a row-level rule says which rows fail (they can be quarantined)
    row_level: ClassVar[bool] = False
    severity: Severity = "error"
    name: str = ""

    def columns(self) -> tuple[str, ...]:
        """Columns of the checked table this rule reads (validated before it runs)."""
        return ()

    def default_name(self) -> str:
        cols = self.columns()
        return f"{self.kind}({', '.join(cols)})" if cols else self.kind


@dataclass(frozen=True, kw_only=True)
class IsComplete(Rule):
    """Every value of ``column`` is non-null; the null rows fail."""

    kind: ClassVar[str] = "IsComplete"
    row_level: ClassVar[bool] = True
    column: str

    def columns(self) -> tuple[str, ...]:
        return (self.column,)


@dataclass(frozen=True, kw_only=True)
class IsUnique(Rule):
    """No two rows share a value of ``columns``; every copy of a repeated key fails.

    Rows with a null in any key column are not compared (SQL ``UNIQUE`` semantics).
    """

    kind: ClassVar[str] = "IsUnique"
    row_level: ClassVar[bool] = True
    key: tuple[str, ...]

    def columns(self) -> tuple[str, ...]:
        return self.key


@dataclass(frozen=True, kw_only=True)
class IsPrimaryKey(Rule):
    """``columns`` are complete and unique: rows with a null key or a repeated key fail."""

    kind: ClassVar[str] = "IsPrimaryKey"
    row_level: ClassVar[bool] = True
    key: tuple[str, ...]

    def columns(self) -> tuple[str, ...]:
        return self.key


@dataclass(frozen=True, kw_only=True)
class ColumnValues(Rule):
    """Each non-null value of ``column`` satisfies every condition given.

    Conditions: ``in`` / ``not_in`` (lists), ``min`` / ``max`` / ``between`` (inclusive;
    numbers, dates or strings, compared in the column's type), ``matches`` (a regular
    expression the whole value must match). Nulls pass unless ``allow_null: false``.
    """

    kind: ClassVar[str] = "ColumnValues"
    row_level: ClassVar[bool] = True
    column: str
    in_: tuple[Any, ...] | None = None
    not_in: tuple[Any, ...] | None = None
    min: Any = None
    max: Any = None
    matches: str | None = None
    allow_null: bool = True

    def columns(self) -> tuple[str, ...]:
        return (self.column,)


@dataclass(frozen=True, kw_only=True)
class RowCount(Rule):
    """The number of rows lies within ``bounds`` and, with ``within_pct``, within that many
    percent of the mean of the last ``last_runs`` recorded runs (once ``min_history`` exist).
    """

    kind: ClassVar[str] = "RowCount"
    bounds: Bounds = field(default_factory=Bounds)
    within_pct: float | None = None
    last_runs: int = 7
    min_history: int = 1


@dataclass(frozen=True, kw_only=True)
class ReferentialIntegrity(Rule):
    """Each non-null value of ``columns`` exists in ``ref_columns`` of the lake table
    ``ref_table``; the rows whose value does not fail.
    """

    kind: ClassVar[str] = "ReferentialIntegrity"
    row_level: ClassVar[bool] = True
    key: tuple[str, ...]
    ref_table: str
    ref_key: tuple[str, ...]

    def columns(self) -> tuple[str, ...]:
        return self.key

    def default_name(self) -> str:
        return f"{self.kind}({', '.join(self.key)} -> {self.ref_table}.{', '.join(self.ref_key)})"


@dataclass(frozen=True, kw_only=True)
class DataFreshness(Rule):
    """The newest value of the time ``column`` is at most ``max_age`` old (naive = UTC)."""

    kind: ClassVar[str] = "DataFreshness"
    column: str
    max_age: timedelta

    def columns(self) -> tuple[str, ...]:
        return (self.column,)


@dataclass(frozen=True, kw_only=True)
class CustomSql(Rule):
    """A DuckDB query over the view ``data`` (the rows checked; lake tables by ``zone.name``).

    With ``bounds``, the query returns one number that must lie within them. With
    ``rows: true`` it returns failing rows: every input row whose values of the returned
    columns equal a returned row fails (so ``SELECT * FROM data WHERE …`` or
    ``SELECT order_id FROM data WHERE …`` both work).
    """

    kind: ClassVar[str] = "CustomSql"
    sql: str
    bounds: Bounds = field(default_factory=Bounds)
    rows: bool = False

    @property
    def row_level(self) -> bool:  # type: ignore[override]
        return self.rows


@dataclass(frozen=True, kw_only=True)
class DetectAnomalies(Rule):
    """The current ``metric`` (``row_count``, or ``null_rate`` of ``column``) is no outlier
    against the last ``last_runs`` recorded runs, by ``method`` ``zscore`` (|z| > threshold,
    default 3) or ``iqr`` (outside [Q1 − k·IQR, Q3 + k·IQR], k = threshold, default 1.5).
    With fewer than ``min_history`` runs recorded the rule passes (not enough history).
    Differences up to ``tolerance`` are never anomalies.
    """

    kind: ClassVar[str] = "DetectAnomalies"
    metric: Literal["row_count", "null_rate"]
    column: str | None = None
    method: Literal["zscore", "iqr"] = "zscore"
    threshold: float | None = None
    min_history: int = 5
    last_runs: int = 30
    tolerance: float = 0.0

    def columns(self) -> tuple[str, ...]:
        return (self.column,) if self.column else ()

    def default_name(self) -> str:
        what = f"null_rate({self.column})" if self.column else self.metric
        return f"{self.kind}({what})"

    @property
    def metric_key(self) -> str:
        """The history metric this rule watches (``row_count`` or ``null_rate:<column>``)."""
        return f"null_rate:{self.column}" if self.metric == "null_rate" else "row_count"
