"""The project's governance tags and tag grants as Lake Formation LF-Tags.

Fluvial's tag expressions (:mod:`fluvial.govern.tags`) have ``OR``, ``NOT`` and ``!=``;
an LF-Tag expression is one conjunction of "key is one of these values". An expression
whose tests are all positive is rewritten as a disjunction of such conjunctions, one
Lake Formation grant each (``key=*`` lists every value the key has); one with a negation
cannot be said in Lake Formation and is left out (the template gives less, never more),
and named in :attr:`TagMirror.skipped`. As for grants (:func:`~fluvial.aws.grants.narrow`),
a tag grant whose ``SELECT`` could reach a table that a data filter or a mask narrows
for its grantee is refused.

>>> from fluvial.govern.tags import TagExpression
>>> conjunctions(TagExpression.parse("domain=sales AND tier IN (gold, silver) OR pii=*"),
...              {"pii": {"email", "phone"}})
[(('domain', ('sales',)), ('tier', ('gold', 'silver'))), (('pii', ('email', 'phone')),)]
>>> conjunctions(TagExpression.parse("domain=sales AND pii!=*"), {}) is None
True
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fluvial.errors import UsageError

if TYPE_CHECKING:
    from fluvial.govern.policy import ColumnMask, RowFilter, Tag, TagGrant
    from fluvial.govern.tags import TagExpression
    from fluvial.project import Project

__all__ = ["TagMirror", "TagPolicy", "conjunctions", "mirror_tags", "project_tags"]

Conjunction = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class TagPolicy:
    """*principal* holds *privileges* on every table whose LF-Tags match *expression*
    (each key among its values)."""

    principal: str
    expression: Conjunction
    privileges: tuple[str, ...]
    grantable: tuple[str, ...] = ()


@dataclass(frozen=True)
class TagMirror:
    """The LF-Tags (key -> values), their associations (object, key, value) and the
    tag-based grants; the tag expressions that cannot be mirrored."""

    tags: dict[str, tuple[str, ...]]
    associations: tuple[tuple[str, str, str], ...]
    policies: tuple[TagPolicy, ...]
    skipped: tuple[str, ...] = ()


def conjunctions(expr: TagExpression, values: Mapping[str, set[str]]) -> list[Conjunction] | None:
    """*expr* as a disjunction of conjunctions of positive tests, or None when it negates;
    ``key=*`` becomes every value of *values* for the key (none known: no conjunction)."""
    from fluvial.govern.tags import _Junction, _Not, _Test

    def walk(node: object) -> list[dict[str, frozenset[str]]] | None:
        if isinstance(node, _Not) or (isinstance(node, _Test) and node.negated):
            return None
        if isinstance(node, _Test):
            allowed = (
                node.values if node.values is not None else frozenset(values.get(node.key, ()))
            )
            return [{node.key: frozenset(allowed)}] if allowed else []
        assert isinstance(node, _Junction)
        parts = [walk(p) for p in node.parts]
        if any(p is None for p in parts):
            return None
        if node.op == "OR":
            return [c for p in parts for c in p or ()]
        out = []
        for combo in itertools.product(*[p or () for p in parts]):
            merged: dict[str, frozenset[str]] = {}
            for c in combo:
                for key, vals in c.items():
                    merged[key] = merged[key] & vals if key in merged else vals
            if all(merged.values()):
                out.append(merged)
        return out

    found = walk(expr.root)
    if found is None:
        return None
    return [tuple((k, tuple(sorted(c[k]))) for k in sorted(c)) for c in found]


def _literals(expr: TagExpression) -> list[tuple[str, str]]:
    """Every (key, value) an expression names."""
    from fluvial.govern.tags import _Not, _Test

    found: list[tuple[str, str]] = []
    todo: list[object] = [expr.root]
    while todo:
        node = todo.pop()
        if isinstance(node, _Test):
            found += [(node.key, v) for v in node.values or ()]
        elif isinstance(node, _Not):
            todo.append(node.inner)
        else:
            todo += list(getattr(node, "parts", ()))
    return found


def _effective(tags: Iterable[Tag]) -> dict[str, dict[str, str]]:
    """Each tagged object's effective tags: its namespace's, then its table's, then its own."""
    own: dict[str, dict[str, str]] = {}
    for t in tags:
        own.setdefault(t.object, {})[t.key] = t.value
    out = {}
    for obj in own:
        parts = obj.split(".", 2)
        merged: dict[str, str] = {}
        for i in range(1, len(parts) + 1):
            merged.update(own.get(".".join(parts[:i]), {}))
        out[obj] = merged
    return out


def mirror_tags(
    tags: Iterable[Tag],
    tag_grants: Iterable[TagGrant],
    filters: Iterable[RowFilter] = (),
    masks: Iterable[ColumnMask] = (),
) -> TagMirror:
    """The LF-Tags mirroring *tags* and *tag_grants*.

    Raises:
        UsageError: a tag grant's ``SELECT`` could reach a table a filter or mask narrows.
    """
    from fluvial.govern.tags import TagExpression

    tags = list(tags)
    values: dict[str, set[str]] = {}
    for t in tags:
        values.setdefault(t.key, set()).add(t.value)
    effective = _effective(tags)
    narrowed = {(f.grantee, f.table) for f in filters} | {(m.grantee, m.table) for m in masks}
    grouped: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    for g in tag_grants:
        privileges, grantable = grouped.setdefault((g.grantee, g.expression), (set(), set()))
        privileges.add(g.privilege)
        if g.grant_option:
            grantable.add(g.privilege)
    parsed = {text: TagExpression.parse(text) for _, text in grouped}
    for expr in parsed.values():  # an LF-Tag's values: those on objects and in expressions
        for key, literal in _literals(expr):
            values.setdefault(key, set()).add(literal)
    policies: list[TagPolicy] = []
    skipped: list[str] = []
    for (who, text), (privileges, grantable) in sorted(grouped.items()):
        expr = parsed[text]
        dnf = conjunctions(expr, values)
        if dnf is None:
            skipped.append(f"{text} (to {who})")
            continue
        if "SELECT" in privileges:
            for grantee, table in sorted(narrowed):
                objects = [o for o in effective if o == table or o.startswith(table + ".")]
                objects += [o for o in effective if "." not in o and table.startswith(o + ".")]
                if grantee == who and any(expr.matches(effective[o]) for o in objects):
                    raise UsageError(
                        f"{who}'s tag grant on {text} reaches {table}, which a data filter or "
                        f"mask narrows for {who}; Lake Formation cannot narrow a tag grant: "
                        f"grant {who} that table by name"
                    )
        for conj in dnf:
            policies.append(
                TagPolicy(who, conj, tuple(sorted(privileges)), tuple(sorted(grantable)))
            )
    return TagMirror(
        tags={k: tuple(sorted(v)) for k, v in sorted(values.items())},
        associations=tuple(sorted((t.object, t.key, t.value) for t in tags)),
        policies=tuple(policies),
        skipped=tuple(skipped),
    )


def project_tags(project: Project) -> TagMirror:
    """The LF-Tags of *project*'s access policies (none without a governance database)."""
    from fluvial.govern.policy import open_policy

    if not (project.root / project.settings.project.data_dir / "govern" / "policy.db").exists():
        return TagMirror({}, (), ())
    policy = open_policy(project)
    return mirror_tags(policy.tags(), policy.tag_grants(), policy.filters(), policy.masks())
