"""``fluvial aws``: the project's CloudFormation template, and what the AWS deployment costs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fluvial.aws.cost import (
    ALL_OPTIMIZATIONS,
    CostBreakdown,
    Optimizations,
    Workload,
    estimate,
    savings,
)
from fluvial.aws.inventory import inventory
from fluvial.aws.measured import Measured, measure
from fluvial.aws.template import build_template, dump_template
from fluvial.cli._common import JsonOpt, ProjectOpt, console, open_project, print_json
from fluvial.errors import FluvialError

__all__ = ["app"]

app = typer.Typer(
    help="AWS deployment: the CloudFormation template and the monthly cost.",
    no_args_is_help=True,
)

#: ``fluvial aws cost`` assumes a year when the raw zone keeps events forever
FOREVER_AS_DAYS = 365.0


@app.command("template")
def template(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the template here (default: stdout).")
    ] = None,
    project_dir: ProjectOpt = Path("."),
) -> None:
    """Write the CloudFormation template (JSON) of the project's deployment."""
    text = dump_template(build_template(open_project(project_dir)))
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise FluvialError(f"cannot write {out}: {exc}") from exc
    resources = text.count('"Type": "AWS::')
    console.print(f"wrote {out} ({resources} resources)", highlight=False)


def _money(usd: float) -> str:
    return f"{usd:,.2f}"


def _quantity(q: float) -> str:
    return f"{q:,.0f}" if q >= 100 else f"{q:,.3g}"


def _show(b: CostBreakdown, saved: dict[str, float], measured: Measured | None) -> None:
    w = b.workload
    if measured is not None:
        console.print(
            f"measured over {measured.seconds:.1f} s: {measured.events_per_second:,.1f} events/s, "
            f"{measured.queries_per_day:,.0f} queries/day, "
            f"{measured.store_writes_per_second:,.1f} store writes/s",
            highlight=False,
        )
    console.print(
        f"{w.events_per_second:,.0f} events/s × {w.event_bytes:,} B, {w.retention_days:g} days "
        f"kept, {w.queries_per_day:,.0f} queries/day over {w.query_days:g} day(s); "
        f"{b.region} list prices of {b.prices_as_of}",
        highlight=False,
    )
    table = Table(title="monthly cost (USD)")
    for col in ("service", "item", "quantity", "unit", "USD/unit", "USD"):
        table.add_column(col, justify="right" if col in ("quantity", "USD/unit", "USD") else "left")
    for s in b.services:
        for i, line in enumerate(s.lines):
            table.add_row(
                s.service if i == 0 else "",
                line.item,
                _quantity(line.quantity),
                line.unit,
                f"{line.unit_usd:g}",
                _money(line.usd),
            )
        table.add_row("", f"[bold]{s.service} total[/]", "", "", "", f"[bold]{_money(s.usd)}[/]")
    table.add_row("[bold]total[/]", "", "", "", "", f"[bold]{_money(b.total)}[/]")
    console.print(table)
    saved_table = Table(title="what each optimization saves a month (USD)")
    saved_table.add_column("optimization")
    saved_table.add_column("without it", justify="right")
    saved_table.add_column("saves", justify="right")
    for name, usd in saved.items():
        saved_table.add_row(name, _money(b.total + usd), _money(usd))
    console.print(saved_table)


@app.command("cost")
def cost(
    events_per_second: Annotated[
        float | None,
        typer.Option(
            "--events-per-second",
            "-r",
            help="Mean events/s (default: [aws] peak_events_per_second).",
        ),
    ] = None,
    event_bytes: Annotated[
        int | None,
        typer.Option("--event-bytes", "-b", help="Bytes per event (default: [aws] event_bytes)."),
    ] = None,
    retention_days: Annotated[
        float | None,
        typer.Option(
            "--retention-days",
            "-d",
            help="Days the lake keeps events (default: [lake] raw_retention_days; 365 when that is 0, forever).",
        ),
    ] = None,
    queries_per_day: Annotated[
        float, typer.Option("--queries-per-day", "-q", help="Athena queries a day.")
    ] = 100.0,
    query_days: Annotated[
        float, typer.Option("--query-days", help="Days of data a typical query reads.")
    ] = 1.0,
    peak: Annotated[
        float | None,
        typer.Option(
            "--peak-events-per-second", help="Peak events/s the shards take (default: the mean)."
        ),
    ] = None,
    store_writes: Annotated[
        float, typer.Option("--store-writes-per-second", help="DynamoDB writes/s of the pipelines.")
    ] = 0.0,
    store_reads: Annotated[
        float, typer.Option("--store-reads-per-second", help="DynamoDB reads/s (API, dashboards).")
    ] = 0.0,
    flink_applications: Annotated[
        int | None,
        typer.Option(
            "--flink-applications",
            help="Managed Flink applications (default: one per pipeline in pipelines/).",
        ),
    ] = None,
    compression: Annotated[
        float, typer.Option("--compression-ratio", help="JSON bytes ÷ Parquet bytes of the events.")
    ] = ALL_OPTIMIZATIONS.parquet_compression_ratio,
    from_up: Annotated[
        str | None,
        typer.Option(
            "--from-up",
            help="Measure events/s, bytes/event, queries/day and store writes/s from a running "
            "`fluvial up` (its base URL, e.g. http://127.0.0.1:8765).",
        ),
    ] = None,
    sample_seconds: Annotated[
        float, typer.Option("--sample-seconds", help="--from-up: seconds between the two scrapes.")
    ] = 10.0,
    project_dir: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """The monthly cost of the equivalent AWS deployment, by service, and what each optimization saves."""
    project = open_project(project_dir)
    s = project.settings
    inv = inventory(project)
    measured = None
    if from_up is not None:
        store_jobs = [p.name for p in inv.pipelines if p.writes_store]
        measured = measure(
            from_up, sample_seconds, events_topic=s.log.events_topic, store_jobs=store_jobs
        )
    rate = events_per_second
    if rate is None:
        rate = measured.events_per_second if measured else s.aws.peak_events_per_second
    size = event_bytes or (measured.event_bytes if measured and measured.event_bytes else None)
    days = retention_days or (float(s.lake.raw_retention_days) or FOREVER_AS_DAYS)
    workload = Workload(
        events_per_second=rate,
        event_bytes=size or s.aws.event_bytes,
        retention_days=days,
        queries_per_day=measured.queries_per_day if measured and from_up else queries_per_day,
        query_days=query_days,
        peak_events_per_second=peak,
        streams=len(inv.streams),
        stream_retention_hours=inv.streams[0].retention_hours,
        commit_seconds=s.lake.buffer_seconds,
        flink_applications=len(inv.pipelines) if flink_applications is None else flink_applications,
        store_writes_per_second=measured.store_writes_per_second if measured else store_writes,
        store_reads_per_second=store_reads,
    )
    opt: Optimizations = replace(ALL_OPTIMIZATIONS, parquet_compression_ratio=compression)
    breakdown = estimate(workload, opt)
    saved = savings(workload, opt)
    if as_json:
        doc: dict[str, Any] = breakdown.to_dict()
        doc["savings_usd"] = {k: round(v, 2) for k, v in saved.items()}
        if measured is not None:
            doc["measured"] = {
                "seconds": measured.seconds,
                "events_per_second": measured.events_per_second,
                "event_bytes": measured.event_bytes,
                "queries_per_day": measured.queries_per_day,
                "store_writes_per_second": measured.store_writes_per_second,
            }
        print_json(doc)
        return
    _show(breakdown, saved, measured)
