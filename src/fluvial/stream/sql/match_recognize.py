"""``MATCH_RECOGNIZE ( … )``: the clause parsed from the tokens inside its parentheses.

sqlglot cannot parse MATCH_RECOGNIZE in the Flink dialect, so
:mod:`fluvial.stream.sql.parser` cuts the clause out of the token stream (as it does for
window TVFs) and hands the tokens between ``MATCH_RECOGNIZE (`` and its ``)`` to
:func:`parse_match_recognize`. Expressions (MEASURES, DEFINE) are parsed by sqlglot
through the ``expression`` callback, so their line and column are positions in the file;
the PATTERN is read here from the token texts (sqlglot reads ``??`` as one token and
``*?`` as two, and has no notion of ``{n,m}``).

What Flink refuses is refused here, by name, with its position: ALL ROWS PER MATCH,
SUBSET, alternation ``|``, group patterns ``( … )`` with a quantifier or inside a
sequence, exclusions ``{- … -}``, anchors ``^``/``$``, PERMUTE, reluctant optional ``??``,
``{n,m}`` with ``n = 0``, a greedy quantifier on the last variable, an optional variable
right after a greedy one, patterns that can match no row, and a primary ORDER BY that is
not ascending.

>>> from fluvial.stream.sql.dialect import Flink
>>> import sqlglot
>>> text = "PARTITION BY u ORDER BY ts MEASURES A.ts AS t PATTERN (A B{2,3}? C) DEFINE A AS x > 1"
>>> tokens = Flink().tokenize(text)
>>> mr = parse_match_recognize(
...     tokens, lambda ts: sqlglot.parse_one(text[ts[0].start : ts[-1].end + 1], read=Flink),
...     lambda msg, tok: SqlError(msg))
>>> mr.pattern_sql(), mr.after_match.kind, list(mr.measures)
('A B{2,3}? C', 'next_row', ['t'])
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlglot import exp
from sqlglot.tokens import Token, TokenType

from fluvial.errors import SqlError, UnsupportedSqlError
from fluvial.stream.sql.intervals import interval_ms

__all__ = [
    "AfterMatch",
    "Alternation",
    "Concat",
    "MatchRecognize",
    "PatternNode",
    "Quantified",
    "Var",
    "parse_match_recognize",
    "pattern_sql",
]

ParseExpr = Callable[[Sequence[Token]], exp.Expression]
MakeError = Callable[[str, Token], SqlError]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CLAUSES: tuple[str, ...] = ("PARTITION", "ORDER", "MEASURES", "ONE", "ALL", "AFTER")
_CLAUSES += ("PATTERN", "WITHIN", "SUBSET", "DEFINE")


# -- the pattern ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Var:
    """A pattern variable: one row satisfying its DEFINE condition (TRUE if undefined)."""

    name: str
    line: int = 0
    column: int = 0


@dataclass(frozen=True)
class Quantified:
    """``this`` repeated ``min`` to ``max`` times (``max`` None: unbounded); ``reluctant``
    prefers fewer repetitions (``*?``, ``+?``, ``{n,m}?``)."""

    this: PatternNode
    min: int
    max: int | None
    reluctant: bool = False

    @property
    def greedy(self) -> bool:
        """Greedy: a quantifier that can take a variable number of rows and prefers more."""
        return not self.reluctant and self.max != self.min


@dataclass(frozen=True)
class Concat:
    """A sequence: each item matches the rows right after the previous one's."""

    items: tuple[PatternNode, ...]


@dataclass(frozen=True)
class Alternation:
    """``a | b``: either branch (parsed, then refused: Flink has no branching patterns)."""

    options: tuple[PatternNode, ...]


PatternNode = Var | Quantified | Concat | Alternation


