"""The lineage graph: datasets, the jobs between them and column edges, from run events.

Each job's lineage is what its latest event carrying datasets says (a job whose SQL changed
shows its new inputs); a dataset's columns come from the latest ``schema`` facet seen for it.
Traversals return plain nested dicts, ready for ``--json``.

>>> from fluvial.lineage.events import run_event
>>> events = [
...     run_event("COMPLETE", "refined.orders", "01890a5d-ac96-774b-bcce-b302099a8057",
...               ["raw.orders"], ["refined.orders"], sql="SELECT id, amount FROM raw.orders"),
...     run_event("COMPLETE", "curated.revenue", "01890a5d-ac96-774b-bcce-b302099a8058",
...               ["refined.orders"], ["curated.revenue"],
...               sql="SELECT sum(amount) AS revenue FROM refined.orders"),
... ]
>>> graph = build_graph(events)
>>> graph.upstream_names("curated.revenue")
['refined.orders', 'raw.orders']
>>> graph.downstream_names("raw.orders")
['refined.orders', 'curated.revenue']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluvial.errors import NotFoundError, did_you_mean
from fluvial.lineage.events import RunEvent
from fluvial.lineage.transport import events_path, read_events

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = ["ColumnEdge", "DatasetRef", "JobNode", "LineageGraph", "build_graph", "load_graph"]


@dataclass(frozen=True, order=True)
class DatasetRef:
    """A dataset: its OpenLineage namespace and name."""

    namespace: str
    name: str


@dataclass(frozen=True)
class JobNode:
    """A job as its latest event describes it."""

    namespace: str
    name: str
    inputs: tuple[DatasetRef, ...]
    outputs: tuple[DatasetRef, ...]
    state: str
    time: str
    run_id: str
    sql: str | None = None


@dataclass(frozen=True)
class ColumnEdge:
    """``source.source_field`` flows into ``target.target_field`` through ``job``."""

    source: DatasetRef
    source_field: str
    target: DatasetRef
    target_field: str
    transformations: tuple[str, ...]  # "DIRECT/IDENTITY", "INDIRECT/CONDITIONAL", …
    job: str


@dataclass
class LineageGraph:
    """Datasets, jobs and column edges; traversals up- and downstream."""

    jobs: dict[tuple[str, str], JobNode] = field(default_factory=dict)
    edges: list[ColumnEdge] = field(default_factory=list)
    schemas: dict[DatasetRef, list[dict[str, Any]]] = field(default_factory=dict)

    # ------------------------------------------------------------------ lookup
    @property
    def home(self) -> str:
        """The namespace most jobs live in (its datasets are shown by name alone)."""
        counts = Counter(ns for ns, _ in self.jobs)
        return counts.most_common(1)[0][0] if counts else ""

    @property
    def datasets(self) -> set[DatasetRef]:
        found: set[DatasetRef] = set(self.schemas)
        for job in self.jobs.values():
            found.update(job.inputs, job.outputs)
        return found

    def label(self, ref: DatasetRef) -> str:
        """How a dataset is shown: its name, with its namespace when not the home one."""
        return ref.name if ref.namespace == self.home else f"{ref.name} ({ref.namespace})"

    def find(self, name: str) -> DatasetRef:
        """The dataset called *name* (``name`` or ``namespace:name``).

        Raises:
            NotFoundError: no recorded event mentions it (says "did you mean …?").
        """
        refs = self.datasets
        exact = [r for r in refs if r.name == name or f"{r.namespace}:{r.name}" == name]
        if not exact:
            exact = [r for r in refs if r.name.lower() == name.lower()]
        if exact:
            return sorted(exact, key=lambda r: (r.namespace != self.home, r))[0]
        known = sorted({r.name for r in refs})
        raise NotFoundError(
            f"no lineage recorded for dataset '{name}'{did_you_mean(name, known)}"
            + ("" if known else " (no run events yet)")
        )

    def producers(self, ref: DatasetRef) -> list[JobNode]:
        return sorted((j for j in self.jobs.values() if ref in j.outputs), key=_job_key)

    def consumers(self, ref: DatasetRef) -> list[JobNode]:
        return sorted((j for j in self.jobs.values() if ref in j.inputs), key=_job_key)

    def columns(self, ref: DatasetRef) -> list[str]:
        """The dataset's columns: its schema facet's, else those the column edges name."""
        if ref in self.schemas:
            return [f["name"] for f in self.schemas[ref]]
        names = [e.target_field for e in self.edges if e.target == ref]
        names += [e.source_field for e in self.edges if e.source == ref]
        return list(dict.fromkeys(names))

    # ------------------------------------------------------------------ datasets
    def upstream(self, name: str, depth: int | None = None) -> dict[str, Any]:
        """The tree of what *name* is built from: each node's ``upstream`` are its inputs."""
        return self._dataset_tree(self.find(name), "upstream", depth, None, ())

    def downstream(self, name: str, depth: int | None = None) -> dict[str, Any]:
        """The tree of what is built from *name*: each node's ``downstream``."""
        return self._dataset_tree(self.find(name), "downstream", depth, None, ())

    def upstream_names(self, name: str) -> list[str]:
        """Every dataset upstream of *name*, nearest first (breadth first, no repeats)."""
        return _flatten(self.upstream(name), "upstream")

    def downstream_names(self, name: str) -> list[str]:
        """Every dataset downstream of *name*, nearest first."""
        return _flatten(self.downstream(name), "downstream")

    def _dataset_tree(
        self,
        ref: DatasetRef,
        direction: str,
        depth: int | None,
        via: JobNode | None,
        path: tuple[DatasetRef, ...],
    ) -> dict[str, Any]:
        node: dict[str, Any] = {"dataset": self.label(ref), "namespace": ref.namespace}
        node["name"] = ref.name
        if via is not None:
            node["job"] = via.name
            node["state"] = via.state
            node["time"] = via.time
        if ref in path:
            node["cycle"] = True
            return node
        children: list[dict[str, Any]] = []
        if depth is None or depth > 0:
            more = None if depth is None else depth - 1
            jobs = self.producers(ref) if direction == "upstream" else self.consumers(ref)
            for job in jobs:
                nexts = job.inputs if direction == "upstream" else job.outputs
                for nxt in nexts:
                    children.append(self._dataset_tree(nxt, direction, more, job, (*path, ref)))
        node[direction] = children
        return node

    # ------------------------------------------------------------------ columns
    def column_upstream(self, name: str, depth: int | None = None) -> dict[str, Any]:
        """Per column of *name*, the tree of input columns it is computed from."""
        return self._column_root(self.find(name), "upstream", depth)

    def column_downstream(self, name: str, depth: int | None = None) -> dict[str, Any]:
        """Per column of *name*, the tree of output columns computed from it."""
        return self._column_root(self.find(name), "downstream", depth)

    def _column_root(self, ref: DatasetRef, direction: str, depth: int | None) -> dict[str, Any]:
        return {
            "dataset": self.label(ref),
            "namespace": ref.namespace,
            "name": ref.name,
            "columns": [
                {"field": col, direction: self._column_children(ref, col, direction, depth, ())}
                for col in self.columns(ref)
            ],
        }

    def _column_children(
        self,
        ref: DatasetRef,
        col: str,
        direction: str,
        depth: int | None,
        path: tuple[tuple[DatasetRef, str], ...],
    ) -> list[dict[str, Any]]:
        if depth is not None and depth <= 0:
            return []
        here = (ref, col)
        if here in path:
            return []
        more = None if depth is None else depth - 1
        out = []
        for e in self.edges:
            if direction == "upstream" and (e.target, e.target_field) == here:
                nxt = (e.source, e.source_field)
            elif direction == "downstream" and (e.source, e.source_field) == here:
                nxt = (e.target, e.target_field)
            else:
                continue
            out.append(
                {
                    "dataset": self.label(nxt[0]),
                    "namespace": nxt[0].namespace,
                    "name": nxt[0].name,
                    "field": nxt[1],
                    "transformations": list(e.transformations),
                    "job": e.job,
                    direction: self._column_children(
                        nxt[0], nxt[1], direction, more, (*path, here)
                    ),
                }
            )
        return out


