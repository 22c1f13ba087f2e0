"""``fluvial principals`` and ``fluvial roles``: users, service accounts, API keys, roles."""

from __future__ import annotations

from pathlib import Path

import typer

from fluvial.cli._common import JsonOpt, ProjectOpt, console, open_project, print_json, print_rows
from fluvial.cli._govern import acting, require_admin
from fluvial.govern.model import Principal
from fluvial.govern.principals import PrincipalStore, open_principals

__all__ = ["app", "roles_app"]

app = typer.Typer(
    help="Principals: users and service accounts, each with API keys.", no_args_is_help=True
)
roles_app = typer.Typer(help="Roles: named sets of principals and roles.", no_args_is_help=True)


def _admin_store(project_dir: Path, action: str) -> tuple[PrincipalStore, str]:
    project = open_project(project_dir)
    store = open_principals(project)
    actor = acting(project, store)
    require_admin(actor, action, store.audit)
    return store, actor.name


def _row(p: Principal) -> dict[str, object]:
    return {
        "name": p.name,
        "kind": p.kind,
        "roles": sorted(p.roles),
        "admin": p.admin,
        "disabled": p.disabled,
    }


def _show_key(name: str, secret: str, as_json: bool, **extra: object) -> None:
    if as_json:
        print_json({"name": name, "key": secret, **extra})
        return
    console.print(f"API key for [bold]{name}[/]; store it now, it will not be shown again:")
    print(secret)  # plain: the secret must be copyable, not wrapped or styled


@app.command("create")
def create(
    name: str = typer.Argument(..., help="The principal's name (e.g. alice, etl-service)."),
    kind: str = typer.Option("user", "--kind", help="user or service."),
    role: list[str] = typer.Option([], "--role", "-r", help="A role to grant (repeatable)."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Create a principal and print its API key once: only its hash is kept."""
    store, by = _admin_store(project_dir, "creating a principal")
    principal, secret = store.create(name, kind, role, by=by)
    _show_key(
        principal.name, secret, as_json, **{k: v for k, v in _row(principal).items() if k != "name"}
    )


@app.command("list")
def list_(project_dir: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List principals with their roles (transitive), admin flag and state."""
    rows = [_row(p) for p in open_principals(open_project(project_dir)).list()]
    if not as_json:
        rows = [{**r, "roles": ", ".join(r["roles"])} for r in rows]  # type: ignore[arg-type]
    print_rows(
        rows, ["name", "kind", "roles", "admin", "disabled"], as_json=as_json, title="principals"
    )


@app.command("disable")
def disable(
    name: str = typer.Argument(..., help="The principal to disable."),
    enable: bool = typer.Option(False, "--enable", help="Enable it again instead."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Disable a principal: its keys stop working at once."""
    store, by = _admin_store(project_dir, "disabling a principal")
    principal = store.enable(name, by=by) if enable else store.disable(name, by=by)
    if as_json:
        print_json(_row(principal))
        return
    console.print(f"{'enabled' if enable else 'disabled'} principal [bold]{principal.name}[/]")


@app.command("key")
def key(
    name: str = typer.Argument(..., help="The principal that gets a new key."),
    keep_old: bool = typer.Option(
        False, "--keep-old", help="Keep its older keys working (default: revoke them)."
    ),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Issue a new API key for a principal (revoking its older keys unless --keep-old)."""
    store, by = _admin_store(project_dir, "issuing an API key")
    secret = store.new_key(name, keep_old=keep_old, by=by)
    _show_key(name, secret, as_json, kept_old=keep_old)


@app.command("keys")
def keys(
    name: str = typer.Argument(..., help="The principal whose keys to list."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """List a principal's keys (id, prefix, created, revoked); never the secrets."""
    rows = open_principals(open_project(project_dir)).keys(name)
    print_rows(
        rows,
        ["key_id", "prefix", "created_at", "revoked_at"],
        as_json=as_json,
        title=f"keys of {name}",
    )


@roles_app.command("create")
def create_role(
    name: str = typer.Argument(..., help="The role's name (e.g. analyst)."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Create an empty role."""
    store, by = _admin_store(project_dir, "creating a role")
    store.create_role(name, by=by)
    if as_json:
        print_json({"name": name, "members": []})
        return
    console.print(f"created role [bold]{name}[/]")


@roles_app.command("grant-role")
def grant_role(
    role: str = typer.Argument(..., help="The role to grant."),
    to: str = typer.Argument(..., help="The principal or role that gets it."),
    revoke: bool = typer.Option(False, "--revoke", help="Take the role away instead."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Make a principal or a role a member of ROLE (roles can contain roles)."""
    store, by = _admin_store(project_dir, "granting a role")
    if revoke:
        store.revoke_role(role, from_=to, by=by)
    else:
        store.grant_role(role, to=to, by=by)
    if as_json:
        print_json({"role": role, "member": to, "granted": not revoke})
        return
    console.print(
        f"{'revoked' if revoke else 'granted'} role [bold]{role}[/] {'from' if revoke else 'to'} [bold]{to}[/]"
    )


@roles_app.command("list")
def list_roles(project_dir: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List roles with their direct members."""
    roles = open_principals(open_project(project_dir)).roles()
    rows = [{"name": r.name, "members": list(r.members), "builtin": r.builtin} for r in roles]
    if not as_json:
        rows = [{**r, "members": ", ".join(r["members"])} for r in rows]  # type: ignore[arg-type]
    print_rows(rows, ["name", "members", "builtin"], as_json=as_json, title="roles")
