"""The planner's common ground: its inputs (the script, its settings), errors that point
at a line and column, durations; and the signatures its parts call on one another."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from sqlglot import exp

from fluvial.errors import SqlError, UnsupportedSqlError
from fluvial.stream.connectors.options import Options
from fluvial.stream.ops.spec import AggFunc
from fluvial.stream.plan.exprs import where
from fluvial.stream.sql.ast import CreateTable, Script

if TYPE_CHECKING:
    from fluvial.stream.plan.exprs import Rel

__all__ = [
    "AGG_FUNCS",
    "LATENESS_OPTION",
    "LEGACY_AUX",
    "LEGACY_WINDOWS",
    "STATE_TTL_KEY",
    "UNSUPPORTED_AGGS",
    "WATERMARK_INTERVAL_KEY",
    "WINDOW_COLUMNS",
    "PlannerBase",
    "parse_duration_ms",
]

WATERMARK_INTERVAL_KEY = "pipeline.auto-watermark-interval"
#: Flink's idle state retention: applies to unbounded operators (windows clean by watermark)
STATE_TTL_KEY = "table.exec.state.ttl"


WINDOW_COLUMNS = ("window_start", "window_end", "window_time")
#: legacy group-window auxiliary functions -> the window column they stand for
LEGACY_AUX = {"START": "window_start", "END": "window_end", "ROWTIME": "window_time"}
LEGACY_WINDOWS = ("TUMBLE", "HOP", "SESSION")
#: Fluvial's table option (an extension of Flink's) on a source table with a WATERMARK
LATENESS_OPTION = "fluvial.allowed-lateness"

AGG_FUNCS: dict[type[exp.Expr], AggFunc] = {
    exp.Count: "count",
    exp.Sum: "sum",
    exp.Avg: "avg",
    exp.Min: "min",
    exp.Max: "max",
}
UNSUPPORTED_AGGS = (exp.AggFunc,)


class PlannerBase:
    """State and helpers every part of the planner (joins, ranks, the rest) uses."""

    def __init__(self, script: Script, settings: Mapping[str, str] | None = None) -> None:
        self.script = script
        self.tables = script.tables
        self.views = {name: v.query for name, v in script.views.items()}
        self.settings = dict(script.settings if settings is None else settings)
        interval = self.settings.get(WATERMARK_INTERVAL_KEY)
        try:
            self.row_watermarks = interval is not None and parse_duration_ms(interval) == 0
        except SqlError as exc:
            raise SqlError(
                f"SET '{WATERMARK_INTERVAL_KEY}': {exc.detail}", source=script.source
            ) from exc

    def duration(self, table: CreateTable, option: str, value: str | None) -> int:
        if not value:
            return 0
        try:
            return parse_duration_ms(value)
        except SqlError as exc:
            raise Options(table).error(f"option '{option}': {exc.detail}") from exc

    # errors ----------------------------------------------------------------
    def error(self, message: str, node: exp.Expr | None = None) -> SqlError:
        line, col = where(node)
        return SqlError(message, line=line, column=col, source=self.script.source)

    def unsupported(self, what: str, node: exp.Expr | None = None) -> SqlError:
        line, col = where(node)
        return UnsupportedSqlError(
            f"{what} is not supported yet", line=line, column=col, source=self.script.source
        )

    if TYPE_CHECKING:  # implemented by the planner (build.py); called across its parts

        def relation(self, node: exp.Expression, ctes: dict[str, exp.Expr]) -> Rel: ...
        def query(self, q: exp.Expr, ctes: dict[str, exp.Expr]) -> Rel: ...
        def resolve(self, q: exp.Select, rel: Rel) -> exp.Select: ...
        def tvf_rows(self, rel: Rel) -> Rel: ...
        def calc(self, q: exp.Select, rel: Rel) -> Rel: ...
        def check_columns(self, node: exp.Expression, rel: Rel) -> None: ...
        def expand(self, q: exp.Select, rel: Rel) -> list[exp.Expression]: ...
        def names(self, items: list[exp.Expression]) -> list[str]: ...


def parse_duration_ms(text: str) -> int:
    """A Flink duration (``10 s``, ``500ms``, ``1 min``, ``2h``, a bare number = ms) in ms.

    >>> parse_duration_ms("10 s"), parse_duration_ms("1min"), parse_duration_ms("250")
    (10000, 60000, 250)
    """
    import re

    units = {
        "ms": 1,
        "milli": 1,
        "millis": 1,
        "millisecond": 1,
        "milliseconds": 1,
        "s": 1000,
        "sec": 1000,
        "secs": 1000,
        "second": 1000,
        "seconds": 1000,
        "min": 60_000,
        "m": 60_000,
        "mins": 60_000,
        "minute": 60_000,
        "minutes": 60_000,
        "h": 3_600_000,
        "hour": 3_600_000,
        "hours": 3_600_000,
        "d": 86_400_000,
        "day": 86_400_000,
        "days": 86_400_000,
    }
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or (m.group(2) and m.group(2).lower() not in units):
        raise SqlError(f"expected a duration such as '10 s', '500 ms' or '1 min', found {text!r}")
    return int(float(m.group(1)) * units[m.group(2).lower() or "ms"])
