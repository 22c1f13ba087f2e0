"""``fluvial init DIR``: write a new project."""

from __future__ import annotations

from pathlib import Path

import typer

from fluvial.cli._common import console
from fluvial.govern.principals import open_principals
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
        """Write a project (fluvial.toml, pipelines/, models/, schemas/) and its admin's API key."""
        project = Project.init(directory, exist_ok=force, example=example)
        console.print(f"created project in [bold]{project.root}[/]")
        store = open_principals(project)
        if (made := store.bootstrap()) is not None:
            console.print(
                f"created the admin principal [bold]{made[0].name}[/]; its API key (also in "
                f"{store.key_file}, readable by you only) is shown once:",
                highlight=False,
            )
            print(made[1])  # plain: the secret must be copyable, not wrapped or styled
        if example is not None:
            console.print(
                f"with the [bold]{example}[/] example: see docs/warehouse.md for the next steps"
            )
