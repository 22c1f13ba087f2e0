"""Window table functions: ``TABLE(TUMBLE|HOP|CUMULATE|SESSION(...))`` cut out of a query.

sqlglot cannot parse window TVFs, so :mod:`fluvial.stream.sql.parser` finds them in the
token stream, hands the tokens between ``KIND(`` and its ``)`` to :func:`parse_tvf_args`,
puts a placeholder table in their place, parses the query and swaps the placeholder for the
:class:`~fluvial.stream.sql.ast.WindowTVF` built here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlglot import exp
from sqlglot.tokens import Token, TokenType

from fluvial.errors import SqlError
from fluvial.stream.sql.ast import WindowTVF
from fluvial.stream.sql.intervals import interval_ms, interval_sql

__all__ = ["KINDS", "SIGNATURES", "parse_tvf_args", "window_tvf_sql"]

# Positional parameters of each window TVF (Flink's order), data first.
SIGNATURES: dict[str, tuple[str, ...]] = {
    "TUMBLE": ("DATA", "TIMECOL", "SIZE", "OFFSET"),
    "HOP": ("DATA", "TIMECOL", "SLIDE", "SIZE", "OFFSET"),
    "CUMULATE": ("DATA", "TIMECOL", "STEP", "SIZE", "OFFSET"),
    "SESSION": ("DATA", "TIMECOL", "GAP"),
}
KINDS = frozenset(SIGNATURES)
_OPTIONAL = {"OFFSET"}
_PUNCTUATION = {TokenType.COMMA, TokenType.DOT, TokenType.L_PAREN, TokenType.R_PAREN}
_ARG_KEYS = {"SIZE": "size_ms", "SLIDE": "slide_ms", "STEP": "step_ms", "GAP": "gap_ms"}

Where = Callable[[Token], SqlError]  # builds an error positioned at a token
ParseQuery = Callable[[Sequence[Token]], exp.Query]
ParseExpr = Callable[[Sequence[Token]], exp.Expression]


def parse_tvf_args(
    kind: str,
    tokens: Sequence[Token],
    name_token: Token,
    error: Callable[[str, Token], SqlError],
    parse_query: ParseQuery,
    parse_expr: ParseExpr,
) -> dict[str, Any]:
    """Parse the arguments of ``KIND(...)`` (the tokens inside the parentheses) into
    :class:`WindowTVF` args (without ``alias``)."""
    values: dict[str, Any] = {}
    positional = 0
    i, n = 0, len(tokens)
    sig = SIGNATURES[kind]
    while i < n:
        start = tokens[i]
        name: str | None = None
        if i + 1 < n and tokens[i + 1].token_type == TokenType.FARROW:
            name = start.text.upper()
            if name not in sig:
                raise error(
                    f"{kind} has no parameter {name}; expected one of {', '.join(sig)}", start
                )
            i += 2
            start = tokens[i] if i < n else start
        elif positional >= len(sig):
            raise error(f"{kind} takes at most {len(sig)} arguments", start)
        else:
            name = sig[positional]
            positional += 1
        if name in values:
            raise error(f"{kind} parameter {name} is given twice", start)
        i, value = _parse_arg(name, kind, tokens, i, error, parse_query, parse_expr)
        values[name] = value
        if i < n:
            if tokens[i].token_type != TokenType.COMMA:
                raise error(
                    f"expected ',' or ')' in {kind}(...), found {tokens[i].text!r}", tokens[i]
                )
            i += 1
    missing = [p for p in sig if p not in values and p not in _OPTIONAL]
    if missing:
        raise error(f"{kind} is missing its {', '.join(missing)} argument", name_token)
    data, partition_by = values["DATA"]
    args: dict[str, Any] = {
        "kind": kind,
        "this": data,
        "time_col": values["TIMECOL"],
        "offset_ms": values.get("OFFSET", 0),
        "partition_by": partition_by,
    }
    for param, key in _ARG_KEYS.items():
        if param in values:
            if values[param] <= 0:
                raise error(
                    f"{kind} {param} must be positive, found {values[param]} ms", name_token
                )
            args[key] = values[param]
    if partition_by and kind != "SESSION":
        raise error(f"PARTITION BY is only allowed in SESSION, not in {kind}", name_token)
    if kind == "CUMULATE" and args["size_ms"] % args["step_ms"]:
        raise error("CUMULATE requires SIZE to be an integral multiple of STEP", name_token)
    return args


def _parse_arg(
    name: str,
    kind: str,
    tokens: Sequence[Token],
    i: int,
    error: Callable[[str, Token], SqlError],
    parse_query: ParseQuery,
    parse_expr: ParseExpr,
) -> tuple[int, Any]:
    tok = tokens[i]
    if name == "DATA":
        if tok.token_type == TokenType.TABLE:
            j = i + 1
            parts: list[str] = []
            while j < len(tokens) and tokens[j].token_type not in _PUNCTUATION:
                parts.append(tokens[j].text)
                j += 1
                if j + 1 < len(tokens) and tokens[j].token_type == TokenType.DOT:
                    j += 1
                    continue
                break
            if not parts:
                raise error("expected a table name after TABLE", tokens[min(j, len(tokens) - 1)])
            names = [exp.to_identifier(p) for p in parts]
            table: exp.Expression = exp.Table(
                this=names[-1], db=seq(names, -2), catalog=seq(names, -3)
            )
        elif tok.token_type == TokenType.L_PAREN:
            j = _matching(tokens, i, error)
            table = exp.Subquery(this=parse_query(tokens[i + 1 : j]))
            j += 1
        else:
            raise error(
                f"expected TABLE name or (SELECT …) as the data of {kind}, found {tok.text!r}", tok
            )
        return _partition_by(tokens, j, error, table)
    if name == "TIMECOL":
        if tok.text.upper() != "DESCRIPTOR" or i + 3 >= len(tokens) + 1:
            raise error(
                f"expected DESCRIPTOR(column) as the time column of {kind}, found {tok.text!r}", tok
            )
        if (
            i + 3 >= len(tokens)
            or tokens[i + 1].token_type != TokenType.L_PAREN
            or tokens[i + 3].token_type != TokenType.R_PAREN
        ):
            raise error("expected DESCRIPTOR(column) with one column", tok)
        return i + 4, tokens[i + 2].text
    # An interval: up to the next comma at depth 0.
    j, depth = i, 0
    while j < len(tokens) and not (depth == 0 and tokens[j].token_type == TokenType.COMMA):
        depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(tokens[j].token_type, 0)
        j += 1
    node = parse_expr(tokens[i:j])
    if not isinstance(node, exp.Interval):
        raise error(
            f"expected INTERVAL '<n>' <unit> as the {name} of {kind}, found {node.sql('flink')}",
            tok,
        )
    try:
        return j, interval_ms(node)
    except SqlError as exc:
        raise error(exc.detail, tok) from exc


def seq(items: list[exp.Identifier], index: int) -> exp.Identifier | None:
    return items[index] if len(items) >= -index else None


def _partition_by(
    tokens: Sequence[Token], j: int, error: Callable[[str, Token], SqlError], table: exp.Expression
) -> tuple[int, Any]:
    keys: list[str] = []
    if (j < len(tokens) and tokens[j].token_type == TokenType.PARTITION_BY) or (
        j + 1 < len(tokens)
        and tokens[j].text.upper() == "PARTITION"
        and tokens[j + 1].text.upper() == "BY"
    ):
        j += 1 if tokens[j].token_type == TokenType.PARTITION_BY else 2
        parenthesized = j < len(tokens) and tokens[j].token_type == TokenType.L_PAREN
        j += parenthesized
        while j < len(tokens):
            keys.append(tokens[j].text)
            j += 1
            # `a, b, DESCRIPTOR(ts)`: a comma continues the keys unless a new argument follows.
            if (
                j + 1 < len(tokens)
                and tokens[j].token_type == TokenType.COMMA
                and (parenthesized or _is_key(tokens, j + 1))
            ):
                j += 1
                continue
            break
        if parenthesized:
            if j >= len(tokens) or tokens[j].token_type != TokenType.R_PAREN:
                raise error("expected ')' after PARTITION BY (…)", tokens[min(j, len(tokens) - 1)])
            j += 1
    return j, (table, keys)


def _is_key(tokens: Sequence[Token], j: int) -> bool:
    after = tokens[j + 1].token_type if j + 1 < len(tokens) else None
    return (
        tokens[j].token_type in (TokenType.VAR, TokenType.IDENTIFIER)
        and tokens[j].text.upper() not in ("DESCRIPTOR",)
        and after not in (TokenType.L_PAREN, TokenType.FARROW)
    )


def _matching(tokens: Sequence[Token], i: int, error: Callable[[str, Token], SqlError]) -> int:
    depth = 0
    for j in range(i, len(tokens)):
        depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(tokens[j].token_type, 0)
        if depth == 0:
            return j
    raise error("unbalanced parentheses", tokens[i])


def window_tvf_sql(generator: Any, node: WindowTVF) -> str:
    """Flink SQL text of a window TVF node (for dumps and messages)."""
    data = node.this
    data_sql = (
        f"TABLE {generator.sql(data)}" if isinstance(data, exp.Table) else generator.sql(data)
    )
    if node.args.get("partition_by"):
        data_sql += " PARTITION BY " + ", ".join(node.args["partition_by"])
    args = [data_sql, f"DESCRIPTOR({node.args['time_col']})"]
    for param in SIGNATURES[node.kind][2:]:
        key = _ARG_KEYS.get(param, "offset_ms")
        value = node.args.get(key)
        if param == "OFFSET" and not value:
            continue
        args.append(interval_sql(value or 0))
    text = f"TABLE({node.kind}({', '.join(args)}))"
    alias = node.args.get("alias")
    return f"{text} AS {alias}" if alias else text
