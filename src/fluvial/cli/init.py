"""``fluvial init DIR``: write a new project."""

from __future__ import annotations

from pathlib import Path

import typer

from fluvial.cli._common import console
from fluvial.project import Project


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(
        directory: Path = typer.Argument(
            ..., help="Folder for the new project (created if missing)."
        ),
        force: bool = typer.Option(
            False, "--force", help="Fill in a folder that already has fluvial.toml."
        ),
        example: str | None = typer.Option(
            None,
            "--example",
            help="Copy a packaged example's pipelines, models, quality rules and schemas "
            "into the project (e.g. clickstream).",
        ),
    ) -> None:
        """Write a project: fluvial.toml (every setting, commented), pipelines/, models/, schemas/."""
        project = Project.init(directory, exist_ok=force, example=example)
        console.print(f"created project in [bold]{project.root}[/]")
        if example is not None:
            console.print(
                f"with the [bold]{example}[/] example: see docs/warehouse.md for the next steps"
            )
