"""Schema compatibility: can readers of one version handle data written with another?

The modes follow Confluent Schema Registry's, for JSON Schema:

============================  ================================================================
``BACKWARD``                  consumers using the new schema can read data written with the
                              previous one (you may add optional fields, remove fields, widen)
``FORWARD``                   consumers using the previous schema can read data written with
                              the new one (you may add fields, remove optional ones, narrow)
``FULL``                      both
``NONE``                      no check
``*_TRANSITIVE``              the same, against every earlier version, not just the previous
============================  ================================================================

The check is a structural comparison, not a proof over all instances: "data valid under the
writer's schema is valid under the reader's schema" is checked keyword by keyword (types,
``required``, ``properties`` recursively, ``enum``/``const``, numeric, length and size bounds,
``pattern``, ``format``, ``additionalProperties``, ``items``). Keywords it cannot reason about
(``allOf``, ``anyOf``, ``oneOf``, ``not``, ``if``, ``patternProperties``, …) must be unchanged on
the reading side; only the writer may add them (they only narrow what it writes).

One deliberate leniency, as in most schema registries' practice: a property declared on one
side only is not treated as a conflict with the other side's *open* content model (no
``additionalProperties: false``) — producers are assumed not to send undeclared fields whose
meaning clashes with a later declaration. So adding an optional property is BACKWARD- and
FORWARD-compatible, while adding a *required* one breaks BACKWARD.

>>> old = {"type": "object", "properties": {"quantity": {"type": "integer"}}}
>>> new = {"type": "object", "properties": {"quantity": {"type": "integer"}},
...        "required": ["quantity"]}
>>> compatibility_problems(old, new, Compatibility.BACKWARD)
['properties.quantity became required']
>>> compatibility_problems(old, new, Compatibility.FORWARD)
[]
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from typing import Any

from fluvial.errors import IncompatibleSchemaError, UsageError, did_you_mean

__all__ = [
    "Compatibility",
    "check_compatibility",
    "compatibility_problems",
]

_ALL_TYPES = frozenset({"null", "boolean", "object", "array", "number", "integer", "string"})

# keywords that only ever narrow what a schema accepts and that we do not compare
# structurally: the reader must not add or change them; the writer may
_OPAQUE = (
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "patternProperties",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contains",
    "minContains",
    "maxContains",
    "prefixItems",
)

# (keyword, is a lower bound)
_SIZE_BOUNDS = (
    ("minLength", True),
    ("maxLength", False),
    ("minItems", True),
    ("maxItems", False),
    ("minProperties", True),
    ("maxProperties", False),
)


class Compatibility(enum.StrEnum):
    """A subject's compatibility mode."""

    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @classmethod
    def parse(cls, value: str | Compatibility) -> Compatibility:
        """The mode named *value* (case-insensitive); UsageError naming the valid ones.

        >>> Compatibility.parse("full")
        <Compatibility.FULL: 'FULL'>
        """
        if isinstance(value, Compatibility):
            return value
        name = str(value).strip().upper()
        try:
            return cls(name)
        except ValueError:
            names = [m.value for m in cls]
            raise UsageError(
                f"unknown compatibility mode {value!r}; expected one of {', '.join(names)}"
                f"{did_you_mean(name, names)}"
            ) from None

    @property
    def backward(self) -> bool:
        return self.value.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        return self.value.startswith(("FORWARD", "FULL"))

    @property
    def transitive(self) -> bool:
        return self.value.endswith("_TRANSITIVE")


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _types(schema: Mapping[str, Any]) -> frozenset[str]:
    """The JSON types a schema admits by its ``type``/``enum``/``const`` (integer ⊂ number)."""
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else list(schema["enum"])
        found = set()
        for v in values:
            if v is None:
                found.add("null")
            elif isinstance(v, bool):
                found.add("boolean")
            elif isinstance(v, int) or (isinstance(v, float) and v.is_integer()):
                found.add("integer")
            elif isinstance(v, float):
                found.add("number")
            elif isinstance(v, str):
                found.add("string")
            elif isinstance(v, list):
                found.add("array")
            else:
                found.add("object")
        return frozenset(found)
    declared = schema.get("type")
    if declared is None:
        return _ALL_TYPES
    names = {declared} if isinstance(declared, str) else set(declared)
    if "number" in names:
        names.add("integer")
    return frozenset(names)