def pattern_sql(node: PatternNode) -> str:
    """The pattern as Flink SQL text (without the ``PATTERN ( )`` around it)."""
    if isinstance(node, Var):
        return node.name
    if isinstance(node, Concat):
        return " ".join(
            f"({pattern_sql(i)})" if isinstance(i, Alternation) else pattern_sql(i)
            for i in node.items
        )
    if isinstance(node, Alternation):
        return " | ".join(pattern_sql(o) for o in node.options)
    inner = pattern_sql(node.this)
    if not isinstance(node.this, Var):
        inner = f"({inner})"
    lo, hi = node.min, node.max
    q = {(0, None): "*", (1, None): "+", (0, 1): "?"}.get((lo, hi))
    if q is None:
        q = f"{{{lo}}}" if lo == hi else f"{{{lo},{'' if hi is None else hi}}}"
    return inner + q + ("?" if node.reluctant else "")


@dataclass(frozen=True)
class AfterMatch:
    """Where matching resumes after a match (Flink's default is SKIP TO NEXT ROW)."""

    kind: Literal["past_last_row", "next_row", "to_first", "to_last"] = "next_row"
    var: str | None = None

    def sql(self) -> str:
        """The clause as Flink SQL text."""
        if self.kind == "past_last_row":
            return "AFTER MATCH SKIP PAST LAST ROW"
        if self.kind == "next_row":
            return "AFTER MATCH SKIP TO NEXT ROW"
        return f"AFTER MATCH SKIP TO {'FIRST' if self.kind == 'to_first' else 'LAST'} {self.var}"


@dataclass(frozen=True)
class MatchRecognize:
    """A parsed ``MATCH_RECOGNIZE`` clause (ONE ROW PER MATCH).

    ``order_by`` is ``(column, ascending)`` pairs; the first must be the input's event-time
    attribute, ascending (checked by the planner, which knows the schema). ``measures`` and
    ``define`` keep their order; ``within_ms`` bounds ``last row time - first row time``.
    """

    partition_by: tuple[str, ...]
    order_by: tuple[tuple[str, bool], ...]
    measures: dict[str, exp.Expression]
    pattern: PatternNode
    define: dict[str, exp.Expression] = field(default_factory=dict)
    after_match: AfterMatch = AfterMatch()
    within_ms: int | None = None
    rows_per_match: Literal["ONE"] = "ONE"

    @property
    def time_col(self) -> str:
        """The primary ORDER BY column: the event-time attribute."""
        return self.order_by[0][0]

    @property
    def variables(self) -> tuple[str, ...]:
        """The pattern's variables, in order of first appearance."""
        out: list[str] = []
        for v in _vars(self.pattern):
            if v.name not in out:
                out.append(v.name)
        return tuple(out)

    def pattern_sql(self) -> str:
        """The PATTERN as Flink SQL text."""
        return pattern_sql(self.pattern)


def _vars(node: PatternNode) -> list[Var]:
    if isinstance(node, Var):
        return [node]
    if isinstance(node, Quantified):
        return _vars(node.this)
    children = node.items if isinstance(node, Concat) else node.options
    return [v for c in children for v in _vars(c)]


# -- the clause -----------------------------------------------------------------------------


