"""``fluvial audit``: read and verify the hash-chained audit log."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer

from fluvial.cli._common import (
    JsonOpt,
    ProjectOpt,
    console,
    dumps,
    open_project,
    print_json,
    print_rows,
)
from fluvial.cli._govern import acting, require_admin
from fluvial.errors import UsageError
from fluvial.govern.audit import AUDIT_KINDS, open_audit

__all__ = ["app", "parse_since"]

app = typer.Typer(
    help="The audit log: every query, policy change, auth failure and forget.",
    invoke_without_command=True,
)

_AGO = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 time, or an age such as ``15m``, ``2h`` or ``7d`` before *now*.

    >>> parse_since("2h", now=datetime(2026, 1, 1, 12, tzinfo=UTC)).isoformat()
    '2026-01-01T10:00:00+00:00'
    >>> parse_since("2026-01-01").isoformat()
    '2026-01-01T00:00:00+00:00'
    """
    raw = text.strip()
    if match := _AGO.match(raw):
        delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return (now or datetime.now(UTC)) - delta
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--since expects an ISO time (2026-01-01T10:00Z) or an age (15m, 2h, 7d); found {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.callback()
def show(
    ctx: typer.Context,
    principal: str | None = typer.Option(
        None, "--principal", help="Only this principal's records."
    ),
    kind: str | None = typer.Option(
        None, "--kind", help=f"Only one kind: {', '.join(AUDIT_KINDS)}."
    ),
    since: str | None = typer.Option(
        None, "--since", help="Only records since an ISO time or an age (2h, 7d)."
    ),
    last: int = typer.Option(0, "--last", help="Only the last N matching records (0 = all)."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show audit records, oldest first (``fluvial audit verify`` checks the chain)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = project_dir  # `fluvial audit -p DIR verify` means that project too
        return
    if kind is not None and kind not in AUDIT_KINDS:
        raise UsageError(f"--kind is one of {', '.join(AUDIT_KINDS)}; found {kind!r}")
    project = open_project(project_dir)
    require_admin(acting(project), "reading the audit log")
    records = list(
        open_audit(project).records(
            principal=principal, kind=kind, since=parse_since(since) if since else None
        )
    )
    if last > 0:
        records = records[-last:]
    if as_json:
        print_json([r.as_dict() for r in records])
        return
    rows = [
        {
            "seq": r.seq,
            "time": r.time,
            "kind": r.kind,
            "principal": r.principal,
            "data": dumps(r.data),
        }
        for r in records
    ]
    print_rows(rows, ["seq", "time", "kind", "principal", "data"], as_json=False, title="audit log")


@app.command("verify")
def verify(
    ctx: typer.Context, project_dir: ProjectOpt = Path("."), as_json: JsonOpt = False
) -> None:
    """Recompute the hash chain; exit 1 and name the record when the log was tampered with."""
    if project_dir == Path(".") and isinstance(ctx.obj, Path):
        project_dir = ctx.obj
    result = open_audit(open_project(project_dir)).verify()
    if as_json:
        print_json(
            {
                "ok": result.ok,
                "records": result.records,
                "head_seq": result.head_seq,
                "head_hash": result.head_hash,
                "problems": result.problems,
            }
        )
    elif result.ok:
        console.print(f"audit log intact: {result.records} records, head {result.head_hash}")
    else:
        for problem in result.problems:
            console.print(f"[bold red]tampered:[/] {problem}", highlight=False)
    if not result.ok:
        raise typer.Exit(1)
