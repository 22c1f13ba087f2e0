"""The Flink SQL dialect for sqlglot: how Flink expressions are tokenized and parsed.

Differences from sqlglot's default dialect are data where possible:

* identifiers are backquoted (```my col```), strings single-quoted (``'it''s'``);
* ``STRING``, ``BYTES``, ``TIMESTAMP_LTZ(3)`` are type keywords, ``ROW<a INT>`` /
  ``ROW(a INT)`` are struct types;
* arrays are 1-based (``arr[1]`` is the first element);
* ``MAP['k', v, …]`` is a :class:`MapLiteral`; ``JSON_VALUE(j, '$.a' RETURNING INT)`` parses;
* function calls stay :class:`sqlglot.exp.Anonymous` nodes under their Flink name (upper
  case) — only the aggregates (COUNT, SUM, MIN, MAX, AVG) and the functions with special
  syntax (CAST, TRY_CAST, EXTRACT, FLOOR/CEIL ``(ts TO unit)``, POSITION ``(a IN b)``,
  SUBSTRING ``(s FROM i FOR n)``, TRIM, IF, CASE, JSON_VALUE) become typed nodes. So the
  legacy group windows ``TUMBLE(ts, …)``, ``HOP``, ``SESSION``, ``TUMBLE_START`` … are
  ``exp.Anonymous`` with those names, and :mod:`fluvial.stream.sql.translate` maps every
  Flink function by name to DuckDB.

>>> import sqlglot
>>> sqlglot.parse_one("SELECT `my col`, arr[1] FROM t", read=Flink).sql(Flink)
'SELECT `my col`, arr[1] FROM t'
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlglot import exp, parser, tokens
from sqlglot.dialects.dialect import Dialect
from sqlglot.generator import Generator
from sqlglot.tokens import TokenType

from fluvial.stream.sql.ast import WindowTVF

__all__ = ["AGGREGATES", "Flink", "MapLiteral"]

# Typed nodes the planner recognises as aggregates.
AGGREGATES: dict[str, type[exp.Func]] = {
    "COUNT": exp.Count,
    "SUM": exp.Sum,
    "MIN": exp.Min,
    "MAX": exp.Max,
    "AVG": exp.Avg,
}

# Functions with their own syntax inside the parentheses; everything else is Anonymous.
_SPECIAL_SYNTAX = ("CAST", "TRY_CAST", "CEIL", "FLOOR", "EXTRACT", "POSITION", "SUBSTRING", "TRIM")


class MapLiteral(exp.Expression, exp.Func):
    """``MAP[k1, v1, k2, v2, …]`` (Flink's map value constructor)."""

    arg_types: ClassVar[dict[str, Any]] = {"expressions": True}
    is_var_len_args = True


def _build_map(*_: Any, args: list[exp.Expression], **__: Any) -> MapLiteral:
    return MapLiteral(expressions=args)


class FlinkParser(parser.Parser):
    FUNCTIONS: ClassVar[dict[str, Any]] = {
        name: (lambda args, _cls=cls: _cls.from_arg_list(args)) for name, cls in AGGREGATES.items()
    }
    FUNCTION_PARSERS: ClassVar[dict[str, Any]] = {
        **{name: parser.Parser.FUNCTION_PARSERS[name] for name in _SPECIAL_SYNTAX},
        "JSON_VALUE": lambda self: self._parse_json_value(json_path=False),
    }
    NO_PAREN_FUNCTION_PARSERS: ClassVar[dict[str, Any]] = {
        "CASE": lambda self: self._parse_case(),
        "IF": lambda self: self._parse_if(),
    }

    def _parse_types(self, *args: Any, **kwargs: Any) -> Any:
        # Flink's ROW<a INT, b STRING> and ROW(a INT, b STRING): a struct type.
        if (
            self._curr
            and self._curr.text.upper() == "ROW"
            and self._next
            and self._next.token_type in (TokenType.LT, TokenType.L_PAREN)
        ):
            index = self._index
            closing = TokenType.GT if self._next.token_type == TokenType.LT else TokenType.R_PAREN
            self._advance(2)
            fields: list[exp.Expression] = []
            while self._curr and self._curr.token_type != closing:
                name = self._parse_id_var(any_token=True)
                kind = self._parse_types()
                if name is None or kind is None:
                    self._retreat(index)
                    return None
                if self._match_text_seq("NOT", "NULL"):
                    kind.set("nullable", False)
                fields.append(exp.ColumnDef(this=name, kind=kind))
                if not self._match(TokenType.COMMA):
                    break
            if not self._match(closing):
                self.raise_error(f"Expected {'>' if closing == TokenType.GT else ')'} after ROW")
            return exp.DataType(this=exp.DType.STRUCT, expressions=fields, nested=True)
        return super()._parse_types(*args, **kwargs)


class FlinkGenerator(Generator):
    """Prints trees back as Flink SQL (used by :mod:`fluvial.stream.sql.dump`)."""

    TYPE_MAPPING: ClassVar[dict[Any, str]] = {
        **Generator.TYPE_MAPPING,
        exp.DType.TEXT: "STRING",
        exp.DType.VARBINARY: "BYTES",
        exp.DType.TIMESTAMPLTZ: "TIMESTAMP_LTZ",
        exp.DType.STRUCT: "ROW",
    }

    TRANSFORMS: ClassVar[dict[Any, Any]] = {
        **Generator.TRANSFORMS,
        MapLiteral: lambda self, e: f"MAP[{self.expressions(e, flat=True)}]",
        WindowTVF: lambda self, e: _window_tvf_sql(self, e),
    }


def _window_tvf_sql(generator: Generator, node: WindowTVF) -> str:
    from fluvial.stream.sql.windows import window_tvf_sql

    return window_tvf_sql(generator, node)


class Flink(Dialect):
    """sqlglot dialect for Flink SQL expressions and queries."""

    INDEX_OFFSET = 1
    NULL_ORDERING = "nulls_are_small"

    class Tokenizer(tokens.Tokenizer):
        QUOTES: ClassVar[list[str | tuple[str, str]]] = ["'"]
        IDENTIFIERS: ClassVar[list[str | tuple[str, str]]] = ["`"]
        STRING_ESCAPES: ClassVar[list[str]] = ["'"]
        # EXECUTE STATEMENT SET … must stay tokens (sqlglot reads commands as one string).
        COMMANDS: ClassVar[set[TokenType]] = tokens.Tokenizer.COMMANDS - {
            TokenType.EXECUTE,
            TokenType.SHOW,
        }
        KEYWORDS: ClassVar[dict[str, TokenType]] = {
            # SESSION is a function name in Flink (legacy group window), not a keyword.
            **{k: v for k, v in tokens.Tokenizer.KEYWORDS.items() if k != "SESSION"},
            "BYTES": TokenType.VARBINARY,
            "STRING": TokenType.TEXT,
            "TIMESTAMP_LTZ": TokenType.TIMESTAMPLTZ,
        }

    Parser = FlinkParser

    Generator = FlinkGenerator


FlinkParser.ARRAY_CONSTRUCTORS = {**parser.Parser.ARRAY_CONSTRUCTORS, "MAP": MapLiteral}