def _fmt_types(types: frozenset[str]) -> str:
    shown = sorted(types - {"integer"} if "number" in types else types)
    return shown[0] if len(shown) == 1 else "[" + ", ".join(shown) + "]"


def _lower(schema: Mapping[str, Any]) -> tuple[float, bool] | None:
    """The effective lower numeric bound as (value, exclusive)."""
    bounds = []
    if isinstance(schema.get("minimum"), int | float):
        bounds.append((schema["minimum"], False))
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        bounds.append((schema["exclusiveMinimum"], True))
    return max(bounds) if bounds else None  # (v, True) > (v, False): exclusive is tighter


def _upper(schema: Mapping[str, Any]) -> tuple[float, bool] | None:
    bounds = []
    if isinstance(schema.get("maximum"), int | float):
        bounds.append((schema["maximum"], False))
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        bounds.append((schema["exclusiveMaximum"], True))
    return min(bounds, key=lambda b: (b[0], not b[1])) if bounds else None


def _fmt_bound(bound: tuple[float, bool] | None, lower: bool) -> str:
    if bound is None:
        return "none"
    op = (">" if lower else "<") + ("" if bound[1] else "=")
    return f"{op} {bound[0]}"


def _or_none(value: Any) -> str:
    return "none" if value is None else str(value)


