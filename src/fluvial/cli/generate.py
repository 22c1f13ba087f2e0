"""``fluvial generate``: load generators — a shop's clickstream, and Nexmark's auctions."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fluvial.cli._common import JsonOpt, ProjectOpt, err_console, open_project, print_json
from fluvial.errors import UsageError

__all__ = ["app"]

app = typer.Typer(
    help="Generate test load: a shop's clickstream, or Nexmark's persons, auctions and bids.",
    no_args_is_help=True,
)

EventsOpt = Annotated[int, typer.Option("--events", "-n", min=0, help="How many lines to emit.")]
SeedOpt = Annotated[
    int, typer.Option("--seed", help="Random seed: the same seed and options give the same bytes.")
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", dir_okay=False, help="Write NDJSON to this file.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
StartOpt = Annotated[
    str | None,
    typer.Option(
        "--start",
        help="Event time of the start, ISO-8601 (e.g. 2026-11-01T00:00:00Z). Fixing it makes "
        "the output reproducible on any day; by default it is now minus --days.",
    ),
]  # fmt: skip


def _parse_start(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise UsageError(
            f"--start: expected an ISO-8601 time such as 2026-11-01T00:00:00Z, found {text!r}"
        ) from exc
    if moment.tzinfo is None:
        raise UsageError(f"--start: give a time zone (e.g. a trailing Z for UTC), found {text!r}")
    return round(moment.timestamp() * 1000)


def _target(out: Path | None, to: str | None) -> str:
    if (out is None) == (to is None):
        raise UsageError(
            "give exactly one target: --out FILE.ndjson, --to http://HOST:PORT or --to log"
        )
    if out is not None:
        return "file"
    assert to is not None
    if to == "log":
        return "log"
    if to.startswith(("http://", "https://")):
        return "http"
    raise UsageError(f"--to: expected http://HOST:PORT or log, found {to!r}")


@contextmanager
def _progress(total: int, quiet: bool, label: str) -> Iterator[Callable[[int], None]]:
    if quiet or total == 0:
        yield lambda n: None
        return
    bar = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    with bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _summary(summary: dict[str, object], as_json: bool) -> None:
    if as_json:
        print_json(summary)
        return
    line = f"sent {summary['sent']:,} events to {summary['target']} in {summary['seconds']} s"
    line += f" ({summary['events_per_second']:,} events/s)"
    if summary.get("accepted") is not None:
        line += f"; accepted {summary['accepted']:,}, rejected {summary['rejected']:,}"
    err_console.print(line, highlight=False, soft_wrap=True)
    reasons = summary.get("by_reason") or {}
    if isinstance(reasons, dict) and reasons:
        err_console.print(
            "rejected by reason: " + ", ".join(f"{k} {v:,}" for k, v in sorted(reasons.items())),
            highlight=False,
        )
    errors = summary.get("errors") or []
    if isinstance(errors, list):
        for error in errors[:5]:
            err_console.print(f"  {error}", highlight=False, soft_wrap=True)


@app.command()
def clickstream(
    events: EventsOpt = 10_000,
    out: OutOpt = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="http://HOST:PORT (a collector) or log (validate and append to the project's log).",
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key", envvar="FLUVIAL_WRITE_KEY", help="Write key for the collector (--to http://…)."
        ),
    ] = None,
    rate: Annotated[
        float,
        typer.Option(
            "--rate", min=0, help="Events per second (token bucket); 0 = as fast as possible."
        ),
    ] = 0.0,
    seed: SeedOpt = 0,
    users: Annotated[
        int,
        typer.Option(
            "--users", min=1, help="Simulated people (each with 1–3 devices, plus ~3 % crawlers)."
        ),
    ] = 1_000,
    days: Annotated[
        float,
        typer.Option(
            "--days", min=0.001, help="Days of traffic the events span (visits repeat over them)."
        ),
    ] = 7.0,
    start: StartOpt = None,
    disorder: Annotated[
        float,
        typer.Option(
            "--disorder",
            min=0,
            help="Bound, in seconds, on how much later than its event time an event is sent.",
        ),
    ] = 5.0,
    late_fraction: Annotated[
        float,
        typer.Option(
            "--late-fraction",
            min=0,
            max=0.99,
            help="Share of events sent later than the disorder bound (late data).",
        ),
    ] = 0.01,
    duplicate_fraction: Annotated[
        float,
        typer.Option(
            "--duplicate-fraction",
            min=0,
            max=0.89,
            help="Share of lines that repeat an earlier line byte for byte.",
        ),
    ] = 0.005,
    invalid_fraction: Annotated[
        float,
        typer.Option(
            "--invalid-fraction",
            min=0,
            max=0.89,
            help="Share of malformed lines (bad JSON, missing fields, bad ids or times, schema violations, oversized).",
        ),
    ] = 0.005,
    app_id: Annotated[
        str,
        typer.Option("--app-id", help="app_id of the events (and of the log target's ingestion)."),
    ] = "demo",
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            help="Events per request (default 100) or per log append (default 5000).",
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", min=1, help="Parallel HTTP connections to the collector."),
    ] = 4,
    project: ProjectOpt = Path("."),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Simulate a shop's visitors and emit their events in send order (with disorder,
    late, duplicate and invalid events), to a file, a collector or the log."""
    from fluvial.generate.clickstream import ClickstreamConfig, clickstream_batches
    from fluvial.generate.sinks import append_to_log, post_to_collector, write_file

    target = _target(out, to)
    if target == "http" and not key:
        raise UsageError("--to http://… needs a write key: --key KEY (or FLUVIAL_WRITE_KEY)")
    config = ClickstreamConfig(
        events=events,
        seed=seed,
        users=users,
        days=days,
        start_ms=_parse_start(start),
        disorder_seconds=disorder,
        late_fraction=late_fraction,
        duplicate_fraction=duplicate_fraction,
        invalid_fraction=invalid_fraction,
        app_id=app_id,
    )
    batches = clickstream_batches(config)
    with _progress(events, quiet, "clickstream") as advance:
        if target == "file":
            assert out is not None
            result = write_file(batches, out, rate=rate, progress=advance)
        elif target == "http":
            assert to is not None and key is not None
            result = post_to_collector(
                batches, to, key, batch_size=batch_size or 100, concurrency=concurrency,
                rate=rate, progress=advance,
            )  # fmt: skip
        else:
            result = append_to_log(
                batches, open_project(project), app_id=app_id, batch_size=batch_size or 5_000,
                rate=rate, progress=advance,
            )  # fmt: skip
    _summary(result.as_dict(), as_json)


