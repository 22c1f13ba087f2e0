"""The ``fluvial`` command line: one module per command group.

Errors are one clear line on stderr: exit code 2 for usage errors, 1 for failures; a
traceback only with ``--debug`` (or FLUVIAL_DEBUG=1).
"""

from __future__ import annotations

import os
import sys

import typer
from typer._click.exceptions import ClickException  # Typer vendors its own Click

from fluvial.cli import (
    alerts,
    audit,
    aws,
    batch,
    collect,
    demo,
    forget,
    generate,
    init,
    keys,
    lake,
    lambda_kappa,
    lineage,
    log,
    policy,
    principals,
    quality,
    schemas,
    sql,
    store,
    stream,
)
from fluvial.cli import up as up_cli
from fluvial.cli._common import err_console
from fluvial.errors import FluvialError, UsageError

__all__ = ["app", "main"]

app = typer.Typer(
    name="fluvial",
    help="Fluvial: an open data processing and analytics platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """Fluvial: ingest, process, store, govern and show your event data."""
    _state["debug"] = debug or _state["debug"]


init.register(app)
demo.register(app)
collect.register(app)
app.add_typer(log.app, name="log")
app.add_typer(schemas.app, name="schemas")
app.add_typer(keys.app, name="keys")
app.add_typer(generate.app, name="generate")
app.add_typer(stream.app, name="stream")
app.add_typer(lake.app, name="lake")
app.add_typer(store.app, name="store")
app.add_typer(quality.app, name="quality")
app.add_typer(batch.app, name="batch")
app.add_typer(alerts.app, name="alerts")
app.add_typer(principals.app, name="principals")
app.add_typer(principals.roles_app, name="roles")
app.add_typer(audit.app, name="audit")
policy.register(app)
app.add_typer(aws.app, name="aws")
sql.register(app)
lineage.register(app)
forget.register(app)
up_cli.register(app)
lambda_kappa.register(app)
lambda_kappa.register_stream(stream.app)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    _state["debug"] = "--debug" in args or os.environ.get("FLUVIAL_DEBUG") == "1"
    try:
        result = app(args=args, prog_name="fluvial", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        code = 130
    except ClickException as exc:  # usage errors: bad options, arguments
        if _state["debug"]:
            raise
        exc.show()
        code = exc.exit_code
    except FluvialError as exc:
        if _state["debug"]:
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        code = 2 if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt:
        code = 130
    if argv is None:
        sys.exit(code)
    return code
