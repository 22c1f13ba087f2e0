"""Partial aggregate states: what a window keeps between micro-batches, and how they merge.

An aggregate is split into three Polars expression lists, like a combiner:

* ``batch`` — from raw rows to partial columns (run inside a ``group_by``),
* ``merge`` — from partial columns to partial columns (re-aggregating concatenated states),
* ``final`` — from partial columns to the output value, with Flink's result type.

Partial states: COUNT → count; SUM → sum and non-null count (SUM of nothing is NULL);
AVG → sum and count; MIN/MAX → min/max; COUNT(DISTINCT x) → the list of distinct values.

Result types follow Flink's ``LogicalTypeMerging.findSumAggType`` / ``findAvgAggType``: COUNT
is BIGINT and never NULL; SUM and AVG keep the argument's type (SUM(INT) is INT, AVG(BIGINT)
is BIGINT with Java's truncating division), except DECIMAL(p, s): SUM → DECIMAL(38, s); MIN
and MAX keep the argument's type. ``agg(…) FILTER (WHERE f)`` counts only rows where ``f``
is TRUE.

>>> p = Partials([AggSpec("n", "count_star"), AggSpec("s", "sum", "x")], {"x": pa.int32()})
>>> p.output_types
{'n': DataType(int64), 's': DataType(int32)}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl
import pyarrow as pa

from fluvial.errors import PipelineError, UnsupportedSqlError
from fluvial.stream.ops.spec import AggSpec

__all__ = ["Partials"]


class Partials:
    """The partial-state expressions for a list of aggregates over known argument types."""

    def __init__(
        self,
        aggs: Sequence[AggSpec],
        arg_types: Mapping[str, pa.DataType],
        *,
        signed: bool = False,
    ) -> None:
        self.aggs = tuple(aggs)
        #: over a changelog: each row carries ``__sign`` (+1 added, -1 retracted), and a
        #: ``__rows`` partial counts a group's live rows (0: the group is gone)
        self.signed = signed
        self.batch: list[pl.Expr] = []
        self.merge: list[pl.Expr] = []
        self.final: list[pl.Expr] = []
        self.columns: list[str] = []
        self.output_types: dict[str, pa.DataType] = {}
        names = [a.name for a in self.aggs]
        if len(set(names)) != len(names):
            raise PipelineError(f"aggregate names must be unique; found {names}")
        for i, agg in enumerate(self.aggs):
            self._add(i, agg, arg_types)
        if signed:
            self._part("__rows", pl.col("__sign").sum().cast(pl.Int64), "sum")

    # -- construction -------------------------------------------------------------------------

    def _add(self, i: int, agg: AggSpec, arg_types: Mapping[str, pa.DataType]) -> None:
        p = f"__p{i}"
        sign = pl.col("__sign") if self.signed else None
        if self.signed and agg.func not in ("count_star", "count", "sum", "avg"):
            raise UnsupportedSqlError(
                f"{agg.func.upper().replace('_', ' ')} over an updating input is not supported "
                "yet (only COUNT, SUM and AVG retract)"
            )
        if agg.func == "count_star":
            if sign is not None:
                rows = sign if agg.filter is None else _is_true(agg.filter).cast(pl.Int64) * sign
                self._part(f"{p}c", rows.sum().cast(pl.Int64), "sum")
            elif agg.filter is None:
                self._part(f"{p}c", pl.len().cast(pl.Int64), "sum")
            else:
                self._part(f"{p}c", _is_true(agg.filter).sum().cast(pl.Int64), "sum")
            self.final.append(pl.col(f"{p}c").alias(agg.name))
            self.output_types[agg.name] = pa.int64()
            return
        if agg.arg is None:
            raise PipelineError(f"aggregate {agg.name!r} ({agg.func}) needs an argument column")
        if agg.arg not in arg_types:
            raise PipelineError(
                f"aggregate {agg.name!r} reads column {agg.arg!r}, which the input lacks; "
                f"found columns {sorted(arg_types)}"
            )
        arg_type = arg_types[agg.arg]
        value = pl.col(agg.arg)
        if agg.filter is not None:
            value = pl.when(_is_true(agg.filter)).then(value)
        if agg.func == "count":
            if sign is not None:
                counted = (value.is_not_null().cast(pl.Int64) * sign).sum()
                self._part(f"{p}c", counted.cast(pl.Int64), "sum")
            else:
                self._part(f"{p}c", value.count().cast(pl.Int64), "sum")
            self.final.append(pl.col(f"{p}c").alias(agg.name))
            self.output_types[agg.name] = pa.int64()
        elif agg.func == "count_distinct":
            self._part(f"{p}d", value.drop_nulls().unique(), "distinct")
            self.final.append(pl.col(f"{p}d").list.len().cast(pl.Int64).alias(agg.name))
            self.output_types[agg.name] = pa.int64()
        elif agg.func in ("min", "max"):
            self._part(f"{p}m", getattr(value, agg.func)(), agg.func)
            self.final.append(pl.col(f"{p}m").alias(agg.name))
            self.output_types[agg.name] = arg_type
        elif agg.func in ("sum", "avg"):
            self._sum_or_avg(p, agg, value, arg_type)
        else:  # pragma: no cover - AggFunc is a closed Literal
            raise PipelineError(f"unknown aggregate function {agg.func!r}")

    def _sum_or_avg(self, p: str, agg: AggSpec, value: pl.Expr, arg_type: pa.DataType) -> None:
        if pa.types.is_integer(arg_type):
            acc = value.cast(pl.Int64)
        elif pa.types.is_floating(arg_type):
            acc = value.cast(pl.Float64)
        elif pa.types.is_decimal(arg_type) and agg.func == "sum":
            acc = value.cast(pl.Decimal(38, arg_type.scale))
        else:
            what = "AVG" if agg.func == "avg" else "SUM"
            if pa.types.is_decimal(arg_type):
                raise UnsupportedSqlError(f"{what} of DECIMAL is not supported yet ({agg.name!r})")
            raise PipelineError(
                f"{what}({agg.arg}) needs a numeric argument; found type {arg_type}"
            )
        if self.signed:
            sign = pl.col("__sign")
            self._part(f"{p}s", (acc * sign).sum(), "sum")
            self._part(f"{p}n", (value.is_not_null().cast(pl.Int64) * sign).sum(), "sum")
        else:
            self._part(f"{p}s", acc.sum(), "sum")
            self._part(f"{p}n", value.count().cast(pl.Int64), "sum")
        total, n = pl.col(f"{p}s"), pl.col(f"{p}n")
        if agg.func == "sum":
            result = total
            self.output_types[agg.name] = (
                pa.decimal128(38, arg_type.scale) if pa.types.is_decimal(arg_type) else arg_type
            )
        elif pa.types.is_integer(arg_type):
            # Flink divides its BIGINT accumulator by the count in Java: truncation toward 0.
            result = (total.abs() // n) * total.sign()
            self.output_types[agg.name] = arg_type
        else:
            result = total / n
            self.output_types[agg.name] = arg_type
        self.final.append(pl.when(n > 0).then(result).alias(agg.name))

    def _part(self, column: str, batch: pl.Expr, how: str) -> None:
        self.columns.append(column)
        self.batch.append(batch.alias(column))
        col = pl.col(column)
        merged = col.explode().drop_nulls().unique() if how == "distinct" else getattr(col, how)()
        self.merge.append(merged.alias(column))


def _is_true(column: str) -> pl.Expr:
    return pl.col(column).fill_null(False)
