"""Parse a Flink SQL pipeline file into a :class:`~fluvial.stream.sql.ast.Script`.

Statements (CREATE TABLE/VIEW, INSERT, SET, EXECUTE STATEMENT SET) are read from sqlglot's
token stream here; queries and expressions are parsed by sqlglot with the
:class:`~fluvial.stream.sql.dialect.Flink` dialect. Every sub-parse sees the *whole* text
with everything outside its span blanked (newlines kept), so sqlglot's line and column are
positions in the original file — window TVFs are replaced by a placeholder padded to the
same length for the same reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from fluvial.errors import SqlError, UnsupportedSqlError
from fluvial.stream.sql.ast import (
    ColumnDef,
    CreateTable,
    CreateView,
    Insert,
    Position,
    Script,
    SetOption,
    Statement,
    WatermarkDef,
    WindowTVF,
)
from fluvial.stream.sql.dialect import Flink
from fluvial.stream.sql.intervals import interval_ms
from fluvial.stream.sql.match_recognize import MatchRecognize, parse_match_recognize
from fluvial.stream.sql.types import from_sqlglot
from fluvial.stream.sql.windows import KINDS, parse_tvf_args

__all__ = ["parse_query", "parse_script"]

_PLACEHOLDER = "__tvf{}"
_DEPTH = {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}


class _Source:
    """The text being parsed: positions, errors and masked sub-parses."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        try:
            self.tokens: list[Token] = Flink().tokenize(text)
        except TokenError as exc:
            m = re.search(r"[Ll]ine (\d+), [Cc]ol(?:umn)?:? (\d+)", str(exc))
            line, col = (int(m[1]), int(m[2])) if m else (None, None)
            raise SqlError(
                f"cannot tokenize: {str(exc).splitlines()[0]}", line=line, column=col, source=source
            ) from exc
        self._tvf_count = 0

    def position(self, offset: int) -> Position:
        line = max(i for i, s in enumerate(self.line_starts) if s <= offset)
        return Position(line + 1, offset - self.line_starts[line] + 1)

    def error(self, message: str, token: Token | None, cls: type[SqlError] = SqlError) -> SqlError:
        if token is None:
            return cls(message, source=self.source)
        pos = self.position(token.start)
        return cls(message, line=pos.line, column=pos.column, source=self.source)

    def _mask(self, start: int, end: int, holes: Sequence[tuple[int, int, str]] = ()) -> str:
        """The text with everything outside ``[start, end)`` blanked, holes replaced."""
        blank = re.sub(r"[^\n]", " ", self.text)
        chars = list(blank[:start] + self.text[start:end] + blank[end:])
        for hole_start, hole_end, name in holes:
            filler = re.sub(r"[^\n]", " ", self.text[hole_start:hole_end])
            chars[hole_start:hole_end] = list(name + filler[len(name) :])
        return "".join(chars)

    def _sqlglot(self, masked: str, into: type[exp.Expression] | None = None) -> exp.Expression:
        try:
            if into is not None:
                return sqlglot.parse_one(masked, read=Flink, into=into)
            trees = [t for t in sqlglot.parse(masked, read=Flink) if t is not None]
        except ParseError as exc:
            raise self._translate(exc) from exc
        if len(trees) != 1:
            raise SqlError("expected one query or expression", source=self.source)
        tree = trees[0]
        assert isinstance(tree, exp.Expression)
        return tree

    def _translate(self, exc: ParseError) -> SqlError:
        info = exc.errors[0] if exc.errors else {}
        line, col = info.get("line"), info.get("col")
        description = info.get("description") or str(exc).splitlines()[0]
        if line is None or col is None:
            return SqlError(description, source=self.source)
        # sqlglot points at the last character of the offending token: report its start.
        end = self.line_starts[line - 1] + col - 1
        token = next((t for t in self.tokens if t.start <= end <= t.end), None)
        if token is not None:
            return self.error(f"{description}; found {token.text!r}", token)
        return SqlError(description, line=line, column=col, source=self.source)

    # -- expressions and queries -------------------------------------------------------

    def expression(self, tokens: Sequence[Token]) -> exp.Expression:
        if not tokens:
            raise SqlError("expected an expression", source=self.source)
        return self._sqlglot(self._mask(tokens[0].start, tokens[-1].end + 1))

    def data_type(self, tokens: Sequence[Token]) -> exp.DataType:
        node = self._sqlglot(self._mask(tokens[0].start, tokens[-1].end + 1), into=exp.DataType)
        assert isinstance(node, exp.DataType)
        return node

    def query(self, tokens: Sequence[Token]) -> exp.Query:
        if not tokens:
            raise SqlError("expected a query", source=self.source)
        holes: list[tuple[int, int, str]] = []
        tvfs: dict[str, dict[str, object]] = {}
        matches: dict[int, MatchRecognize] = {}  # end of the table name before it -> clause
        i = 0
        while i < len(tokens):
            if tokens[i].text.upper() == "MATCH_RECOGNIZE" and i > 0:
                if i + 1 >= len(tokens) or tokens[i + 1].token_type != TokenType.L_PAREN:
                    raise self.error("expected '(' after MATCH_RECOGNIZE", tokens[i])
                before = tokens[i - 1]
                if before.token_type not in (TokenType.VAR, TokenType.IDENTIFIER):
                    raise self.error(
                        "MATCH_RECOGNIZE must follow a table or view name (define a view for a "
                        "subquery)",
                        tokens[i],
                        UnsupportedSqlError,
                    )
                close = _matching(tokens, i + 1, self)
                matches[before.end] = parse_match_recognize(
                    tokens[i + 2 : close],
                    self.expression,
                    lambda msg, tok: self.error(msg, tok),
                    end=tokens[close],
                )
                holes.append((tokens[i].start, tokens[close].end + 1, ""))
                i = close + 1
            elif _is_tvf(tokens, i):
                close = _matching(tokens, i + 1, self)
                kind_tok = tokens[i + 2]
                inner_close = _matching(tokens, i + 3, self)
                if inner_close + 1 != close:
                    raise self.error(
                        "expected ')' after the window function", tokens[inner_close + 1]
                    )
                args = parse_tvf_args(
                    kind_tok.text.upper(),
                    tokens[i + 4 : inner_close],
                    kind_tok,
                    lambda msg, tok: self.error(msg, tok),
                    self.query,
                    self.expression,
                )
                name = _PLACEHOLDER.format(self._tvf_count)
                self._tvf_count += 1
                holes.append((tokens[i].start, tokens[close].end + 1, name))
                tvfs[name] = args
                i = close + 1
            else:
                i += 1
        tree = self._sqlglot(self._mask(tokens[0].start, tokens[-1].end + 1, holes))
        if not isinstance(tree, exp.Query):
            raise self.error(f"expected a query (SELECT …), found {tree.key.upper()}", tokens[0])
        if matches:
            for table in tree.find_all(exp.Table):
                end = table.this.meta.get("end") if isinstance(table.this, exp.Identifier) else None
                if end in matches:
                    table.meta["match_recognize"] = matches.pop(end)
            if matches:  # pragma: no cover - every clause follows a table name
                raise SqlError("MATCH_RECOGNIZE could not be attached to its table")
        for table in list(tree.find_all(exp.Table)):
            if table.name in tvfs and not table.args.get("db"):
                tvf = WindowTVF(**tvfs[table.name], alias=table.alias or None)
                table.replace(tvf)
        for window in tree.find_all(exp.Window):
            func = window.this
            if not (isinstance(func, exp.Anonymous) and func.name.upper() == "ROW_NUMBER"):
                raise _node_error(
                    self, "OVER windows other than ROW_NUMBER() are not supported", window
                )
        return tree


