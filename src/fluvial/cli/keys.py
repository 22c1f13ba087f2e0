"""``fluvial keys``: create, list and revoke the write keys trackers send events with."""

from __future__ import annotations

from pathlib import Path

import typer

from fluvial.cli._common import JsonOpt, ProjectOpt, console, open_project, print_json, print_rows
from fluvial.collector.keys import KeyStore

__all__ = ["app"]

app = typer.Typer(
    help="Write keys: each lets a tracker post events for one app_id.", no_args_is_help=True
)


def _store(project_dir: Path) -> KeyStore:
    return KeyStore.for_project(open_project(project_dir))


@app.command("create")
def create(
    app_id: str = typer.Argument(..., help="The app the key's events belong to (e.g. shop)."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Create a write key and print it once: only its hash is kept."""
    key, secret = _store(project_dir).create(app_id)
    if as_json:
        print_json({**key.public(), "key": secret})
        return
    console.print(f"created write key [bold]{key.key_id}[/] for app_id [bold]{key.app_id}[/]")
    console.print("store it now; it will not be shown again:", highlight=False)
    # plain print: the secret must be copyable, not wrapped or styled
    print(secret)


@app.command("list")
def list_(project_dir: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List write keys (id, prefix, app_id, created, revoked); never the secrets."""
    rows = [k.public() for k in _store(project_dir).list_keys()]
    print_rows(
        rows,
        ["key_id", "prefix", "app_id", "created_at", "revoked_at"],
        as_json=as_json,
        title="write keys",
    )


@app.command("revoke")
def revoke(
    key_or_id: str = typer.Argument(..., help="The key itself, or its key_id (see keys list)."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Revoke a write key; a running collector refuses it within about a second."""
    key = _store(project_dir).revoke(key_or_id)
    if as_json:
        print_json(key.public())
        return
    console.print(f"revoked write key [bold]{key.key_id}[/] ({key.prefix}..., app_id {key.app_id})")
