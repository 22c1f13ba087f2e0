"""Interval literals: ``INTERVAL '10' SECOND`` → milliseconds, and back.

>>> import sqlglot
>>> from fluvial.stream.sql.dialect import Flink
>>> interval_ms(sqlglot.parse_one("INTERVAL '10' MINUTES", read=Flink))
600000
>>> interval_ms(sqlglot.parse_one("INTERVAL '1.5' SECOND", read=Flink))
1500
>>> interval_sql(90_000)
"INTERVAL '90' SECOND"
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from sqlglot import exp

from fluvial.errors import SqlError

__all__ = ["UNIT_MS", "interval_ms", "interval_sql"]

# Day-time interval units Flink accepts (singular and plural), in milliseconds.
UNIT_MS: dict[str, int] = {
    "MILLISECOND": 1,
    "SECOND": 1_000,
    "MINUTE": 60_000,
    "HOUR": 3_600_000,
    "DAY": 86_400_000,
}


def _unit(name: str) -> int | None:
    name = name.upper()
    return UNIT_MS.get(name) or UNIT_MS.get(name[:-1] if name.endswith("S") else name)


def interval_ms(node: exp.Expression) -> int:
    """Milliseconds of a day-time interval literal; :class:`SqlError` for anything else."""
    if not isinstance(node, exp.Interval):
        raise SqlError(f"expected INTERVAL '<n>' <unit>, found {node.sql()}")
    unit_node = node.args.get("unit")
    unit_name = unit_node.name if unit_node is not None else ""
    value = node.this
    text = value.name if isinstance(value, exp.Literal) else ""
    if not unit_name and " " in text.strip():  # INTERVAL '10 SECOND'
        text, unit_name = text.strip().split(None, 1)
    unit = _unit(unit_name)
    if unit is None:
        raise SqlError(
            f"expected an interval unit among SECOND, MINUTE, HOUR, DAY (or plural), "
            f"found {unit_name or 'none'!r}"
        )
    try:
        amount = Decimal(text.strip())
    except InvalidOperation:
        raise SqlError(f"expected a number in INTERVAL '<n>', found {text!r}") from None
    ms = amount * unit
    if ms != ms.to_integral_value():
        raise SqlError(f"interval {text} {unit_name} is not a whole number of milliseconds")
    return int(ms)


def interval_sql(ms: int) -> str:
    """The shortest exact ``INTERVAL 'n' UNIT`` for a number of milliseconds."""
    for name in ("DAY", "HOUR", "MINUTE", "SECOND"):
        if ms and ms % UNIT_MS[name] == 0:
            return f"INTERVAL '{ms // UNIT_MS[name]}' {name}"
    return f"INTERVAL '{ms / 1000:g}' SECOND" if ms % 1 == 0 and ms else "INTERVAL '0' SECOND"