def _node_error(src: _Source, message: str, node: exp.Expression) -> SqlError:
    for n in node.walk():
        start = n.meta.get("start") if n.meta else None
        if start is not None:
            pos = src.position(start)
            return UnsupportedSqlError(message, line=pos.line, column=pos.column, source=src.source)
    return UnsupportedSqlError(message, source=src.source)


def _is_tvf(tokens: Sequence[Token], i: int) -> bool:
    return (
        i + 3 < len(tokens)
        and tokens[i].token_type == TokenType.TABLE
        and tokens[i + 1].token_type == TokenType.L_PAREN
        and tokens[i + 2].text.upper() in KINDS
        and tokens[i + 3].token_type == TokenType.L_PAREN
    )


def _matching(tokens: Sequence[Token], i: int, src: _Source) -> int:
    depth = 0
    for j in range(i, len(tokens)):
        depth += _DEPTH.get(tokens[j].token_type, 0)
        if depth == 0:
            return j
    raise src.error("unbalanced parentheses: no ')' for this '('", tokens[i])


# -- statements --------------------------------------------------------------------------


class _Cursor:
    """Reads one statement's tokens."""

    def __init__(self, src: _Source, tokens: Sequence[Token]) -> None:
        self.src = src
        self.tokens = tokens
        self.i = 0

    @property
    def cur(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _match(self, words: Sequence[str]) -> int:
        """How many tokens spell ``words`` from here (sqlglot has multi-word tokens such as
        ``PRIMARY KEY``), or 0."""
        wanted = list(words)
        j = self.i
        while wanted:
            if j >= len(self.tokens):
                return 0
            parts = self.tokens[j].text.upper().split()
            if parts != wanted[: len(parts)] or not parts:
                return 0
            wanted = wanted[len(parts) :]
            j += 1
        return j - self.i

    def peek(self, *words: str) -> bool:
        return self._match(words) > 0

    def accept(self, *words: str) -> bool:
        n = self._match(words)
        self.i += n
        return n > 0

    def expect(self, *words: str) -> None:
        if not self.accept(*words):
            raise self.fail(" ".join(words))

    def fail(self, expected: str) -> SqlError:
        tok = self.cur
        if tok is None:
            last = self.tokens[-1] if self.tokens else None
            return self.src.error(f"expected {expected}, found the end of the statement", last)
        return self.src.error(f"expected {expected}, found {tok.text!r}", tok)

    def name(self, what: str = "a name") -> str:
        tok = self.cur
        if tok is None or tok.token_type in (
            TokenType.L_PAREN,
            TokenType.R_PAREN,
            TokenType.COMMA,
            TokenType.STRING,
            TokenType.SEMICOLON,
        ):
            raise self.fail(what)
        parts = [tok.text]
        self.i += 1
        while self.cur is not None and self.cur.token_type == TokenType.DOT:
            self.i += 1
            parts.append(self.name(what))
        return ".".join(parts)

    def string(self, what: str) -> str:
        tok = self.cur
        if tok is None or tok.token_type != TokenType.STRING:
            raise self.fail(what)
        self.i += 1
        return tok.text

    def until_comma(self, angle: bool = False) -> list[Token]:
        """Tokens up to the next comma or closing parenthesis at depth 0 (not consumed);
        ``angle``: ``<`` and ``>`` nest too (types such as ``ROW<a INT, b INT>``)."""
        start, depth = self.i, 0
        depths = {**_DEPTH, TokenType.LT: 1, TokenType.GT: -1} if angle else _DEPTH
        while self.cur is not None:
            t = self.cur.token_type
            if depth == 0 and t in (TokenType.COMMA, TokenType.R_PAREN):
                break
            depth += depths.get(t, 0)
            self.i += 1
        return list(self.tokens[start : self.i])

    def rest(self) -> list[Token]:
        rest = list(self.tokens[self.i :])
        self.i = len(self.tokens)
        return rest


def parse_script(text: str, source: str = "") -> Script:
    """Parse a pipeline file: ``;``-separated statements, ``--`` and ``/* */`` comments."""
    src = _Source(text, source)
    statements: list[Statement] = []
    for tokens in _split(src):
        statements.append(_statement(src, tokens))
    return Script(tuple(statements), source=source, text=text)


def parse_query(text: str, source: str = "") -> exp.Query:
    """Parse one SELECT (window TVFs become :class:`WindowTVF` nodes)."""
    src = _Source(text, source)
    tokens = [t for t in src.tokens if t.token_type != TokenType.SEMICOLON]
    return src.query(tokens)


def _split(src: _Source) -> list[list[Token]]:
    """Statements as token lists; EXECUTE STATEMENT SET BEGIN … END is unwrapped."""
    out: list[list[Token]] = []
    current: list[Token] = []
    depth = 0
    toks = src.tokens
    i = 0
    while i < len(toks):
        tok = toks[i]
        words = [t.text.upper() for t in toks[i : i + 4]]
        if not current and (
            words == ["EXECUTE", "STATEMENT", "SET", "BEGIN"]
            or words[:3] == ["BEGIN", "STATEMENT", "SET"]
        ):
            i += 4 if words[0] == "EXECUTE" else 3
            if i < len(toks) and toks[i].token_type == TokenType.SEMICOLON:
                i += 1
            continue
        if not current and words[:1] == ["END"]:
            i += 1
            continue
        depth += _DEPTH.get(tok.token_type, 0)
        if tok.token_type == TokenType.SEMICOLON and depth == 0:
            if current:
                out.append(current)
            current = []
        else:
            current.append(tok)
        i += 1
    if current:
        out.append(current)
    return out


def _statement(src: _Source, tokens: list[Token]) -> Statement:
    c = _Cursor(src, tokens)
    first = tokens[0]
    pos = src.position(first.start)
    keyword = first.text.upper()
    if c.accept("CREATE"):
        temporary = c.accept("TEMPORARY")
        if c.accept("TABLE"):
            return _create_table(c, temporary, pos)
        if c.accept("VIEW"):
            if_not_exists = c.accept("IF", "NOT", "EXISTS")
            del if_not_exists  # accepted for compatibility
            name = c.name("a view name")
            c.expect("AS")
            return CreateView(name, src.query(c.rest()), temporary=temporary, position=pos)
        what = c.cur.text.upper() if c.cur else "?"
        raise src.error(
            f"CREATE {what} is not supported (expected CREATE TABLE or CREATE VIEW)",
            c.cur or first,
            UnsupportedSqlError,
        )
    if c.accept("INSERT"):
        overwrite = c.accept("OVERWRITE")
        if not overwrite:
            c.expect("INTO")
        c.accept("TABLE")
        table = c.name("a table name")
        columns: list[str] = []
        if (
            c.cur is not None
            and c.cur.token_type == TokenType.L_PAREN
            and not c.peek("(", "SELECT")
            and not c.peek("(", "WITH")
        ):
            c.i += 1
            while True:
                columns.append(c.name("a column name"))
                if not c.accept(","):
                    break
            c.expect(")")
        if c.peek("PARTITION"):
            raise src.error("INSERT … PARTITION is not supported", c.cur, UnsupportedSqlError)
        return Insert(
            table, src.query(c.rest()), columns=tuple(columns), overwrite=overwrite, position=pos
        )
    if c.accept("SET"):
        return _set(c, pos)
    if keyword in ("SELECT", "WITH"):
        raise src.error(
            "a bare query is not a pipeline statement; write INSERT INTO <sink> SELECT …",
            first,
            UnsupportedSqlError,
        )
    if keyword in (
        "USE",
        "DROP",
        "ALTER",
        "LOAD",
        "UNLOAD",
        "SHOW",
        "DESCRIBE",
        "DESC",
        "EXPLAIN",
        "RESET",
        "ADD",
        "REMOVE",
        "ANALYZE",
        "TRUNCATE",
        "DELETE",
        "UPDATE",
        "CALL",
    ):
        raise src.error(f"{keyword} statements are not supported", first, UnsupportedSqlError)
    raise src.error(
        f"expected CREATE, INSERT, SET or EXECUTE STATEMENT SET, found {first.text!r}", first
    )


def _set(c: _Cursor, pos: Position) -> SetOption:
    tokens = c.rest()
    eq = next((k for k, t in enumerate(tokens) if t.token_type == TokenType.EQ), None)
    if eq is None or eq == 0 or eq == len(tokens) - 1:
        raise c.src.error("expected SET 'key' = 'value'", tokens[0] if tokens else None)

    def text_of(part: list[Token]) -> str:
        if len(part) == 1 and part[0].token_type == TokenType.STRING:
            return part[0].text
        return c.src.text[part[0].start : part[-1].end + 1].strip()

    return SetOption(text_of(tokens[:eq]), text_of(tokens[eq + 1 :]), position=pos)


def _create_table(c: _Cursor, temporary: bool, pos: Position) -> CreateTable:
    src = c.src
    if_not_exists = c.accept("IF", "NOT", "EXISTS")
    name = c.name("a table name")
    if c.peek("LIKE"):
        raise src.error("CREATE TABLE … LIKE is not supported", c.cur, UnsupportedSqlError)
    c.expect("(")
    columns: list[ColumnDef] = []
    watermark: WatermarkDef | None = None
    primary_key: tuple[str, ...] = ()
    while True:
        start = c.cur
        if start is None:
            raise c.fail("a column definition")
        if c.accept("WATERMARK"):
            c.expect("FOR")
            column = c.name("the rowtime column")
            c.expect("AS")
            expr_tokens = c.until_comma()
            expr = src.expression(expr_tokens)
            watermark = WatermarkDef(column, expr, _delay(column, expr), src.position(start.start))
        elif c.peek("PRIMARY", "KEY") or c.peek("CONSTRAINT"):
            if c.accept("CONSTRAINT"):
                c.name("a constraint name")
            c.expect("PRIMARY", "KEY")
            c.expect("(")
            keys = [c.name("a key column")]
            while c.accept(","):
                keys.append(c.name("a key column"))
            c.expect(")")
            c.expect("NOT", "ENFORCED")
            primary_key = tuple(keys)
        else:
            col_name = c.name("a column name")
            col_pos = src.position(start.start)
            if c.accept("AS"):
                expr = src.expression(c.until_comma())
                columns.append(ColumnDef(col_name, None, expr, col_pos))
            else:
                body = c.until_comma(angle=True)
                columns.append(_physical_column(src, col_name, body, col_pos))
                if _has_inline_pk(body):
                    primary_key = (col_name,)
        if c.accept(","):
            continue
        c.expect(")")
        break
    options: dict[str, str] = {}
    if c.accept("COMMENT"):
        c.string("a comment string")
    partition_by: list[str] = []
    if c.accept("PARTITIONED", "BY") or c.accept("PARTITIONED"):
        c.accept("BY")
        c.expect("(")
        while True:
            partition_by.append(c.name("a partition column"))
            if c.accept(","):
                continue
            c.expect(")")
            break
        known = [col.name for col in columns]
        for p in partition_by:
            if p not in known:
                raise src.error(f"PARTITIONED BY unknown column '{p}'", c.cur)
    if c.accept("WITH"):
        c.expect("(")
        while not c.accept(")"):
            key = c.string("a quoted option key such as 'connector'")
            c.expect("=")
            options[key] = c.string(f"a quoted value for option '{key}'")
            if not c.accept(","):
                c.expect(")")
                break
    if c.cur is not None:
        raise c.fail("the end of CREATE TABLE")
    names = {col.name for col in columns}
    for key in primary_key:
        if key not in names:
            raise src.error(f"primary key column '{key}' is not a column of {name}", c.tokens[0])
    if watermark and watermark.column not in names:
        raise src.error(
            f"watermark column '{watermark.column}' is not a column of {name}", c.tokens[0]
        )
    return CreateTable(
        name,
        tuple(columns),
        options,
        watermark,
        primary_key,
        temporary,
        if_not_exists,
        pos,
        tuple(partition_by),
    )


def _physical_column(src: _Source, name: str, body: list[Token], pos: Position) -> ColumnDef:
    if not body:
        raise src.error(f"expected a type for column '{name}'", None)
    type_end = len(body)
    nullable = True
    depth = 0
    for k, tok in enumerate(body):
        word = tok.text.upper()
        depth += {TokenType.LT: 1, TokenType.GT: -1, **_DEPTH}.get(tok.token_type, 0)
        if depth:
            continue  # inside ROW<…>/ARRAY<…>: nested NOT NULL belongs to the field type
        if word == "METADATA":
            raise src.error(
                f"METADATA columns are not supported (column '{name}')", tok, UnsupportedSqlError
            )
        if word.split()[0] in ("COMMENT", "PRIMARY") or (
            word == "NOT" and k + 1 < len(body) and body[k + 1].text.upper() == "NULL"
        ):
            type_end = min(type_end, k)
            if word == "NOT":
                nullable = False
    if type_end == 0:
        raise src.error(f"expected a type for column '{name}'", body[0])
    try:
        dt = from_sqlglot(src.data_type(body[:type_end]))
    except SqlError as exc:
        if exc.line is not None:
            raise
        raise src.error(exc.detail, body[0], type(exc)) from exc
    if not nullable:
        dt = type(dt)(dt.name, dt.params, dt.fields, dt.element, dt.value, False)
    return ColumnDef(name, dt, None, pos)


def _has_inline_pk(body: list[Token]) -> bool:
    words = [w for t in body for w in t.text.upper().split()]
    return any(words[k : k + 2] == ["PRIMARY", "KEY"] for k in range(len(words)))


def _delay(column: str, expr: exp.Expression) -> int | None:
    if isinstance(expr, exp.Column) and expr.name == column:
        return 0
    if (
        isinstance(expr, exp.Sub)
        and isinstance(expr.this, exp.Column)
        and expr.this.name == column
        and isinstance(expr.expression, exp.Interval)
    ):
        return interval_ms(expr.expression)
    return None
