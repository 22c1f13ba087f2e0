"""``fluvial grant|revoke``, ``fluvial tags``, ``filters``, ``masks`` and ``policy explain``.

Every command that changes a policy acts as the principal whose key is in
FLUVIAL_API_KEY, or as the local bootstrap admin when none is set (see
:mod:`fluvial.cli._govern`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from fluvial.cli._common import JsonOpt, ProjectOpt, console, open_project, print_json, print_rows
from fluvial.cli._govern import acting
from fluvial.errors import UsageError
from fluvial.govern.model import MASK_KINDS, Mask, Principal
from fluvial.govern.policy import ObjectRef, PolicyStore, open_policy

__all__ = ["filters_app", "masks_app", "policy_app", "register", "tags_app"]

tags_app = typer.Typer(
    help="Tags on namespaces, tables and columns, and grants on tag expressions.",
    no_args_is_help=True,
)
filters_app = typer.Typer(
    help="Data filters: a role's grants on a table narrowed to rows and columns.",
    no_args_is_help=True,
)
masks_app = typer.Typer(
    help="Column masks: how a role sees a column (redact, hash, partial, null).",
    no_args_is_help=True,
)
policy_app = typer.Typer(help="Inspect access policies: explain, grants.", no_args_is_help=True)


def _open(project_dir: Path, *, act: bool = True) -> tuple[PolicyStore, Principal | None]:
    project = open_project(project_dir)
    store = open_policy(project)
    return store, acting(project, store.principals) if act else None


def _columns(text: str | None) -> list[str] | None:
    if text is None:
        return None
    cols = [c.strip() for c in text.split(",") if c.strip()]
    if not cols:
        raise UsageError(f"expected comma-separated column names, found {text!r}")
    return cols


def _keyword(found: str, wanted: str, usage: str) -> None:
    if found.upper() != wanted:
        raise UsageError(f"expected {wanted!r} in '{usage}', found {found!r}")


def register(app: typer.Typer) -> None:
    """Add ``grant`` and ``revoke`` to the root command."""

    @app.command("grant")
    def grant(
        privileges: str = typer.Argument(
            ..., help="ALL or a comma-separated list: SELECT,INSERT,ALTER,DROP,DESCRIBE."
        ),
        on: str = typer.Argument(..., metavar="ON", help="The word ON."),
        obj: str = typer.Argument(
            ..., metavar="OBJECT", help="zone, zone.table or zone.table.column."
        ),
        to: str = typer.Argument(..., metavar="TO", help="The word TO."),
        who: str = typer.Argument(..., help="A principal or role."),
        grant_option: bool = typer.Option(
            False, "--with-grant-option", help="Let WHO grant them onward."
        ),
        columns: str | None = typer.Option(
            None, "--columns", help="Only these columns of the table (comma-separated)."
        ),
        project_dir: ProjectOpt = Path("."),
        as_json: JsonOpt = False,
    ) -> None:
        """Grant privileges: fluvial grant SELECT ON curated.dim_users TO analyst."""
        usage = "fluvial grant PRIVS ON OBJECT TO WHO"
        _keyword(on, "ON", usage)
        _keyword(to, "TO", usage)
        store, by = _open(project_dir)
        made = store.grant(
            privileges, on=obj, to=who, grant_option=grant_option, columns=_columns(columns), by=by
        )
        if as_json:
            print_json([g.__dict__ for g in made])
            return
        for g in made:
            option = " with grant option" if g.grant_option else ""
            console.print(
                f"granted {g.privilege} on {g.object} to {g.grantee_kind} {g.grantee}{option}",
                highlight=False,
            )

    @app.command("revoke")
    def revoke(
        privileges: str = typer.Argument(..., help="ALL or a comma-separated list of privileges."),
        on: str = typer.Argument(..., metavar="ON", help="The word ON."),
        obj: str = typer.Argument(
            ..., metavar="OBJECT", help="zone, zone.table or zone.table.column."
        ),
        from_: str = typer.Argument(..., metavar="FROM", help="The word FROM."),
        who: str = typer.Argument(..., help="A principal or role."),
        columns: str | None = typer.Option(
            None, "--columns", help="Only these columns of the table."
        ),
        grant_option_only: bool = typer.Option(
            False, "--grant-option-only", help="Keep the privileges, revoke only the grant option."
        ),
        project_dir: ProjectOpt = Path("."),
        as_json: JsonOpt = False,
    ) -> None:
        """Revoke privileges: fluvial revoke SELECT ON curated.dim_users FROM analyst."""
        usage = "fluvial revoke PRIVS ON OBJECT FROM WHO"
        _keyword(on, "ON", usage)
        _keyword(from_, "FROM", usage)
        store, by = _open(project_dir)
        changed = store.revoke(
            privileges,
            on=obj,
            from_=who,
            columns=_columns(columns),
            grant_option_only=grant_option_only,
            by=by,
        )
        if as_json:
            print_json({"revoked": changed, "object": obj, "from": who})
            return
        console.print(f"revoked {changed} grant(s) on {obj} from {who}", highlight=False)

    app.add_typer(tags_app, name="tags")
    app.add_typer(filters_app, name="filters")
    app.add_typer(masks_app, name="masks")
    app.add_typer(policy_app, name="policy")


def _split(obj: str) -> tuple[str, str | None]:
    ref = ObjectRef.parse(obj)
    return (ref.table_name, ref.column) if ref.column else (str(ref), None)


@tags_app.command("set")
def tags_set(
    obj: str = typer.Argument(..., metavar="OBJECT", help="zone, zone.table or zone.table.column."),
    pairs: list[str] = typer.Argument(..., metavar="KEY=VALUE...", help="Tags to set."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Tag an object: fluvial tags set curated.dim_users.email pii=email."""
    store, by = _open(project_dir)
    table, column = _split(obj)
    done = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq:
            raise UsageError(f"expected KEY=VALUE, found {pair!r}")
        store.tag(table, column, key=key.strip(), value=value.strip(), by=by)
        done[key.strip()] = value.strip()
    if as_json:
        print_json({"object": obj, "tags": done})
        return
    console.print(
        f"tagged {obj}: {', '.join(f'{k}={v}' for k, v in done.items())}", highlight=False
    )


