"""The models' dependency graph: topological order, cycles, and selection.

Selection follows dbt's syntax: ``MODEL`` (``refined.clicks`` or just ``clicks`` when the
name is unique), ``MODEL+`` (with its descendants), ``+MODEL`` (with its ancestors),
``+MODEL+`` (both), ``tag:NAME``; several selectors (space- or comma-separated) unite.

>>> dag = Dag({"refined.a": [], "curated.b": ["refined.a"], "marts.c": ["curated.b"]})
>>> dag.order()
['refined.a', 'curated.b', 'marts.c']
>>> dag.select("b+")
['curated.b', 'marts.c']
>>> dag.select("+b")
['refined.a', 'curated.b']
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping

from fluvial.errors import ConfigError, NotFoundError, UsageError, did_you_mean

__all__ = ["Dag"]


class Dag:
    """Models and the models they read (edges to non-model tables are ignored)."""

    def __init__(
        self,
        depends_on: Mapping[str, Iterable[str]],
        tags: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.nodes = sorted(depends_on)
        known = set(self.nodes)
        self.parents = {n: sorted(set(depends_on[n]) & known) for n in self.nodes}
        self.children: dict[str, list[str]] = {n: [] for n in self.nodes}
        for node, parents in self.parents.items():
            for parent in parents:
                self.children[parent].append(node)
        self.tags = {n: set((tags or {}).get(n, ())) for n in self.nodes}
        self._order = self._sort()

    def _sort(self) -> list[str]:
        sorter = graphlib.TopologicalSorter(self.parents)
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            path = " -> ".join(exc.args[1])  # [a, b, ..., a]: each is read by the next
            raise ConfigError(
                f"models read each other in a cycle: {path} (each is read by the next)"
            ) from None
        order: list[str] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready())  # sorted: a stable order run after run
            order += ready
            sorter.done(*ready)
        return order

    def order(self) -> list[str]:
        """Every model, each after the models it reads."""
        return list(self._order)

    def ancestors(self, node: str) -> set[str]:
        """The models *node* reads, directly or not."""
        return self._walk(node, self.parents)

    def descendants(self, node: str) -> set[str]:
        """The models that read *node*, directly or not."""
        return self._walk(node, self.children)

    @staticmethod
    def _walk(node: str, edges: Mapping[str, list[str]]) -> set[str]:
        seen: set[str] = set()
        todo = list(edges[node])
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo += edges[n]
        return seen

    def resolve(self, name: str) -> str:
        """``refined.clicks`` or a unique ``clicks`` -> ``refined.clicks``.

        Raises:
            NotFoundError: no such model (with a suggestion).
            UsageError: a short name that several zones have.
        """
        if name in self.parents:
            return name
        matches = [n for n in self.nodes if n.partition(".")[2] == name]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise UsageError(f"'{name}' is ambiguous: {', '.join(matches)}; name the zone")
        raise NotFoundError(f"no model named '{name}'{did_you_mean(name, self.nodes)}")

    def select(self, selection: str | Iterable[str] | None = None) -> list[str]:
        """The selected models in topological order (every model when *selection* is empty).

        Raises:
            NotFoundError, UsageError: see :meth:`resolve`.
        """
        if selection is None:
            return self.order()
        words = selection.replace(",", " ").split() if isinstance(selection, str) else selection
        chosen: set[str] = set()
        for word in (w.strip() for w in words):
            if not word:
                continue
            if word.startswith("tag:"):
                tag = word[4:]
                hits = {n for n in self.nodes if tag in self.tags[n]}
                if not hits:
                    all_tags = sorted(set().union(*self.tags.values()))
                    raise NotFoundError(f"no model has tag '{tag}'{did_you_mean(tag, all_tags)}")
                chosen |= hits
                continue
            up, down = word.startswith("+"), word.endswith("+")
            node = self.resolve(word.strip("+"))
            chosen.add(node)
            if up:
                chosen |= self.ancestors(node)
            if down:
                chosen |= self.descendants(node)
        if not chosen:
            return self.order()
        return [n for n in self._order if n in chosen]
