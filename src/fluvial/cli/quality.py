"""``fluvial quality``: check tables against their rules, show rules and history."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import typer

from fluvial.cli._common import JsonOpt, ProjectOpt, console, open_project, print_json, print_rows
from fluvial.errors import NotFoundError, UsageError, did_you_mean
from fluvial.lake.query import quote
from fluvial.lake.zones import split_name
from fluvial.project import Project
from fluvial.quality import (
    QualityReport,
    evaluate,
    load_rules,
    open_history,
    record,
    rule_sources,
    tables_with_rules,
)

__all__ = ["app"]

app = typer.Typer(
    help="Data quality: check tables against their rules, show rules and history.",
    no_args_is_help=True,
)

#: the DuckDB warehouse file of the ``marts`` zone, in the data dir
WAREHOUSE_FILE = "warehouse.duckdb"


def _tables(project: Project, table: str | None) -> list[str]:
    if table is None:
        return tables_with_rules(project)
    split_name(table)
    if not rule_sources(project, table):
        known = tables_with_rules(project)
        raise NotFoundError(
            f"no quality rules for '{table}' (models/<zone>/<name>.quality.yml or "
            f"quality/<zone>.<name>.yml){did_you_mean(table, known)}"
        )
    return [table]


def _read(con: duckdb.DuckDBPyConnection, project: Project, table: str) -> pa.Table | None:
    """The rows of a lake table (or a mart of the warehouse); None when it does not exist."""
    zone, name = split_name(table)
    if zone == "marts":
        path = project.data_dir / WAREHOUSE_FILE
        if not path.exists():
            return None
        dbs = con.execute("SELECT database_name FROM duckdb_databases()").fetchall()
        attached = {r[0] for r in dbs}
        if "warehouse" not in attached:
            literal = "'" + str(path).replace("'", "''") + "'"
            con.execute(f"ATTACH {literal} AS warehouse (READ_ONLY)")
        source = f"warehouse.marts.{quote(name)}"
        exists = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_catalog = 'warehouse' "
            "AND table_schema = 'marts' AND table_name = ?",
            [name],
        ).fetchone()
        if not exists or not exists[0]:
            return None
    else:
        exists = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_catalog = "
            "current_database() AND table_schema = ? AND table_name = ?",
            [zone, name],
        ).fetchone()
        if not exists or not exists[0]:
            return None
        source = f"{quote(zone)}.{quote(name)}"
    return con.sql(f"SELECT * FROM {source}").to_arrow_table()


def _show(report: QualityReport) -> None:
    verdict = "[green]passed[/]" if report.passed else "[bold red]FAILED[/]"
    console.print(
        f"{report.table}: {verdict} · {report.rows:,} row(s) · "
        f"{report.failing_rows.num_rows:,} failing row(s)"
    )
    rows = [
        {
            "rule": r.name,
            "severity": r.severity,
            "result": "pass" if r.passed else "FAIL",
            "failing rows": r.failing_rows if r.row_level else "",
            "message": r.message,
        }
        for r in report.results
    ]
    print_rows(rows, ["rule", "severity", "result", "failing rows", "message"], as_json=False)


@app.command("check")
def check(
    table: str | None = typer.Argument(None, help="The table (zone.name); default: every one."),
    no_record: bool = typer.Option(
        False, "--no-record", help="Do not keep the results in the history."
    ),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Check lake tables against their rules and record the results.

    Exits with 1 when an error-severity rule fails.
    """
    from fluvial.lake import connect, open_lake

    project = open_project(project_dir)
    names = _tables(project, table)
    reports: list[QualityReport] = []
    missing: list[str] = []
    with ExitStack() as stack:
        lake = stack.enter_context(open_lake(project))
        con = connect(lake)
        stack.callback(con.close)
        for name in names:
            rules = load_rules(project, name)
            data = _read(con, project, name)
            if data is None:
                if table is not None:
                    raise NotFoundError(f"table '{name}' does not exist")
                missing.append(name)
                continue
            report = evaluate(project, name, data, rules, connection=con)
            if not no_record:
                record(project, report)
            reports.append(report)
    if as_json:
        print_json(
            {
                "passed": all(r.passed for r in reports),
                "tables": [r.to_dict() for r in reports],
                "missing": missing,
            }
        )
    else:
        if not names:
            console.print("no table has quality rules")
        for report in reports:
            _show(report)
        for name in missing:
            console.print(f"{name}: [yellow]skipped[/] (not in the lake yet)")
    if not all(r.passed for r in reports):
        raise typer.Exit(1)


@app.command("report")
def report(
    table: str | None = typer.Argument(None, help="The table (zone.name); default: every one."),
    limit: int = typer.Option(10, "--limit", "-n", help="How many runs of TABLE to show."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show recorded results: the latest run of every table, or TABLE's runs and rules."""
    history = open_history(open_project(project_dir))
    if table is None:
        latest = history.latest()
        if as_json:
            print_json(latest)
        else:
            _runs([_brief(r, "table") for r in latest], "table", "quality: latest runs")
        return
    split_name(table)
    runs = history.runs(table, limit=limit)
    if not runs:
        raise NotFoundError(f"no recorded quality runs of '{table}'")
    results = history.rule_results(runs[0]["run_id"])
    if as_json:
        print_json({"table": table, "runs": runs, "latest": results})
        return
    _runs([_brief(r, "run") for r in runs], "run", f"quality runs of {table}")
    rows: list[dict[str, Any]] = [
        {**r, "result": "pass" if r["passed"] else "FAIL"} for r in results
    ]
    print_rows(
        rows,
        ["rule", "severity", "result", "failing_rows", "message"],
        as_json=False,
        title="latest run",
    )


def _brief(run: dict[str, Any], first: str) -> dict[str, Any]:
    """A run as a short row for people: the table (or a run id prefix) first."""
    head = {"table": run["table_name"]} if first == "table" else {"run": run["run_id"][:12]}
    return {
        **head,
        "at": str(run["evaluated_at"])[:19],
        "result": "pass" if run["passed"] else "FAIL",
        "rows": run["row_count"],
        "failing": run["failing_rows"],
        "errors": run["errors"],
        "warnings": run["warnings"],
    }


def _runs(rows: list[dict[str, Any]], first: str, title: str) -> None:
    columns = [first, "at", "result", "rows", "failing", "errors", "warnings"]
    print_rows(rows, columns, as_json=False, title=title)


@app.command("rules")
def rules(
    table: str | None = typer.Argument(None, help="The table (zone.name); default: every one."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """List (and so validate) the rules of every table, or of TABLE."""
    project = open_project(project_dir)
    rows: list[dict[str, Any]] = []
    for name in _tables(project, table):
        loaded = load_rules(project, name)
        source = rule_sources(project, name)[0]
        for rule in loaded:
            rows.append(
                {
                    "table": name,
                    "rule": rule.name,
                    "kind": rule.kind,
                    "severity": rule.severity,
                    "row_level": rule.row_level,
                    "source": str(source),
                }
            )
    if table is not None and not rows:
        raise UsageError(f"'{table}' has a rule file without rules")
    print_rows(rows, ["table", "rule", "severity", "row_level"], as_json=as_json, title="rules")