def _job_key(job: JobNode) -> tuple[str, str]:
    return (job.namespace, job.name)


def _flatten(tree: dict[str, Any], direction: str) -> list[str]:
    seen: dict[str, None] = {}
    level = tree.get(direction, [])
    while level:
        nxt = []
        for node in level:
            seen.setdefault(node["dataset"], None)
            nxt.extend(node.get(direction, []))
        level = nxt
    return [n for n in seen if n != tree["dataset"]]


def _ref(item: dict[str, Any]) -> DatasetRef:
    return DatasetRef(str(item["namespace"]), str(item["name"]))


def build_graph(events: Iterable[RunEvent]) -> LineageGraph:
    """The graph the run *events* describe (later events win)."""
    graph = LineageGraph()
    latest: dict[tuple[str, str], tuple[str, int, RunEvent]] = {}
    for order, event in enumerate(events):
        datasets = [*event.get("inputs", []), *event.get("outputs", [])]
        for item in datasets:
            schema = (item.get("facets") or {}).get("schema")
            if schema and isinstance(schema.get("fields"), list):
                graph.schemas[_ref(item)] = schema["fields"]
        if not datasets:
            continue
        key = (str(event["job"]["namespace"]), str(event["job"]["name"]))
        stamp = (str(event.get("eventTime", "")), order)
        if key not in latest or stamp >= latest[key][:2]:
            latest[key] = (*stamp, event)
    for key, (_, _, event) in sorted(latest.items()):
        sql = (event["job"].get("facets") or {}).get("sql") or {}
        job = JobNode(
            namespace=key[0],
            name=key[1],
            inputs=tuple(dict.fromkeys(_ref(i) for i in event.get("inputs", []))),
            outputs=tuple(dict.fromkeys(_ref(o) for o in event.get("outputs", []))),
            state=str(event.get("eventType", "")),
            time=str(event.get("eventTime", "")),
            run_id=str(event["run"]["runId"]),
            sql=sql.get("query"),
        )
        graph.jobs[key] = job
        for out in event.get("outputs", []):
            lineage = (out.get("facets") or {}).get("columnLineage") or {}
            for target_field, spec in (lineage.get("fields") or {}).items():
                for f in spec.get("inputFields", []):
                    graph.edges.append(
                        ColumnEdge(
                            source=_ref(f),
                            source_field=str(f["field"]),
                            target=_ref(out),
                            target_field=target_field,
                            transformations=tuple(
                                f"{t.get('type', '')}/{t.get('subtype', '')}"
                                for t in f.get("transformations", [])
                            ),
                            job=job.name,
                        )
                    )
    return graph


def load_graph(project: Project | Path | str) -> LineageGraph:
    """The graph of a project's recorded events (the file transport's file), or of a file."""
    if isinstance(project, Path | str):
        return build_graph(read_events(project))
    return build_graph(read_events(events_path(project)))
