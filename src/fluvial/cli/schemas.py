"""``fluvial schemas``: list, show, register event schemas, and check event files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from fluvial.cli._common import JsonOpt, ProjectOpt, console, open_project, print_json, print_rows
from fluvial.errors import SchemaError, UsageError
from fluvial.events.compat import Compatibility
from fluvial.events.payload import iter_ndjson
from fluvial.events.registry import SchemaRegistry
from fluvial.events.validate import EventValidator

__all__ = ["app"]

app = typer.Typer(
    help="Event schemas: list, show and register versions; check event files.",
    no_args_is_help=True,
)

FIRST_ERRORS = 10


def _registry(project_dir: Path) -> SchemaRegistry:
    return SchemaRegistry.for_project(open_project(project_dir))


@app.command("list")
def list_(project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List event types with their latest version, compatibility mode and source."""
    rows = [
        {
            "type": s.name,
            "latest": s.latest,
            "versions": len(s.versions),
            "compatibility": s.compatibility.value,
            "source": s.source,
        }
        for s in _registry(project).subjects()
    ]
    print_rows(
        rows,
        ["type", "latest", "versions", "compatibility", "source"],
        as_json=as_json,
        title="event schemas",
    )


@app.command()
def show(
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="The event type.")],
    version: Annotated[
        int | None,
        typer.Option("--version", "-v", help="Which version (default: the latest).", min=1),
    ] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show an event type's schema (the JSON Schema of its properties)."""
    registry = _registry(project)
    registered = registry.get(event_type, version)
    info = registry.subject(event_type)
    if as_json:
        print_json(
            {
                "type": event_type,
                "version": registered.version,
                "versions": list(info.versions),
                "compatibility": info.compatibility.value,
                "source": registered.source,
                "schema": registered.schema,
            }
        )
        return
    console.print(
        f"[bold]{event_type}[/] version {registered.version} of {info.latest} "
        f"({registered.source}; compatibility {info.compatibility.value})",
        highlight=False,
    )
    console.print_json(json.dumps(registered.schema))


@app.command()
def register(
    event_type: Annotated[str, typer.Argument(metavar="TYPE", help="The event type.")],
    file: Annotated[
        Path,
        typer.Argument(help="A JSON Schema (draft 2020-12) file for the type's properties."),
    ],
    compatibility: Annotated[
        str | None,
        typer.Option(
            "--compatibility",
            "-c",
            help="Set the type's compatibility mode first: BACKWARD, FORWARD, FULL, NONE "
            "(or a *_TRANSITIVE variant). Default: its current mode.",
        ),
    ] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Register a new version of an event type's schema (checked for compatibility)."""
    try:
        schema = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{file}: not valid JSON: {exc}") from exc
    mode = Compatibility.parse(compatibility) if compatibility is not None else None
    registry = _registry(project)
    before = registry.latest(event_type).version if event_type in registry else 0
    registered = registry.register(event_type, schema, compatibility=mode)
    created = registered.version > before
    if as_json:
        print_json(
            {
                "type": event_type,
                "version": registered.version,
                "created": created,
                "compatibility": registry.compatibility(event_type).value,
            }
        )
        return
    if created:
        console.print(f"registered {event_type} version {registered.version}", highlight=False)
    else:
        console.print(
            f"{event_type} version {registered.version} already has this schema; nothing to do",
            highlight=False,
        )


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="An NDJSON file of events, one per line.")],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Validate an NDJSON file of events against the registry; store nothing.

    Prints counts per failure reason and the first errors; exits with 1 if any event
    is invalid.
    """
    validator = EventValidator.for_project(open_project(project))
    valid = invalid = 0
    by_reason: Counter[str] = Counter()
    first: list[dict[str, Any]] = []
    for chunk in iter_ndjson(file):
        result = validator.validate(chunk.payloads, source="check")
        valid += result.accepted
        invalid += result.rejected
        by_reason.update(e.reason for e in result.errors)
        for e in result.errors[: max(0, FIRST_ERRORS - len(first))]:
            first.append(
                {
                    "line": chunk.lines[e.index] + 1,
                    "reason": e.reason,
                    "path": e.path,
                    "error": e.error,
                    "event_id": e.event_id,
                }
            )
    if as_json:
        print_json(
            {
                "file": str(file),
                "valid": valid,
                "invalid": invalid,
                "by_reason": dict(sorted(by_reason.items())),
                "first_errors": first,
            }
        )
    else:
        console.print(f"{file}: {valid} valid, {invalid} invalid", highlight=False)
        if by_reason:
            print_rows(
                [{"reason": r, "events": n} for r, n in sorted(by_reason.items())],
                ["reason", "events"],
                as_json=False,
                title="invalid events by reason",
            )
            print_rows(
                first, ["line", "reason", "path", "error"], as_json=False, title="first errors"
            )
    if invalid:
        raise typer.Exit(1)
