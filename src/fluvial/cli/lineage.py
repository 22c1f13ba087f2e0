"""``fluvial lineage TABLE``: where a table comes from and where it goes, down to columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.tree import Tree

from fluvial.cli._common import JsonOpt, ProjectOpt, console, open_project, print_json
from fluvial.errors import UsageError
from fluvial.lineage import load_graph

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the top-level ``lineage`` command to *app*."""
    app.command("lineage")(lineage)


def lineage(
    table: str = typer.Argument(
        ..., metavar="TABLE", help="A dataset, e.g. curated.revenue or log.events."
    ),
    upstream: bool = typer.Option(False, "--upstream", help="Only what TABLE is built from."),
    downstream: bool = typer.Option(False, "--downstream", help="Only what is built from TABLE."),
    columns: bool = typer.Option(False, "--columns", help="Trace each column (column lineage)."),
    depth: int | None = typer.Option(
        None, "--depth", min=1, help="Stop this many hops away (default: no limit)."
    ),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show TABLE's lineage from the recorded run events: upstream and downstream datasets
    with the jobs between them, or with --columns each column's inputs and how they are used."""
    if upstream and downstream:
        raise UsageError("--upstream and --downstream exclude each other; give one or neither")
    directions = (
        ["upstream"]
        if upstream
        else ["downstream"]
        if downstream
        else [
            "upstream",
            "downstream",
        ]
    )
    graph = load_graph(open_project(project_dir))
    result: dict[str, Any] = {}
    for direction in directions:
        if columns:
            tree = (
                graph.column_upstream(table, depth)
                if direction == "upstream"
                else graph.column_downstream(table, depth)
            )
        else:
            tree = (
                graph.upstream(table, depth)
                if direction == "upstream"
                else graph.downstream(table, depth)
            )
        result[direction] = tree
    if as_json:
        print_json({"dataset": table, **result})
        return
    for direction, tree in result.items():
        arrow = "⬆" if direction == "upstream" else "⬇"
        root = Tree(f"[bold]{tree['dataset']}[/] [dim]{arrow} {direction}[/]")
        if columns:
            for col in tree["columns"]:
                branch = root.add(f"[cyan]{col['field']}[/]")
                _add_columns(branch, col[direction], direction)
        else:
            _add_datasets(root, tree[direction], direction)
        console.print(root)


def _add_datasets(parent: Tree, nodes: list[dict[str, Any]], direction: str) -> None:
    for node in nodes:
        mark = " [red](cycle)[/]" if node.get("cycle") else ""
        state = node.get("state", "")
        color = "red" if state == "FAIL" else "green" if state == "COMPLETE" else "yellow"
        label = (
            f"[bold]{node['dataset']}[/]{mark} [dim]via[/] {node.get('job', '')} "
            f"[{color}]{state}[/] [dim]{node.get('time', '')}[/]"
        )
        _add_datasets(parent.add(label), node.get(direction, []), direction)


def _add_columns(parent: Tree, nodes: list[dict[str, Any]], direction: str) -> None:
    for node in nodes:
        how = ", ".join(node.get("transformations", [])) or "?"
        label = f"{node['dataset']}.[cyan]{node['field']}[/] [dim]{how} via {node['job']}[/]"
        _add_columns(parent.add(label), node.get(direction, []), direction)
