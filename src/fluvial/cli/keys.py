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
    origins: list[str] = typer.Option(
        [],
        "--origin",
        help="A browser origin allowed to send with the key (repeatable), e.g. "
        "https://shop.example; without any, browsers (requests with an Origin) are refused.",
    ),
    rate_limit: float | None = typer.Option(
        None, "--rate-limit", help="Events per second the key may send (default: unlimited)."
    ),
    burst: int | None = typer.Option(
        None, "--burst", help="Events the key may send at once (default: one second's worth)."
    ),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Create a write key and print it once: only its hash is kept."""
    key, secret = _store(project_dir).create(
        app_id, origins=origins, rate_limit=rate_limit, burst=burst
    )
    if as_json:
        print_json({**key.public(), "key": secret})
        return
    console.print(f"created write key [bold]{key.key_id}[/] for app_id [bold]{key.app_id}[/]")
    if key.origins:
        console.print(f"allowed origins: {', '.join(key.origins)}", highlight=False)
    if key.rate_limit is not None:
        console.print(f"rate limit: {key.rate_limit:g} events/s, burst {key.burst}")
    console.print("store it now; it will not be shown again:", highlight=False)
    # plain print: the secret must be copyable, not wrapped or styled
    print(secret)


@app.command("list")
def list_(project_dir: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List write keys (id, prefix, app_id, created, revoked); never the secrets."""
    rows = [k.public() for k in _store(project_dir).list_keys()]
    if not as_json:
        rows = [{**r, "origins": " ".join(r["origins"])} for r in rows]  # type: ignore[arg-type]
    print_rows(
        rows,
        [
            "key_id",
            "prefix",
            "app_id",
            "origins",
            "rate_limit",
            "burst",
            "created_at",
            "revoked_at",
        ],
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
