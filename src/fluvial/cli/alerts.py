"""``fluvial alerts``: list the alert rules with their states, show history, test channels."""

from __future__ import annotations

from pathlib import Path

import typer

from fluvial.cli._common import JsonOpt, ProjectOpt, console, open_project, print_json, print_rows
from fluvial.errors import FluvialError

__all__ = ["app"]

app = typer.Typer(
    help="Alerts: rules on stream results and pipeline metrics, their states and history.",
    no_args_is_help=True,
)


@app.command("list")
def list_rules(project_dir: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Every rule (from alerts.toml and the API) with its state."""
    from fluvial.serve.alerts import RuleCatalog, RuleState, open_alert_store

    project = open_project(project_dir)
    store = open_alert_store(project)
    states = store.states()
    rows = []
    for entry in RuleCatalog(project, store).entries():
        state = (states.get(entry.rule.name) or RuleState(entry.rule.name)).to_dict()
        rows.append(
            {
                "name": entry.rule.name,
                "origin": entry.origin,
                "severity": entry.rule.severity,
                "state": state["state"],
                "since": state["since"],
                "value": state["value"],
                "checks": entry.rule.describe(),
                "error": state["error"],
                "rule": entry.rule.to_doc(),
            }
        )
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"no alert rules (define them in {project.settings.alerts.rules_file})")
        return
    print_rows(
        rows, ["name", "state", "since", "value", "severity", "origin", "checks"], as_json=False
    )


@app.command("history")
def history(
    rule: str | None = typer.Argument(None, help="Only this rule's state changes."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="Newest changes shown."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """State changes, newest first."""
    from fluvial.serve.alerts import open_alert_store

    entries = open_alert_store(open_project(project_dir)).history(rule, limit=limit)
    rows = [h.to_dict() for h in entries]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        row["change"] = f"{row['from_state']} -> {row['to_state']}"
        row["notified"] = "yes" if row["notified"] else "no"
    print_rows(rows, ["at", "rule", "change", "value", "notified", "message"], as_json=False)


@app.command("test")
def test(
    name: str = typer.Argument(..., help="The rule whose channels to test."),
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Send a TEST notification through the rule's channels (with its current value)."""
    from fluvial.serve.alerts import AlertEvaluator

    with AlertEvaluator(open_project(project_dir)) as evaluator:
        results = evaluator.test(name)
    if as_json:
        print_json(results)
    else:
        for r in results:
            mark = "[green]sent[/]" if r["ok"] else f"[red]failed[/]: {r['error']}"
            console.print(f"{r['channel']}: {mark}", highlight=False)
    failed = [r for r in results if not r["ok"]]
    if failed:
        raise FluvialError(f"{len(failed)} of {len(results)} channel(s) of '{name}' failed")