class _Subset:
    """Checks that every instance valid under *writer* is valid under *reader*.

    Messages describe the change from the old schema to the new one, whichever side is
    the reader: for BACKWARD the reader is the new schema, for FORWARD the old one.
    """

    def __init__(self, writer_root: Any, reader_root: Any, *, reader_is_new: bool) -> None:
        self.writer_root = writer_root
        self.reader_root = reader_root
        self.reader_is_new = reader_is_new
        self.problems: list[str] = []
        self._seen: set[tuple[int, int]] = set()

    # -- helpers ------------------------------------------------------------------------

    def old_new(self, writer_value: Any, reader_value: Any) -> tuple[Any, Any]:
        return (writer_value, reader_value) if self.reader_is_new else (reader_value, writer_value)

    def say(self, path: str, message: str) -> None:
        self.problems.append(f"{path} {message}")

    def resolve(self, schema: Any, root: Any) -> Any:
        """Follow local ``$ref``s (``#/...``), merging sibling keywords."""
        for _ in range(32):
            if not isinstance(schema, Mapping) or not isinstance(schema.get("$ref"), str):
                return schema
            ref: str = schema["$ref"]
            target: Any = root
            for part in ref.removeprefix("#").strip("/").split("/") if ref != "#" else []:
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part) if isinstance(target, Mapping) else None
            if target is None:
                return {k: v for k, v in schema.items() if k != "$ref"}
            merged = dict(target) if isinstance(target, Mapping) else {"not": {}}
            merged.update({k: v for k, v in schema.items() if k != "$ref"})
            schema = merged
        return schema

    # -- the walk -----------------------------------------------------------------------

    def check(self, writer: Any, reader: Any, path: str) -> None:
        writer = self.resolve(writer, self.writer_root)
        reader = self.resolve(reader, self.reader_root)
        key = (id(writer), id(reader))
        if key in self._seen:  # recursive schemas: each pair is compared once
            return
        self._seen.add(key)
        if writer is False or reader is True or reader == {}:
            return
        if reader is False:
            old, new = self.old_new(writer, reader)
            self.say(path, f"changed from accepting values to rejecting them ({old} -> {new})")
            return
        if writer is True:
            writer = {}
        if not isinstance(writer, Mapping) or not isinstance(reader, Mapping):
            return  # malformed; meta-validation reports it
        wtypes, rtypes = _types(writer), _types(reader)
        if not wtypes <= rtypes:
            old, new = self.old_new(wtypes, rtypes)
            self.say(path, f"type changed from {_fmt_types(old)} to {_fmt_types(new)}")
            return
        self.check_enum(writer, reader, path)
        self.check_opaque(writer, reader, path)
        if wtypes & {"number", "integer"}:
            self.check_numbers(writer, reader, path)
        if "string" in wtypes:
            for keyword in ("pattern", "format"):
                if keyword in reader and writer.get(keyword) != reader[keyword]:
                    old, new = self.old_new(writer.get(keyword), reader[keyword])
                    self.say(path, f"{keyword} changed from {old!r} to {new!r}")
        self.check_sizes(writer, reader, path)
        if "object" in wtypes:
            self.check_object(writer, reader, path)
        if "array" in wtypes:
            self.check_array(writer, reader, path)

    def check_enum(self, writer: Mapping[str, Any], reader: Mapping[str, Any], path: str) -> None:
        if "enum" not in reader and "const" not in reader:
            return
        allowed = {_canon(v) for v in ([reader["const"]] if "const" in reader else reader["enum"])}
        if "enum" not in writer and "const" not in writer:
            if self.reader_is_new:
                self.say(path, "became restricted to an enum of values")
            else:
                self.say(path, "is no longer restricted to an enum of values")
            return
        written = [writer["const"]] if "const" in writer else list(writer["enum"])
        extra = [v for v in written if _canon(v) not in allowed]
        if extra:
            verb = "lost the enum values" if self.reader_is_new else "gained the enum values"
            self.say(path, f"{verb} {extra!r}")

    def check_opaque(self, writer: Mapping[str, Any], reader: Mapping[str, Any], path: str) -> None:
        for keyword in _OPAQUE:
            if keyword in reader and _canon(reader[keyword]) != _canon(writer.get(keyword)):
                self.say(
                    path,
                    f"changed '{keyword}', which the compatibility check cannot compare "
                    "structurally (keep it unchanged, or use compatibility NONE)",
                )

    def check_numbers(
        self, writer: Mapping[str, Any], reader: Mapping[str, Any], path: str
    ) -> None:
        rlo, wlo = _lower(reader), _lower(writer)
        if rlo is not None and (wlo is None or wlo < rlo):
            old, new = self.old_new(wlo, rlo)
            self.say(
                path,
                f"lower bound changed from {_fmt_bound(old, True)} to {_fmt_bound(new, True)}",
            )
        rhi, whi = _upper(reader), _upper(writer)
        if rhi is not None and (
            whi is None or whi[0] > rhi[0] or (whi[0] == rhi[0] and rhi[1] and not whi[1])
        ):
            old, new = self.old_new(whi, rhi)
            self.say(
                path,
                f"upper bound changed from {_fmt_bound(old, False)} to {_fmt_bound(new, False)}",
            )
        rmul, wmul = reader.get("multipleOf"), writer.get("multipleOf")
        if isinstance(rmul, int | float) and rmul:
            ratio = (wmul / rmul) if isinstance(wmul, int | float) else None
            if ratio is None or abs(ratio - round(ratio)) > 1e-9:
                old, new = self.old_new(wmul, rmul)
                self.say(path, f"multipleOf changed from {_or_none(old)} to {_or_none(new)}")

    def check_sizes(self, writer: Mapping[str, Any], reader: Mapping[str, Any], path: str) -> None:
        for keyword, lower in _SIZE_BOUNDS:
            if keyword not in reader:
                continue
            r, w = reader[keyword], writer.get(keyword)
            tighter = w is None or (w < r if lower else w > r)
            if tighter:
                old, new = self.old_new(w, r)
                self.say(path, f"{keyword} changed from {_or_none(old)} to {_or_none(new)}")

    def check_object(self, writer: Mapping[str, Any], reader: Mapping[str, Any], path: str) -> None:
        wreq, rreq = set(writer.get("required", ())), set(reader.get("required", ()))
        for name in sorted(rreq - wreq):
            self.say(
                f"{path}.{name}",
                "became required" if self.reader_is_new else "is no longer required",
            )
        wprops: Mapping[str, Any] = writer.get("properties", {})
        rprops: Mapping[str, Any] = reader.get("properties", {})
        wextra = writer.get("additionalProperties", True)
        rextra = reader.get("additionalProperties", True)
        for name, rsub in rprops.items():
            if name in wprops:
                self.check(wprops[name], rsub, f"{path}.{name}")
            elif isinstance(wextra, Mapping):
                # the writer lets the field through as an additional property of this shape
                self.check(wextra, rsub, f"{path}.{name}")
        for name, wsub in wprops.items():
            if name in rprops:
                continue
            if rextra is False and wsub is not False:
                if self.reader_is_new:
                    self.say(
                        f"{path}.{name}",
                        "was removed while additionalProperties is false, so data that has it is rejected",
                    )
                else:
                    self.say(
                        f"{path}.{name}",
                        "was added but the old schema forbids additional properties",
                    )
            elif isinstance(rextra, Mapping):
                self.check(wsub, rextra, f"{path}.{name}")
        if rextra is not True and wextra is not False:
            if rextra is False:
                self.say(
                    f"{path}.*",
                    "additional properties became forbidden (additionalProperties: false)"
                    if self.reader_is_new
                    else "additional properties became allowed but the old schema forbids them",
                )
            else:
                self.check({} if wextra is True else wextra, rextra, f"{path}.*")

    def check_array(self, writer: Mapping[str, Any], reader: Mapping[str, Any], path: str) -> None:
        if "items" in reader:
            self.check(writer.get("items", True), reader["items"], f"{path}[]")
        if reader.get("uniqueItems") is True and writer.get("uniqueItems") is not True:
            self.say(
                path,
                "became uniqueItems" if self.reader_is_new else "is no longer uniqueItems",
            )