@tags_app.command("unset")
def tags_unset(
    obj: str = typer.Argument(..., metavar="OBJECT", help="zone, zone.table or zone.table.column."),
    keys: list[str] = typer.Argument(..., metavar="KEY...", help="Tag keys to remove."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Remove tags from an object."""
    store, by = _open(project_dir)
    table, column = _split(obj)
    for key in keys:
        store.untag(table, column, key=key, by=by)
    if as_json:
        print_json({"object": obj, "removed": keys})
        return
    console.print(f"removed from {obj}: {', '.join(keys)}", highlight=False)


@tags_app.command("list")
def tags_list(
    obj: str | None = typer.Argument(
        None, metavar="[OBJECT]", help="Only tags on this object and inside it."
    ),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """List tags (object, key, value)."""
    store, _ = _open(project_dir, act=False)
    rows = [t.__dict__ for t in store.tags(obj)]
    print_rows(rows, ["object", "key", "value"], as_json=as_json, title="tags")


@tags_app.command("grant")
def tags_grant(
    expression: str = typer.Argument(..., help='A tag expression, e.g. "domain=sales AND pii!=*".'),
    privileges: str = typer.Argument(..., help="ALL or a comma-separated list of privileges."),
    to: str = typer.Argument(..., metavar="TO", help="The word TO."),
    who: str = typer.Argument(..., help="A principal or role."),
    grant_option: bool = typer.Option(
        False, "--with-grant-option", help="Let WHO grant them onward."
    ),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Grant privileges on every object whose tags match EXPRESSION, now and later."""
    _keyword(to, "TO", "fluvial tags grant EXPR PRIVS TO WHO")
    store, by = _open(project_dir)
    made = store.grant_on_tags(expression, privileges, to=who, grant_option=grant_option, by=by)
    if as_json:
        print_json([g.__dict__ for g in made])
        return
    for g in made:
        console.print(
            f"granted {g.privilege} on tags {g.expression} to {g.grantee}", highlight=False
        )


@tags_app.command("revoke")
def tags_revoke(
    expression: str = typer.Argument(..., help="The tag expression of the grant."),
    privileges: str = typer.Argument(..., help="ALL or a comma-separated list of privileges."),
    from_: str = typer.Argument(..., metavar="FROM", help="The word FROM."),
    who: str = typer.Argument(..., help="A principal or role."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Revoke a tag grant."""
    _keyword(from_, "FROM", "fluvial tags revoke EXPR PRIVS FROM WHO")
    store, by = _open(project_dir)
    gone = store.revoke_on_tags(expression, privileges, from_=who, by=by)
    if as_json:
        print_json({"revoked": gone})
        return
    console.print(f"revoked {gone} tag grant(s) from {who}", highlight=False)


@tags_app.command("grants")
def tags_grants(project_dir: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List tag grants."""
    store, _ = _open(project_dir, act=False)
    rows = [g.__dict__ for g in store.tag_grants()]
    print_rows(
        rows,
        ["expression", "privilege", "grantee", "grant_option", "granted_by"],
        as_json=as_json,
        title="tag grants",
    )


@filters_app.command("set")
def filters_set(
    name: str = typer.Argument(..., help="The filter's name."),
    role: str = typer.Option(
        ..., "--role", help="The role (or principal) whose grants it narrows."
    ),
    table: str = typer.Option(..., "--table", help="The table, zone.table."),
    where: str | None = typer.Option(
        None, "--where", help="A SQL predicate over the table's columns."
    ),
    include: str | None = typer.Option(
        None, "--include", help="Only these columns (comma-separated)."
    ),
    exclude: str | None = typer.Option(None, "--exclude", help="Every column but these."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Create or replace a data filter: fluvial filters set de --role analyst --table curated.dim_users --where "country = 'DE'"."""
    store, by = _open(project_dir)
    made = store.set_filter(name, role, table, where, _columns(include), _columns(exclude), by=by)
    if as_json:
        print_json(made.__dict__)
        return
    console.print(
        f"filter {made.name} on {made.table} for {made.grantee}: {made.row_filter or 'every row'}",
        highlight=False,
    )


@filters_app.command("list")
def filters_list(
    table: str | None = typer.Option(None, "--table", help="Only this table's filters."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """List data filters."""
    store, _ = _open(project_dir, act=False)
    rows = [f.__dict__ for f in store.filters(table)]
    print_rows(
        rows,
        ["name", "grantee", "table", "row_filter", "include", "exclude"],
        as_json=as_json,
        title="filters",
    )


@filters_app.command("drop")
def filters_drop(
    name: str = typer.Argument(..., help="The filter to drop."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Drop a data filter."""
    store, by = _open(project_dir)
    store.drop_filter(name, by=by)
    if as_json:
        print_json({"dropped": name})
        return
    console.print(f"dropped filter {name}", highlight=False)


@masks_app.command("set")
def masks_set(
    role: str = typer.Argument(..., help="The role (or principal) that sees the column masked."),
    table: str = typer.Argument(..., help="The table, zone.table."),
    column: str = typer.Argument(..., help="The column."),
    kind: str = typer.Argument(..., help=f"One of {', '.join(MASK_KINDS)}."),
    keep_last: int = typer.Option(
        4, "--keep-last", help="partial: how many trailing characters stay visible."
    ),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Mask a column for a role: fluvial masks set analyst curated.dim_users email hash."""
    if kind not in MASK_KINDS:
        raise UsageError(f"a mask is one of {', '.join(MASK_KINDS)}; found {kind!r}")
    store, by = _open(project_dir)
    made = store.set_mask(role, table, column, Mask(kind, keep_last), by=by)  # type: ignore[arg-type]
    if as_json:
        print_json(
            {
                "grantee": made.grantee,
                "table": made.table,
                "column": made.column,
                "mask": made.mask.kind,
                "keep_last": made.mask.keep_last,
            }
        )
        return
    console.print(f"{role} sees {table}.{column} through mask {kind}", highlight=False)


@masks_app.command("list")
def masks_list(
    table: str | None = typer.Option(None, "--table", help="Only this table's masks."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """List column masks."""
    store, _ = _open(project_dir, act=False)
    rows = [
        {
            "grantee": m.grantee,
            "table": m.table,
            "column": m.column,
            "mask": m.mask.kind,
            "keep_last": m.mask.keep_last,
        }
        for m in store.masks(table)
    ]
    print_rows(
        rows, ["grantee", "table", "column", "mask", "keep_last"], as_json=as_json, title="masks"
    )


@masks_app.command("drop")
def masks_drop(
    role: str = typer.Argument(..., help="The role (or principal)."),
    table: str = typer.Argument(..., help="The table, zone.table."),
    column: str = typer.Argument(..., help="The column."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Drop a role's mask on a column."""
    store, by = _open(project_dir)
    store.drop_mask(role, table, column, by=by)
    if as_json:
        print_json({"dropped": f"{table}.{column}", "grantee": role})
        return
    console.print(f"dropped {role}'s mask on {table}.{column}", highlight=False)


@policy_app.command("explain")
def explain(
    principal: str = typer.Argument(..., help="The principal (or a role)."),
    table: str = typer.Argument(..., help="The table, zone.table."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show what a principal (or any holder of a role) may read of a table, and which grant,
    filter or mask says so."""
    store, _ = _open(project_dir, act=False)
    access = store.explain(principal, table)
    doc = {
        "principal": principal,
        "table": access.table,
        "columns": list(access.columns),
        "denied": dict(access.denied),
        "row_filter": access.row_filter,
        "masks": {c: {"kind": m.kind, "keep_last": m.keep_last} for c, m in access.masks.items()},
        "sources": dict(access.sources),
    }
    if as_json:
        print_json(doc)
        return
    rows = [
        {
            "column": c,
            "access": "masked " + access.masks[c].kind if c in access.masks else "read",
            "why": access.sources.get(c, ""),
        }
        for c in access.columns
    ] + [{"column": c, "access": "denied", "why": why} for c, why in access.denied.items()]
    print_rows(rows, ["column", "access", "why"], as_json=False, title=f"{principal} on {table}")
    console.print(f"rows: {access.row_filter or 'every row'}", highlight=False)
    if "filter" in access.sources:
        console.print(f"  ({access.sources['filter']})", highlight=False)


@policy_app.command("grants")
def grants(
    who: str | None = typer.Option(
        None, "--grantee", help="Only this principal's or role's grants."
    ),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """List grants (the direct ones; see tags grants for tag grants)."""
    store, _ = _open(project_dir, act=False)
    rows = [g.__dict__ for g in store.grants(grantee=who)]
    print_rows(
        rows,
        ["grantee", "grantee_kind", "privilege", "object", "grant_option", "granted_by"],
        as_json=as_json,
        title="grants",
    )