@app.command()
def nexmark(
    events: EventsOpt = 1_000_000,
    out: OutOpt = None,
    to: Annotated[
        str | None, typer.Option("--to", help="log: append to the project's 'nexmark' topic.")
    ] = None,
    rate: Annotated[
        float,
        typer.Option(
            "--rate",
            min=1,
            max=1_000_000,
            help="Nexmark's first-event rate: events per second of event time (sets the inter-event delay).",
        ),
    ] = 10_000.0,
    seed: SeedOpt = 0,
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            help="Time of the first event, ISO-8601 (e.g. 2026-11-01T00:00:00Z); default now. "
            "Fixing it makes the output reproducible.",
        ),
    ] = None,
    topic: Annotated[str, typer.Option("--topic", help="Topic for --to log.")] = "nexmark",
    project: ProjectOpt = Path("."),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate Nexmark's persons, auctions and bids (1 : 3 : 46) as Flink's Nexmark rows."""
    from fluvial.generate.nexmark import NexmarkConfig, nexmark_lines, nexmark_tables

    target = _target(out, to)
    if target == "http":
        raise UsageError("nexmark goes to --out FILE.ndjson or --to log, not to a collector")
    config = NexmarkConfig(events=events, seed=seed, rate=rate, start_ms=_parse_start(start))
    began = time.perf_counter()
    with _progress(events, quiet, "nexmark") as advance:
        if target == "file":
            assert out is not None
            try:
                handle = open(out, "wb")  # noqa: SIM115 - closed by the with below
            except OSError as exc:
                raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from exc
            with handle:
                for table in nexmark_tables(config):
                    handle.write(nexmark_lines(table)[0])
                    advance(table.num_rows)
            where = str(out)
        else:
            from fluvial.generate.nexmark import append_nexmark

            with open_project(project).open_log() as log:
                append_nexmark(log, nexmark_tables(config), topic=topic, progress=advance)
            where = f"log:{topic}"
    seconds = time.perf_counter() - began
    _summary(
        {
            "target": where,
            "sent": events,
            "seconds": round(seconds, 3),
            "events_per_second": round(events / seconds, 1) if seconds else 0.0,
        },
        as_json,
    )
