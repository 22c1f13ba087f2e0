"""``fluvial forget``: remove one user's rows from the log, lake, warehouse and store."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from fluvial.cli._common import JsonOpt, ProjectOpt, console, open_project, print_json

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("forget")
    def forget_cmd(
        user_id: str = typer.Option(..., "--user-id", help="The user to forget."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be removed."),
        keep_log: bool = typer.Option(
            False,
            "--keep-log",
            help="With a Kafka or Kinesis log (no per-record delete): forget everywhere "
            "else and leave the log's records to its retention.",
        ),
        project_dir: ProjectOpt = Path("."),
        as_json: JsonOpt = False,
    ) -> None:
        """Remove a user's rows (and their devices' pre-login events) everywhere: the
        log's retained records, stream jobs' files, every lake zone, the warehouse and
        the store. Admins only; recorded in the audit log."""
        from fluvial.cli._govern import acting, require_admin
        from fluvial.govern.forget import forget

        project = open_project(project_dir)
        # FLUVIAL_API_KEY's principal, or the bootstrap admin for local file access
        principal = acting(project)
        require_admin(principal, "fluvial forget")
        report = forget(
            project,
            user_id,
            principal=principal.name,
            dry_run=dry_run,
            keep_log=keep_log,
        )
        if as_json:
            print_json(report.to_dict())
            return
        verb = "would remove" if dry_run else "removed"
        table = Table(title=f"forget {user_id} ({len(report.anonymous_ids)} devices)")
        for col in ("place", "table", "rows", "matched by", "detail"):
            table.add_column(col, justify="right" if col == "rows" else "left")
        for r in report.removals:
            table.add_row(r.place, r.name, str(r.rows), ", ".join(r.columns), r.detail)
        console.print(table)
        totals = ", ".join(f"{place} {rows}" for place, rows in report.totals().items())
        console.print(f"{verb} rows: {totals}; files deleted: {report.files_deleted}")
        for note in report.notes:
            console.print(f"note: {note}", highlight=False)
        if not dry_run:
            console.print("recorded in the audit log", highlight=False)
