"""Flink SQL expressions → DuckDB SQL text.

Data first: :data:`FUNCTIONS` maps a Flink function name to DuckDB templates by arity
(``{0}``, ``{1}`` … are the translated arguments, ``{*}`` all of them); code handles only
what a template cannot say (Java date patterns, CAST types, units, FLOOR/CEIL ``TO``).

>>> import sqlglot
>>> from fluvial.stream.sql.dialect import Flink
>>> to_duckdb(sqlglot.parse_one("SPLIT_INDEX(s, ',', 1)", read=Flink))
"(CASE WHEN 1 >= 0 THEN string_split(s, ',')[1 + 1] END)"
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from fluvial.errors import SqlError, UnsupportedSqlError, did_you_mean
from fluvial.stream.sql.dialect import MapLiteral
from fluvial.stream.sql.intervals import interval_ms
from fluvial.stream.sql.types import duckdb_type, from_sqlglot

__all__ = ["FUNCTIONS", "java_to_strftime", "to_duckdb"]

_TS = "%Y-%m-%d %H:%M:%S"

# Flink function → {arity: DuckDB template}; arity -1 is variadic ({*}).
FUNCTIONS: dict[str, dict[int, str]] = {
    # strings
    "CONCAT": {-1: "({' || '})"},  # NULL if any argument is NULL, like Flink
    "CONCAT_WS": {-1: "concat_ws({*})"},  # skips NULL arguments, like Flink
    "UPPER": {1: "upper({0})"},
    "LOWER": {1: "lower({0})"},
    "SUBSTR": {2: "substring({0}, {1})", 3: "substring({0}, {1}, {2})"},
    "SUBSTRING": {2: "substring({0}, {1})", 3: "substring({0}, {1}, {2})"},
    "CHAR_LENGTH": {1: "length({0})"},
    "CHARACTER_LENGTH": {1: "length({0})"},
    "REPLACE": {3: "replace({0}, {1}, {2})"},
    "REGEXP_EXTRACT": {
        2: "(CASE WHEN regexp_matches({0}, {1}) THEN regexp_extract({0}, {1}, 0) END)",
        3: "(CASE WHEN regexp_matches({0}, {1}) THEN regexp_extract({0}, {1}, {2}) END)",
    },
    "REGEXP_REPLACE": {3: "regexp_replace({0}, {1}, {2}, 'g')"},
    "REGEXP": {2: "regexp_matches({0}, {1})"},
    "SPLIT_INDEX": {3: "(CASE WHEN {2} >= 0 THEN string_split({0}, {1})[{2} + 1] END)"},
    "INITCAP": {
        1: "array_to_string(list_transform(string_split(lower({0}), ' '), "
        "lambda w: upper(w[1]) || w[2:]), ' ')"
    },
    "LTRIM": {1: "ltrim({0})"},
    "RTRIM": {1: "rtrim({0})"},
    "LPAD": {3: "lpad({0}, {1}, {2})"},
    "RPAD": {3: "rpad({0}, {1}, {2})"},
    "REPEAT": {2: "repeat({0}, {1})"},
    "REVERSE": {1: "reverse({0})"},
    "LOCATE": {2: "strpos({1}, {0})"},
    "LEFT": {2: "left({0}, {1})"},
    "RIGHT": {2: "right({0}, {1})"},
    "MD5": {1: "md5({0})"},
    "SHA256": {1: "sha256({0})"},
    "UUID": {0: "CAST(uuid() AS VARCHAR)"},
    # conditional
    "COALESCE": {-1: "coalesce({*})"},
    "IFNULL": {2: "coalesce({0}, {1})"},
    "NULLIF": {2: "nullif({0}, {1})"},
    "GREATEST": {-1: "greatest({*})"},
    "LEAST": {-1: "least({*})"},
    # numbers
    "ABS": {1: "abs({0})"},
    "MOD": {2: "({0} % {1})"},
    "POWER": {2: "power({0}, {1})"},
    "SQRT": {1: "sqrt({0})"},
    "LN": {1: "ln({0})"},
    "LOG10": {1: "log10({0})"},
    "EXP": {1: "exp({0})"},
    "ROUND": {1: "round({0})", 2: "round({0}, {1})"},
    "SIGN": {1: "sign({0})"},
    # date and time
    "TO_TIMESTAMP": {
        1: f"CAST(try_strptime({{0}}, '{_TS}') AS TIMESTAMP_MS)",
    },
    "TO_DATE": {1: "CAST({0} AS DATE)"},
    "UNIX_TIMESTAMP": {
        0: "CAST(epoch(current_timestamp) AS BIGINT)",
        1: f"CAST(epoch(strptime({{0}}, '{_TS}')) AS BIGINT)",
    },
    "FROM_UNIXTIME": {1: f"strftime(make_timestamp(CAST({{0}} AS BIGINT) * 1000000), '{_TS}')"},
    "NOW": {0: "current_timestamp"},
    # processing time: when the micro-batch is processed (TIMESTAMP_LTZ(3))
    "PROCTIME": {0: "CAST(current_timestamp AS TIMESTAMPTZ)"},
    "LOCALTIMESTAMP": {0: "CAST(current_localtimestamp() AS TIMESTAMP_MS)"},
    "YEAR": {1: "year({0})"},
    "QUARTER": {1: "quarter({0})"},
    "MONTH": {1: "month({0})"},
    "WEEK": {1: "week({0})"},
    "DAYOFYEAR": {1: "dayofyear({0})"},
    "DAYOFMONTH": {1: "day({0})"},
    "DAYOFWEEK": {1: "(dayofweek({0}) + 1)"},  # Flink: Sunday = 1
    "HOUR": {1: "hour({0})"},
    "MINUTE": {1: "minute({0})"},
    "SECOND": {1: "second({0})"},
    # collections
    "CARDINALITY": {1: "len({0})"},
    "ROW_NUMBER": {0: "row_number()"},
}

# Functions whose arguments need code (Java patterns, units): handled in _special.
_SPECIAL = {
    "DATE_FORMAT",
    "TO_TIMESTAMP",
    "TO_DATE",
    "UNIX_TIMESTAMP",
    "FROM_UNIXTIME",
    "TIMESTAMPADD",
    "TIMESTAMPDIFF",
}
_NAMED_SYNTAX = {
    "CAST",
    "TRY_CAST",
    "EXTRACT",
    "FLOOR",
    "CEIL",
    "POSITION",
    "TRIM",
    "IF",
    "JSON_VALUE",
    "COUNT",
    "SUM",
    "MIN",
    "MAX",
    "AVG",
}
SUPPORTED = sorted(set(FUNCTIONS) | _SPECIAL | _NAMED_SYNTAX)

_DUCK_UNIT = {
    "SECOND": "second",
    "MINUTE": "minute",
    "HOUR": "hour",
    "DAY": "day",
    "WEEK": "week",
    "MONTH": "month",
    "QUARTER": "quarter",
    "YEAR": "year",
    "MILLISECOND": "millisecond",
}

# Java DateTimeFormatter letters → strftime (longest first).
_JAVA = [
    ("yyyy", "%Y"),
    ("yy", "%y"),
    ("MMMM", "%B"),
    ("MMM", "%b"),
    ("MM", "%m"),
    ("M", "%-m"),
    ("dd", "%d"),
    ("d", "%-d"),
    ("HH", "%H"),
    ("H", "%-H"),
    ("hh", "%I"),
    ("h", "%-I"),
    ("mm", "%M"),
    ("m", "%-M"),
    ("ss", "%S"),
    ("s", "%-S"),
    ("SSSSSS", "%f"),
    ("SSS", "%g"),
    ("a", "%p"),
    ("EEEE", "%A"),
    ("EEE", "%a"),
    ("E", "%a"),
    ("DDD", "%j"),
    ("XXX", "%z"),
    ("Z", "%z"),
]


def java_to_strftime(pattern: str) -> str:
    """A Java date pattern (``yyyy-MM-dd HH:mm:ss``) as a strftime format.

    >>> java_to_strftime("yyyy-MM-dd'T'HH:mm")
    '%Y-%m-%dT%H:%M'
    """
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "'":
            end = pattern.find("'", i + 1)
            end = len(pattern) if end < 0 else end
            out.append(pattern[i + 1 : end].replace("%", "%%") or "'")
            i = end + 1
            continue
        for java, fmt in _JAVA:
            if pattern.startswith(java, i):
                out.append(fmt)
                i += len(java)
                break
        else:
            if ch.isalpha():
                raise SqlError(f"date pattern letter {ch!r} in {pattern!r} is not supported")
            out.append("%%" if ch == "%" else ch)
            i += 1
    return "".join(out)


def to_duckdb(node: exp.Expression) -> str:
    """Translate a Flink expression (or query) tree to DuckDB SQL text."""
    return _translate(node.copy()).sql("duckdb")


def _raw(sql: str) -> exp.Expression:
    return exp.Var(this=sql)  # Var prints verbatim: the already-translated DuckDB text


def _where(node: exp.Expression) -> dict[str, Any]:
    meta = node.meta or {}
    line, col = meta.get("line"), meta.get("col")
    if line is None or col is None:
        return {}
    name = node.name if isinstance(node, exp.Anonymous) else ""
    return {"line": line, "column": max(1, col - len(name) + 1)}


_INTEGER_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT"})


def _truncating_cast(arg: str, target: str) -> str:
    """CAST to an integer type truncating toward zero, as Flink (and Java) do.

    DuckDB rounds ``CAST(71.6 AS INTEGER)`` to 72; Flink gives 71. The operand's type is not
    known here, but DuckDB folds ``typeof()`` when it binds the query, so the CASE costs
    nothing per row and only the branch for the actual type runs.
    """
    return (
        f"(CASE WHEN typeof({arg}) IN ('DOUBLE', 'FLOAT') "
        f"THEN CAST(trunc(TRY_CAST({arg} AS DOUBLE)) AS {target}) "
        f"WHEN typeof({arg}) LIKE 'DECIMAL%' "
        f"THEN CAST(trunc(TRY_CAST({arg} AS DECIMAL(38, 9))) AS {target}) "
        f"ELSE CAST({arg} AS {target}) END)"
    )


def _translate(node: exp.Expression) -> exp.Expression:
    for child in list(node.iter_expressions()):
        _translate(child)
    new = _one(node)
    if new is not node:
        node.replace(new)
    return new


def _one(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Anonymous):
        return _function(node)
    if isinstance(node, exp.Div):
        # Flink's `/` on two integers is integer division truncating toward zero (Java);
        # DuckDB's `/` always divides as DOUBLE. DuckDB's `//` truncates toward zero on
        # integers and divides like `/` on anything else, so it is Flink's `/` exactly —
        # except that an integer division by zero is NULL here, where Flink fails the job.
        return exp.IntDiv(this=node.this, expression=node.expression)
    if isinstance(node, exp.Cast):
        to = node.args["to"]
        if isinstance(to, exp.DataType) and to.this != exp.DType.USERDEFINED:
            target = duckdb_type(from_sqlglot(to))
            if target in _INTEGER_TYPES and not isinstance(node, exp.TryCast):
                return _raw(_truncating_cast(node.this.sql("duckdb"), target))
            node.set("to", exp.DataType.build(target, dialect="duckdb"))
        return node
    if isinstance(node, exp.Interval):
        return _raw(f"INTERVAL '{interval_ms(node)}' MILLISECOND")
    if isinstance(node, (exp.Floor, exp.Ceil)) and node.args.get("to") is not None:
        unit = _DUCK_UNIT.get(node.args["to"].name.upper())
        if unit is None:
            raise UnsupportedSqlError(
                f"{node.key.upper()}(… TO {node.args['to'].name}) is not supported"
            )
        arg = node.this.sql("duckdb")
        floor = f"date_trunc('{unit}', {arg})"
        if isinstance(node, exp.Floor):
            return _raw(floor)
        return _raw(
            f"(CASE WHEN {floor} = {arg} THEN {floor} ELSE {floor} + INTERVAL 1 {unit} END)"
        )
    if isinstance(node, exp.JSONValue):
        path = node.args["path"].sql("duckdb")
        sql = f"json_extract_string({node.this.sql('duckdb')}, {path})"
        returning = node.args.get("returning")
        if isinstance(returning, exp.DataType):
            sql = f"TRY_CAST({sql} AS {duckdb_type(from_sqlglot(returning))})"
        return _raw(sql)
    if isinstance(node, MapLiteral):
        items = [e.sql("duckdb") for e in node.expressions]
        if len(items) % 2:
            raise SqlError("MAP[…] needs key, value pairs", **_where(node))
        pairs = ", ".join(f"{k}: {v}" for k, v in zip(items[::2], items[1::2], strict=True))
        return _raw(f"MAP {{{pairs}}}")
    return node


def _function(node: exp.Anonymous) -> exp.Expression:
    name = node.name.upper()
    args = [a.sql("duckdb") for a in node.expressions]
    special = _special(name, node, args)
    if special is not None:
        return _raw(special)
    table = FUNCTIONS.get(name)
    if table is None:
        if name in ("TUMBLE", "HOP", "SESSION", "CUMULATE") or name.endswith(
            ("_START", "_END", "_ROWTIME", "_PROCTIME")
        ):
            raise UnsupportedSqlError(
                f"group window function {name} must be planned, not translated", **_where(node)
            )
        raise UnsupportedSqlError(
            f"function {name} is not supported{did_you_mean(name, SUPPORTED)}", **_where(node)
        )
    template = table.get(len(args), table.get(-1))
    if template is None:
        arities = " or ".join(str(k) for k in sorted(table))
        raise SqlError(f"{name} takes {arities} arguments, found {len(args)}", **_where(node))
    if "{' || '}" in template:
        return _raw(template.replace("{' || '}", " || ".join(args)))
    return _raw(template.replace("{*}", ", ".join(args)).format(*args))


def _pattern(node: exp.Anonymous, index: int, default: str) -> str:
    if len(node.expressions) <= index:
        return default
    arg = node.expressions[index]
    if not (isinstance(arg, exp.Literal) and arg.is_string):
        raise UnsupportedSqlError(
            f"{node.name.upper()} needs a literal date pattern", **_where(node)
        )
    return java_to_strftime(arg.name).replace("'", "''")


def _unit(node: exp.Anonymous) -> str:
    unit = node.expressions[0].name.upper() if node.expressions else ""
    if unit not in _DUCK_UNIT:
        raise SqlError(
            f"{node.name.upper()} expects a unit among {', '.join(_DUCK_UNIT)}, found {unit!r}",
            **_where(node),
        )
    return _DUCK_UNIT[unit]


def _special(name: str, node: exp.Anonymous, args: list[str]) -> str | None:
    if name == "DATE_FORMAT" and len(args) == 2:
        return f"strftime(CAST({args[0]} AS TIMESTAMP), '{_pattern(node, 1, _TS)}')"
    if name == "TO_TIMESTAMP" and len(args) == 2:
        return f"CAST(try_strptime({args[0]}, '{_pattern(node, 1, _TS)}') AS TIMESTAMP_MS)"
    if name == "TO_DATE" and len(args) == 2:
        return f"CAST(try_strptime({args[0]}, '{_pattern(node, 1, '%Y-%m-%d')}') AS DATE)"
    if name == "UNIX_TIMESTAMP" and len(args) == 2:
        return f"CAST(epoch(strptime({args[0]}, '{_pattern(node, 1, _TS)}')) AS BIGINT)"
    if name == "FROM_UNIXTIME" and len(args) == 2:
        return f"strftime(make_timestamp(CAST({args[0]} AS BIGINT) * 1000000), '{_pattern(node, 1, _TS)}')"
    if name == "TIMESTAMPADD" and len(args) == 3:
        unit = _unit(node)
        return f"({args[2]} + CAST({args[1]} AS BIGINT) * INTERVAL 1 {unit})"
    if name == "TIMESTAMPDIFF" and len(args) == 3:
        # Whole units elapsed (Flink/Calcite), which is DuckDB's date_sub, not date_diff.
        return f"CAST(date_sub('{_unit(node)}', {args[1]}, {args[2]}) AS INTEGER)"
    return None
