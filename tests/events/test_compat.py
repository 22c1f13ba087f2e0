"""Compatibility modes: breaking and non-breaking changes, checked both ways."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fluvial.errors import IncompatibleSchemaError, UsageError
from fluvial.events.compat import Compatibility, check_compatibility, compatibility_problems

BASE: dict[str, Any] = {
    "type": "object",
    "required": ["product_id", "quantity"],
    "properties": {
        "product_id": {"type": "string"},
        "quantity": {"type": "integer", "minimum": 1},
        "price": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD"]},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}


def changed(**edits: Any) -> dict[str, Any]:
    """BASE with properties edited: a value replaces the property, None removes it."""
    new = copy.deepcopy(BASE)
    for name, value in edits.items():
        if name.startswith("_"):
            new[name[1:]] = value
        elif value is None:
            del new["properties"][name]
        else:
            new["properties"][name] = value
    return new


# (description, new schema, breaks BACKWARD, breaks FORWARD, a path the message names)
CASES = [
    ("add optional property", changed(color={"type": "string"}), False, False, None),
    (
        "add required property",
        changed(color={"type": "string"}, _required=["product_id", "quantity", "color"]),
        True,
        False,
        "properties.color became required",
    ),
    (
        "drop a requirement",
        changed(_required=["product_id"]),
        False,
        True,
        "properties.quantity is no longer required",
    ),
    ("remove optional property (open model)", changed(price=None), False, False, None),
    (
        "narrow a type",
        changed(price={"type": "integer", "minimum": 0}),
        True,
        False,
        "properties.price type changed from number to integer",
    ),
    (
        "widen a type",
        changed(quantity={"type": "number", "minimum": 1}),
        False,
        True,
        "properties.quantity type changed from integer to number",
    ),
    (
        "raise a minimum",
        changed(quantity={"type": "integer", "minimum": 2}),
        True,
        False,
        "properties.quantity lower bound changed from >= 1 to >= 2",
    ),
    (
        "remove an enum value",
        changed(currency={"type": "string", "enum": ["EUR"]}),
        True,
        False,
        "properties.currency lost the enum values ['USD']",
    ),
    (
        "add an enum value",
        changed(currency={"type": "string", "enum": ["EUR", "USD", "GBP"]}),
        False,
        True,
        "properties.currency gained the enum values ['GBP']",
    ),
    (
        "narrow array items",
        changed(tags={"type": "array", "items": {"type": "string", "maxLength": 10}}),
        True,
        False,
        "properties.tags[] maxLength changed from none to 10",
    ),
    (
        "forbid additional properties",
        changed(_additionalProperties=False),
        True,
        False,
        "properties.* additional properties became forbidden",
    ),
]


@pytest.mark.parametrize(
    ("what", "new", "breaks_backward", "breaks_forward", "message"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_modes(
    what: str, new: dict[str, Any], breaks_backward: bool, breaks_forward: bool, message: str | None
) -> None:
    backward = compatibility_problems(BASE, new, Compatibility.BACKWARD)
    forward = compatibility_problems(BASE, new, Compatibility.FORWARD)
    full = compatibility_problems(BASE, new, Compatibility.FULL)
    assert bool(backward) == breaks_backward, backward
    assert bool(forward) == breaks_forward, forward
    assert bool(full) == (breaks_backward or breaks_forward)
    assert compatibility_problems(BASE, new, Compatibility.NONE) == []
    if message:
        assert any(p.startswith(message) for p in backward + forward), backward + forward


def test_removing_a_property_under_a_closed_model_breaks_backward() -> None:
    old = changed(_additionalProperties=False)
    new = changed(_additionalProperties=False, price=None)
    problems = compatibility_problems(old, new, "BACKWARD")
    assert problems and problems[0].startswith("properties.price was removed")
    # the reverse (adding it back) is what FORWARD forbids
    assert compatibility_problems(new, old, "FORWARD")[0].startswith("properties.price was added")


def test_nested_objects_in_array_items_are_compared() -> None:
    item = {"type": "object", "properties": {"price": {"type": "number"}}}
    old = {"type": "object", "properties": {"items": {"type": "array", "items": item}}}
    new = copy.deepcopy(old)
    new["properties"]["items"]["items"]["required"] = ["price"]
    assert compatibility_problems(old, new, "BACKWARD") == [
        "properties.items[].price became required"
    ]


def test_local_refs_are_followed() -> None:
    old = {
        "type": "object",
        "$defs": {"money": {"type": "number"}},
        "properties": {"price": {"$ref": "#/$defs/money"}},
    }
    new = copy.deepcopy(old)
    new["$defs"]["money"] = {"type": "integer"}
    assert compatibility_problems(old, new, "BACKWARD") == [
        "properties.price type changed from number to integer"
    ]


def test_opaque_keywords_must_not_change_on_the_reader() -> None:
    old = {"type": "object"}
    new = {"type": "object", "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}
    assert "changed 'anyOf'" in compatibility_problems(old, new, "BACKWARD")[0]
    assert compatibility_problems(old, new, "FORWARD") == []  # the writer may narrow


def test_transitive_checks_every_earlier_version() -> None:
    v1 = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    v2 = {"type": "object", "properties": {"a": {"type": "string"}}}
    v3 = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    # v3 against v2 alone: re-adding the requirement breaks BACKWARD
    with pytest.raises(IncompatibleSchemaError, match="became required"):
        check_compatibility([(1, v1), (2, v2)], v3, "BACKWARD")
    # FORWARD: v3 is fine against v2; FORWARD_TRANSITIVE also checks v1 (fine as well)
    check_compatibility([(1, v1), (2, v2)], v3, "FORWARD_TRANSITIVE")
    # dropping the requirement is fine for the previous version but not v1 under FULL_TRANSITIVE
    v2b = {"type": "object", "properties": {"a": {"type": "string"}, "b": {}}}
    check_compatibility([(1, v2)], v2b, "FULL")
    with pytest.raises(IncompatibleSchemaError, match=r"against version 1.*no longer required"):
        check_compatibility([(1, v1), (2, v2)], v2b, "FULL_TRANSITIVE")


def test_error_message_and_field() -> None:
    new = changed(_required=["product_id", "quantity", "price"])
    with pytest.raises(IncompatibleSchemaError) as info:
        check_compatibility([(1, BASE)], new, "BACKWARD")
    assert str(info.value) == "incompatible with BACKWARD: properties.price became required"
    assert info.value.field == "properties.price"


def test_mode_parsing() -> None:
    assert Compatibility.parse("backward_transitive") is Compatibility.BACKWARD_TRANSITIVE
    assert Compatibility.FULL.backward and Compatibility.FULL.forward
    with pytest.raises(UsageError, match="did you mean 'FORWARD'"):
        Compatibility.parse("FORWRD")