class _Reader:
    def __init__(self, tokens: Sequence[Token], error: MakeError, end: Token | None) -> None:
        self.tokens = list(tokens)
        self.i = 0
        self.error = error
        self.end = end

    @property
    def cur(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def words(self, *words: str) -> bool:
        """Whether the next tokens spell ``words`` (sqlglot joins ``ORDER BY`` into one)."""
        wanted = list(words)
        j = self.i
        while wanted:
            if j >= len(self.tokens):
                return False
            parts = self.tokens[j].text.upper().split()
            if not parts or parts != wanted[: len(parts)]:
                return False
            wanted = wanted[len(parts) :]
            j += 1
        self._next = j
        return True

    def accept(self, *words: str) -> bool:
        if self.words(*words):
            self.i = self._next
            return True
        return False

    def fail(self, expected: str) -> SqlError:
        tok = self.cur
        if tok is None:
            where = self.end or (self.tokens[-1] if self.tokens else None)
            assert where is not None
            return self.error(f"expected {expected}, found the end of MATCH_RECOGNIZE", where)
        return self.error(f"expected {expected}, found {tok.text!r}", tok)

    def expect(self, *words: str) -> None:
        if not self.accept(*words):
            raise self.fail(" ".join(words))

    def name(self, what: str) -> Token:
        tok = self.cur
        if tok is None or not _NAME.match(tok.text) or tok.token_type == TokenType.STRING:
            raise self.fail(what)
        self.i += 1
        return tok

    def at_clause(self) -> bool:
        tok = self.cur
        return tok is not None and tok.text.upper().split()[0] in _CLAUSES

    def span(self) -> list[Token]:
        """Tokens up to the next comma at depth 0 or the next clause keyword."""
        start, depth = self.i, 0
        while self.cur is not None:
            t = self.cur.token_type
            if depth == 0 and (t == TokenType.COMMA or (self.i > start and self.at_clause())):
                break
            depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(t, 0)
            self.i += 1
        return self.tokens[start : self.i]


def parse_match_recognize(
    tokens: Sequence[Token],
    expression: ParseExpr,
    error: MakeError,
    end: Token | None = None,
) -> MatchRecognize:
    """Parse the tokens inside ``MATCH_RECOGNIZE ( … )``.

    ``expression(tokens)`` parses a span with sqlglot (keeping file positions);
    ``error(message, token)`` builds an error positioned at a token; ``end`` (the closing
    parenthesis) positions errors about a missing clause.
    """
    r = _Reader(tokens, error, end)

    def unsupported(message: str, tok: Token) -> SqlError:
        err = error(message, tok)
        return UnsupportedSqlError(err.detail, line=err.line, column=err.column, source=err.source)

    partition: list[str] = []
    if r.accept("PARTITION", "BY"):
        partition.append(r.name("a PARTITION BY column").text)
        while r.accept(","):
            partition.append(r.name("a PARTITION BY column").text)
    if not r.accept("ORDER", "BY"):
        raise r.fail("ORDER BY <time attribute> (MATCH_RECOGNIZE needs its rows ordered)")
    order: list[tuple[str, bool]] = []
    while True:
        col = r.name("an ORDER BY column")
        ascending = True
        if r.accept("DESC"):
            ascending = False
        else:
            r.accept("ASC")
        if not order and not ascending:
            raise unsupported(
                "the primary ORDER BY of MATCH_RECOGNIZE must be the time attribute, "
                "ascending (Flink refuses DESC)",
                col,
            )
        order.append((col.text, ascending))
        if not r.accept(","):
            break
    measures: dict[str, exp.Expression] = {}
    if r.accept("MEASURES"):
        while True:
            span = r.span()
            if not span:
                raise r.fail("a measure: <expression> AS <name>")
            node = expression(span)
            if not isinstance(node, exp.Alias):
                raise error("a measure needs a name: <expression> AS <name>", span[0])
            if node.alias in measures:
                raise error(f"measure '{node.alias}' is defined twice", span[0])
            _refuse_functions(node.this, span[0], unsupported, measure=True)
            measures[node.alias] = node.this
            if not r.accept(","):
                break
    if not measures:
        raise r.fail("MEASURES <expression> AS <name>, … (ONE ROW PER MATCH needs measures)")
    if r.words("ALL", "ROWS", "PER", "MATCH"):
        raise unsupported(
            "ALL ROWS PER MATCH is not supported (Flink supports ONE ROW PER MATCH only)",
            r.cur or tokens[0],
        )
    r.accept("ONE", "ROW", "PER", "MATCH")
    after = AfterMatch()
    if r.cur is not None and r.cur.text.upper() == "AFTER":
        after = _after_match(r)
    if not r.accept("PATTERN"):
        raise r.fail("PATTERN ( … )")
    open_tok = r.cur
    if open_tok is None or open_tok.token_type != TokenType.L_PAREN:
        raise r.fail("'(' after PATTERN")
    close = _matching(r.tokens, r.i, error)
    pattern = _Pattern(r.tokens[r.i + 1 : close], error, unsupported, r.tokens[close]).parse()
    r.i = close + 1
    within: int | None = None
    if r.accept("WITHIN"):
        start = r.cur
        span = r.span()
        if not span or start is None:
            raise r.fail("an interval after WITHIN")
        try:
            within = interval_ms(expression(span))
        except SqlError as exc:
            if exc.line is not None:
                raise
            raise error(exc.detail, start) from exc
        if within <= 0:
            raise error(f"WITHIN must be a positive interval, found {within} ms", start)
    if r.cur is not None and r.cur.text.upper() == "SUBSET":
        raise unsupported("SUBSET is not supported (as in Flink)", r.cur)
    define: dict[str, exp.Expression] = {}
    if r.accept("DEFINE"):
        while True:
            var = r.name("a pattern variable")
            r.expect("AS")
            span = r.span()
            if not span:
                raise r.fail(f"a condition for {var.text}")
            if var.text in define:
                raise error(f"variable {var.text} is defined twice", var)
            node = expression(span)
            _refuse_functions(node, span[0], unsupported, measure=False)
            define[var.text] = node
            if not r.accept(","):
                break
    elif r.cur is None:
        raise r.fail("DEFINE <variable> AS <condition>, …")
    if r.cur is not None:
        raise r.fail(
            "the end of MATCH_RECOGNIZE (the clauses are PARTITION BY, ORDER BY, "
            "MEASURES, ONE ROW PER MATCH, AFTER MATCH SKIP, PATTERN, WITHIN, DEFINE)"
        )
    mr = MatchRecognize(tuple(partition), tuple(order), measures, pattern, define, after, within)
    names = set(mr.variables)
    for var_name in define:
        if var_name not in names:
            tok = next(t for t in tokens if t.text == var_name)
            raise error(
                f"DEFINE names {var_name}, which is not a variable of the PATTERN "
                f"({', '.join(mr.variables)})",
                tok,
            )
    if after.var is not None and after.var not in names:
        tok = next((t for t in tokens if t.text == after.var), tokens[0])
        raise error(
            f"AFTER MATCH SKIP TO {after.var}: {after.var} is not a variable of the PATTERN",
            tok,
        )
    return mr


def _after_match(r: _Reader) -> AfterMatch:
    r.expect("AFTER", "MATCH", "SKIP")
    if r.accept("PAST", "LAST", "ROW"):
        return AfterMatch("past_last_row")
    r.expect("TO")
    if r.accept("NEXT", "ROW"):
        return AfterMatch("next_row")
    if r.accept("FIRST"):
        return AfterMatch("to_first", r.name("a pattern variable").text)
    r.accept("LAST")  # SKIP TO <var> means SKIP TO LAST <var>
    return AfterMatch("to_last", r.name("NEXT ROW, FIRST <variable> or LAST <variable>").text)


_UNSUPPORTED_FUNCTIONS = {
    "CLASSIFIER": "CLASSIFIER() is not supported (as in Flink)",
    "MATCH_NUMBER": "MATCH_NUMBER() is not supported (as in Flink)",
    "NEXT": "NEXT() is not supported (Flink supports PREV only)",
    "RUNNING": "RUNNING/FINAL semantics are not supported (as in Flink)",
    "FINAL": "RUNNING/FINAL semantics are not supported (as in Flink)",
    "MATCH_PROCTIME": "MATCH_PROCTIME() is not supported (event time only)",
}


def _refuse_functions(
    node: exp.Expression,
    where: Token,
    unsupported: Callable[[str, Token], SqlError],
    *,
    measure: bool,
) -> None:
    for n in node.walk():
        name = n.name.upper() if isinstance(n, exp.Anonymous) else ""
        if name in _UNSUPPORTED_FUNCTIONS:
            raise _at(unsupported(_UNSUPPORTED_FUNCTIONS[name], where), n)
        if name == "PREV" and measure:
            raise _at(unsupported("PREV cannot be used in MEASURES (as in Flink)", where), n)
        if name == "MATCH_ROWTIME" and not measure:
            raise _at(unsupported("MATCH_ROWTIME() belongs in MEASURES, not DEFINE", where), n)


def _at(err: SqlError, node: Any) -> SqlError:
    """Re-position an error at a sqlglot node when it knows its position."""
    meta = node.meta or {}
    line, col = meta.get("line"), meta.get("col")
    if line is None or col is None:
        return err
    name = node.name if isinstance(node, exp.Anonymous) else ""
    return type(err)(err.detail, line=line, column=max(1, col - len(name) + 1), source=err.source)


def _matching(tokens: Sequence[Token], i: int, error: MakeError) -> int:
    depth = 0
    for j in range(i, len(tokens)):
        depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(tokens[j].token_type, 0)
        if depth == 0:
            return j
    raise error("unbalanced parentheses: no ')' for this '('", tokens[i])


class _Pattern:
    """Recursive descent over the PATTERN tokens: alternation > sequence > quantified."""

    def __init__(
        self,
        tokens: Sequence[Token],
        error: MakeError,
        unsupported: Callable[[str, Token], SqlError],
        close: Token,
    ) -> None:
        self.tokens = list(tokens)
        self.i = 0
        self.error = error
        self.unsupported = unsupported
        self.close = close

    @property
    def cur(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def parse(self) -> PatternNode:
        if not self.tokens:
            raise self.error("expected a pattern variable, found an empty PATTERN ()", self.close)
        node = self.alternation()
        if self.cur is not None:
            raise self.error(
                f"expected a pattern variable, a quantifier or ')', found {self.cur.text!r}",
                self.cur,
            )
        _validate(node, self.tokens, self.unsupported)
        return node

    def alternation(self) -> PatternNode:
        options = [self.sequence()]
        while self.cur is not None and self.cur.token_type == TokenType.PIPE:
            pipe = self.cur
            self.i += 1
            options.append(self.sequence())
            self._pipe = pipe
        if len(options) > 1:
            raise self.unsupported(
                "alternation '|' in PATTERN is not supported (Flink's CEP has no branching "
                "patterns)",
                self._pipe,
            )
        return options[0]

    def sequence(self) -> PatternNode:
        items: list[PatternNode] = []
        while self.cur is not None and self.cur.token_type not in (
            TokenType.PIPE,
            TokenType.R_PAREN,
        ):
            items.append(self.quantified())
        if not items:
            where = self.cur or self.close
            raise self.error(f"expected a pattern variable, found {where.text!r}", where)
        return items[0] if len(items) == 1 else Concat(tuple(items))

    def primary(self) -> PatternNode:
        tok = self.cur
        assert tok is not None
        text = tok.text.upper()
        if tok.token_type == TokenType.L_PAREN:
            self.i += 1
            inner = self.alternation()
            if self.cur is None or self.cur.token_type != TokenType.R_PAREN:
                raise self.error("expected ')' to close the group", self.cur or self.close)
            self.i += 1
            if isinstance(inner, Var):
                return inner
            raise self.unsupported(
                "group patterns ( … ) are not supported (as in Flink); write the variables "
                "in sequence",
                tok,
            )
        if tok.token_type == TokenType.L_BRACE:
            nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
            if nxt is not None and nxt.token_type == TokenType.DASH:
                raise self.unsupported("pattern exclusion {- … -} is not supported", tok)
        if tok.token_type in (TokenType.CARET,) or text in ("^", "$"):
            raise self.unsupported(f"the anchor {tok.text!r} is not supported in PATTERN", tok)
        if text == "PERMUTE":
            raise self.unsupported("PERMUTE is not supported in PATTERN", tok)
        if not _NAME.match(tok.text):
            if tok.text.endswith("$") and _NAME.match(tok.text[:-1]):
                raise self.unsupported("the anchor '$' is not supported in PATTERN", tok)
            raise self.error(f"expected a pattern variable or '(', found {tok.text!r}", tok)
        self.i += 1
        line, col = tok.line, tok.col - len(tok.text) + 1
        return Var(tok.text, line, col)

    def quantified(self) -> PatternNode:
        node = self.primary()
        tok = self.cur
        if tok is None:
            return node
        t = tok.token_type
        lo: int
        hi: int | None
        if t == TokenType.STAR:
            lo, hi = 0, None
        elif t == TokenType.PLUS:
            lo, hi = 1, None
        elif t == TokenType.DQMARK:
            raise self.unsupported(
                "the reluctant optional quantifier '??' is not supported (as in Flink)", tok
            )
        elif t == TokenType.PLACEHOLDER and tok.text == "?":
            lo, hi = 0, 1
        elif t == TokenType.L_BRACE:
            lo, hi = self.braces()
            self.i -= 1  # braces() consumed up to '}'; the common step below moves past it
        else:
            return node
        self.i += 1
        reluctant = False
        nxt = self.cur
        if nxt is not None and nxt.token_type == TokenType.PLACEHOLDER and nxt.text == "?":
            if hi == 1 and lo == 0:
                raise self.unsupported(
                    "the reluctant optional quantifier '??' is not supported (as in Flink)", tok
                )
            reluctant = True
            self.i += 1
        after = self.cur
        if after is not None and after.token_type in (
            TokenType.STAR,
            TokenType.PLUS,
            TokenType.L_BRACE,
            TokenType.DQMARK,
        ):
            raise self.error(f"expected a pattern variable, found {after.text!r}", after)
        if after is not None and after.token_type == TokenType.PLACEHOLDER:
            raise self.error("expected a pattern variable, found '?'", after)
        return Quantified(node, lo, hi, reluctant)

    def braces(self) -> tuple[int, int | None]:
        """``{n}``, ``{n,}``, ``{n,m}`` or ``{,m}``; leaves ``self.i`` after the ``}``."""
        open_tok = self.tokens[self.i]
        self.i += 1
        parts: list[Token] = []
        while self.cur is not None and self.cur.token_type != TokenType.R_BRACE:
            parts.append(self.cur)
            self.i += 1
        if self.cur is None:
            raise self.error("expected '}' to close the quantifier", open_tok)
        self.i += 1
        texts = [p.text for p in parts]
        comma = texts.count(",")
        numbers = [p for p in parts if p.text != ","]
        if comma > 1 or not numbers or any(not p.text.isdigit() for p in numbers):
            raise self.error(
                "expected a quantifier {n}, {n,}, {n,m} or {,m} with whole numbers", open_tok
            )
        if comma == 0:
            if len(numbers) != 1:
                raise self.error("expected a quantifier {n}", open_tok)
            n = int(numbers[0].text)
            return n, n
        at = texts.index(",")
        before = [p for p in parts[:at]]
        after = [p for p in parts[at + 1 :]]
        if len(before) > 1 or len(after) > 1:
            raise self.error("expected a quantifier {n,m}", open_tok)
        lo = int(before[0].text) if before else 0
        hi = int(after[0].text) if after else None
        if hi is not None and hi < lo:
            raise self.error(
                f"quantifier {{{lo},{hi}}}: the maximum is below the minimum", open_tok
            )
        if hi == 0:
            raise self.error("quantifier {…,0} matches nothing", open_tok)
        return lo, hi


def _validate(
    node: PatternNode, tokens: Sequence[Token], unsupported: Callable[[str, Token], SqlError]
) -> None:
    """Flink's restrictions on a sequence of quantified variables."""
    items = node.items if isinstance(node, Concat) else (node,)

    def where(item: PatternNode) -> Token:
        var = _vars(item)[0]
        return next((t for t in tokens if t.text == var.name and t.line == var.line), tokens[0])

    for item in items:
        if isinstance(item, Quantified) and item.min == 0 and item.max not in (None, 1):
            raise unsupported(
                f"{pattern_sql(item)}: a {{n,m}} quantifier needs n >= 1 (Flink refuses "
                "a minimum of 0 there; use * or ? instead)",
                where(item),
            )
    if all(isinstance(i, Quantified) and i.min == 0 for i in items):
        raise unsupported(
            "a pattern that can match no row is not supported (as in Flink: there must be at "
            "least one non-optional variable)",
            where(items[0]),
        )
    last = items[-1]
    if isinstance(last, Quantified) and last.greedy:
        raise unsupported(
            f"the last variable of a pattern cannot have a greedy quantifier "
            f"({pattern_sql(last)}), as in Flink; make it reluctant ({pattern_sql(last)}?) or "
            "end the pattern with a variable that negates its condition",
            where(last),
        )
    for prev, item in itertools.pairwise(items):
        if (
            isinstance(prev, Quantified)
            and prev.greedy
            and isinstance(item, Quantified)
            and item.min == 0
        ):
            raise unsupported(
                f"an optional variable ({pattern_sql(item)}) cannot follow a greedy one "
                f"({pattern_sql(prev)}), as in Flink",
                where(item),
            )
