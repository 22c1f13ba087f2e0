"""Tag expressions: which tagged columns a tag grant covers (our LF-Tag expressions).

The language is small and parsed by hand (never evaluated as code)::

    expr   := term ("OR" term)*
    term   := factor ("AND" factor)*
    factor := "NOT" factor | "(" expr ")" | test
    test   := KEY ("=" | "!=") (VALUE | "*")  |  KEY ["NOT"] "IN" "(" VALUE ("," VALUE)* ")"

``key=value`` holds when the column's tag *key* is *value*; ``key=*`` when it has tag
*key* at all; ``!=`` is the negation of ``=`` (so ``pii!=*`` means "not tagged pii").
Keys and values are letters, digits and ``_ - . : /``, or a single-quoted string.
Keywords are case-insensitive.

>>> expr = TagExpression.parse("domain=sales AND pii!=*")
>>> str(expr)
"domain = 'sales' AND pii != *"
>>> expr.matches({"domain": "sales"}), expr.matches({"domain": "sales", "pii": "email"})
(True, False)
>>> TagExpression.parse("tier IN (gold, silver) OR NOT (owner = 'team a')").matches({})
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from fluvial.errors import UsageError

__all__ = ["TagExpression"]

_TOKEN = re.compile(
    r"\s*(?:(?P<op>!=|=|\(|\)|,|\*)|'(?P<quoted>(?:[^']|'')*)'|(?P<word>[A-Za-z0-9_\-.:/]+))"
)
_KEYWORDS = {"AND", "OR", "NOT", "IN"}
_WORD = re.compile(r"[A-Za-z0-9_\-.:/]+")


@dataclass(frozen=True)
class _Test:
    key: str
    values: frozenset[str] | None  # None: any value ("*")
    negated: bool

    def matches(self, tags: Mapping[str, str]) -> bool:
        value = tags.get(self.key)
        hit = value is not None and (self.values is None or value in self.values)
        return hit != self.negated

    def render(self) -> str:
        op = "!=" if self.negated else "="
        if self.values is None:
            return f"{_key(self.key)} {op} *"
        if len(self.values) == 1:
            return f"{_key(self.key)} {op} {_quote(next(iter(self.values)))}"
        listed = ", ".join(_quote(v) for v in sorted(self.values))
        return f"{_key(self.key)} {'NOT IN' if self.negated else 'IN'} ({listed})"


@dataclass(frozen=True)
class _Not:
    inner: _Node

    def matches(self, tags: Mapping[str, str]) -> bool:
        return not self.inner.matches(tags)

    def render(self) -> str:
        return f"NOT ({self.inner.render()})"


@dataclass(frozen=True)
class _Junction:
    op: str  # "AND" or "OR"
    parts: tuple[_Node, ...]

    def matches(self, tags: Mapping[str, str]) -> bool:
        results = (p.matches(tags) for p in self.parts)
        return all(results) if self.op == "AND" else any(results)

    def render(self) -> str:
        rendered = []
        for part in self.parts:
            text = part.render()
            # AND binds tighter than OR: only an OR inside an AND needs parentheses
            if isinstance(part, _Junction) and part.op == "OR" and self.op == "AND":
                text = f"({text})"
            rendered.append(text)
        return f" {self.op} ".join(rendered)


_Node = _Test | _Not | _Junction


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _key(key: str) -> str:
    """A key as written: bare when it is a plain word, quoted otherwise."""
    if _WORD.fullmatch(key) and key.upper() not in _KEYWORDS:
        return key
    return _quote(key)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []  # (kind, value, position)
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                raise self.error(f"unexpected {text[pos:].strip()[:1]!r}", pos)
            start = match.start(match.lastgroup or 0)
            if match.group("op") is not None:
                self.tokens.append(("op", match.group("op"), start))
            elif match.group("quoted") is not None:
                self.tokens.append(("value", match.group("quoted").replace("''", "'"), start))
            else:
                word = match.group("word")
                kind = "kw" if word.upper() in _KEYWORDS else "value"
                self.tokens.append((kind, word.upper() if kind == "kw" else word, start))
            pos = match.end()
        self.i = 0

    def error(self, what: str, pos: int | None = None) -> UsageError:
        if pos is None:
            pos = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text)
        return UsageError(
            f"tag expression {self.text!r}, column {pos + 1}: {what} "
            '(expected e.g. "domain=sales AND pii!=*")'
        )

    def peek(self) -> tuple[str, str] | None:
        if self.i < len(self.tokens):
            kind, value, _ = self.tokens[self.i]
            return kind, value
        return None

    def take(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            wanted = value or {"value": "a tag key or value", "kw": "a keyword"}.get(kind, kind)
            found = "the end" if token is None else repr(token[1])
            raise self.error(f"expected {wanted}, found {found}")
        self.i += 1
        return token[1]

    def accept(self, kind: str, value: str) -> bool:
        if self.peek() == (kind, value):
            self.i += 1
            return True
        return False

    def expr(self) -> _Node:
        parts = [self.term()]
        while self.accept("kw", "OR"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else _Junction("OR", tuple(parts))

    def term(self) -> _Node:
        parts = [self.factor()]
        while self.accept("kw", "AND"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else _Junction("AND", tuple(parts))

    def factor(self) -> _Node:
        if self.accept("kw", "NOT"):
            return _Not(self.factor())
        if self.accept("op", "("):
            inner = self.expr()
            self.take("op", ")")
            return inner
        return self.test()

    def test(self) -> _Node:
        key = self.take("value")
        if self.accept("op", "="):
            return _Test(key, self.value_or_star(), negated=False)
        if self.accept("op", "!="):
            return _Test(key, self.value_or_star(), negated=True)
        negated = self.accept("kw", "NOT")
        self.take("kw", "IN")
        self.take("op", "(")
        values = [self.take("value")]
        while self.accept("op", ","):
            values.append(self.take("value"))
        self.take("op", ")")
        return _Test(key, frozenset(values), negated=negated)

    def value_or_star(self) -> frozenset[str] | None:
        if self.accept("op", "*"):
            return None
        return frozenset([self.take("value")])


@dataclass(frozen=True)
class TagExpression:
    """A parsed tag expression; ``str()`` gives its canonical text (what is stored)."""

    root: _Node

    @classmethod
    def parse(cls, text: str) -> TagExpression:
        """Parse *text*. Raises UsageError naming the column of the first mistake."""
        parser = _Parser(text)
        if not parser.tokens:
            raise parser.error("the expression is empty", 0)
        root = parser.expr()
        if parser.peek() is not None:
            raise parser.error(f"unexpected {parser.peek()[1]!r}")  # type: ignore[index]
        return cls(root)

    def matches(self, tags: Mapping[str, str]) -> bool:
        """Whether an object with *tags* (key to value) is covered."""
        return self.root.matches(tags)

    def keys(self) -> frozenset[str]:
        """The tag keys the expression mentions."""
        found: set[str] = set()
        todo: list[_Node] = [self.root]
        while todo:
            node = todo.pop()
            if isinstance(node, _Test):
                found.add(node.key)
            elif isinstance(node, _Not):
                todo.append(node.inner)
            else:
                todo += node.parts
        return frozenset(found)

    def __str__(self) -> str:
        return self.root.render()
