"""The tag expression language: what matches, what does not, and what does not parse."""

from __future__ import annotations

import pytest

from fluvial.errors import UsageError
from fluvial.govern.tags import TagExpression

SALES_PII = {"domain": "sales", "pii": "email"}
SALES = {"domain": "sales"}
HR = {"domain": "hr", "tier": "gold"}


@pytest.mark.parametrize(
    ("expression", "tags", "expected"),
    [
        ("domain=sales", SALES, True),
        ("domain=sales", HR, False),
        ("domain=sales", {}, False),
        ("domain!=sales", {}, True),  # != is the negation of =: untagged objects match
        ("domain!=sales", HR, True),
        ("pii=*", SALES_PII, True),
        ("pii=*", SALES, False),
        ("pii!=*", SALES, True),
        ("pii!=*", SALES_PII, False),
        ("domain=sales AND pii!=*", SALES, True),
        ("domain=sales AND pii!=*", SALES_PII, False),
        ("domain=hr OR pii=email", SALES_PII, True),
        ("domain=hr OR pii=email", SALES, False),
        ("domain=sales OR domain=hr AND tier=silver", SALES, True),  # AND binds tighter
        ("(domain=sales OR domain=hr) AND tier=silver", SALES, False),
        ("NOT domain=sales", HR, True),
        ("not (domain = sales and pii = *)", SALES, True),
        ("domain IN (sales, hr)", HR, True),
        ("domain in ('sales')", HR, False),
        ("domain NOT IN (sales, hr)", {"domain": "ops"}, True),
        ("domain NOT IN (sales, hr)", SALES, False),
        ("'data domain' = 'a b'", {"data domain": "a b"}, True),
        ("owner='o''brien'", {"owner": "o'brien"}, True),
    ],
)
def test_matches(expression: str, tags: dict[str, str], expected: bool) -> None:
    parsed = TagExpression.parse(expression)
    assert parsed.matches(tags) is expected
    # the canonical text parses back to an expression that decides the same
    assert TagExpression.parse(str(parsed)).matches(tags) is expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "the expression is empty"),
        ("domain", "expected IN, found the end"),
        ("domain=", "column 8: expected a tag key or value, found the end"),
        ("a=1 b=2", "column 5: unexpected 'b'"),
        ("(a=1", "expected ), found the end"),
        ("a=1 AND", "expected a tag key or value"),
        ("a IN ()", "found ')'"),
        ("a == 1", "found '='"),
        ("__import__('os').system('x')", "expected IN, found '('"),
        ("a=1; drop", "unexpected ';'"),
        ("a=1 OR OR b=2", "found 'OR'"),
    ],
)
def test_bad_expressions_are_refused_with_the_column(expression: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        TagExpression.parse(expression)
    assert message in str(info.value)


def test_canonical_text_and_keys() -> None:
    parsed = TagExpression.parse("(a=1 or b in (y,x)) and not c=*")
    assert str(parsed) == "(a = '1' OR b IN ('x', 'y')) AND NOT (c = *)"
    assert parsed.keys() == {"a", "b", "c"}