def _subset(writer: Any, reader: Any, *, reader_is_new: bool, root: str) -> list[str]:
    walker = _Subset(writer, reader, reader_is_new=reader_is_new)
    walker.check(writer, reader, root)
    return walker.problems


def compatibility_problems(
    old: Mapping[str, Any] | bool,
    new: Mapping[str, Any] | bool,
    mode: Compatibility | str,
    *,
    root: str = "properties",
) -> list[str]:
    """Why *new* breaks *mode* against *old* (empty when compatible).

    Paths start at *root* (the event's ``properties`` field, whose shape the schemas
    describe); ``[]`` stands for array items and ``*`` for additional properties.
    """
    mode = Compatibility.parse(mode)
    problems: list[str] = []
    if mode.backward:
        problems += _subset(old, new, reader_is_new=True, root=root)
    if mode.forward:
        problems += [
            p for p in _subset(new, old, reader_is_new=False, root=root) if p not in problems
        ]
    return problems


def check_compatibility(
    previous: Sequence[tuple[int, Mapping[str, Any]]],
    new: Mapping[str, Any],
    mode: Compatibility | str,
) -> None:
    """Raise IncompatibleSchemaError if *new* breaks *mode*.

    *previous* holds ``(version, schema)`` pairs, oldest first; a transitive mode checks
    every one of them, the others only the last.

    >>> check_compatibility([(1, {"type": "object"})], {"type": "object", "required": ["a"]},
    ...                     "BACKWARD")
    Traceback (most recent call last):
    ...
    fluvial.errors.IncompatibleSchemaError: incompatible with BACKWARD: properties.a became required
    """
    mode = Compatibility.parse(mode)
    if mode is Compatibility.NONE or not previous:
        return
    against = previous if mode.transitive else previous[-1:]
    for version, old in reversed(against):
        problems = compatibility_problems(old, new, mode)
        if problems:
            where = f" (against version {version})" if mode.transitive else ""
            first = problems[0].split(" ", 1)[0]
            raise IncompatibleSchemaError(
                f"incompatible with {mode.value}{where}: " + "; ".join(problems),
                field=first,
            )
