"""``fluvial demo``: the platform end to end on embedded defaults (what ``make demo`` runs).

Today that is the ingestion layer: a project, a write key, a real collector on loopback,
a simulated shop's clickstream posted to it (with late, duplicate and malformed events),
and a look at what landed in the event log — queried with DuckDB straight from Arrow.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fluvial.cli._common import JsonOpt, console, print_json, print_rows
from fluvial.errors import FluvialError
from fluvial.project import Project

__all__ = ["register", "run_demo"]


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class _Collector:
    """A collector served by uvicorn in a background thread (stopped like on SIGTERM)."""

    def __init__(self, project: Project, host: str, port: int) -> None:
        import uvicorn

        from fluvial.collector.app import create_app
        from fluvial.collector.server import uvicorn_config

        self.url = f"http://{host}:{port}"
        self.log = project.open_log()
        app = create_app(project, log=self.log)
        self.server = uvicorn.Server(uvicorn_config(app, host, port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="collector", daemon=True)

    def __enter__(self) -> _Collector:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise FluvialError(f"the demo collector did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True  # drains requests in flight, then the ingest workers
        self.thread.join(timeout=60)
        self.log.close()


SUMMARY_SQL = {
    "events by type": """
        SELECT event_type, count(*) AS events, count(DISTINCT anonymous_id) AS devices,
               count(DISTINCT user_id) AS users
        FROM events GROUP BY event_type ORDER BY events DESC""",
    "top pages": """
        SELECT regexp_replace(page.url, '\\?.*$', '') AS page, count(*) AS views
        FROM events WHERE event_type = 'page_view' GROUP BY page ORDER BY views DESC LIMIT 5""",
    "failed events by reason": """
        SELECT reason, count(*) AS events, any_value(error) AS example
        FROM events_failed GROUP BY reason ORDER BY events DESC""",
    "events per day": """
        SELECT CAST(event_time AS DATE) AS day, count(*) AS events,
               count(*) FILTER (WHERE list_contains(flags, 'future_time')) AS future_flagged
        FROM events GROUP BY day ORDER BY day""",
}


DEMO_PIPELINE = "page_views_per_minute.sql"


def _run_stream_pipeline(project: Project, *, quiet: bool) -> dict[str, Any]:
    """Write the example pipelines into the project and run one over the events topic."""
    import duckdb

    from fluvial.examples import example_pipelines
    from fluvial.stream.job import load_job
    from fluvial.stream.runtime import run_job

    folder = project.root / "pipelines"
    for name, text in example_pipelines("clickstream").items():
        if not (folder / name).exists():
            (folder / name).write_text(text, encoding="utf-8")
    job = load_job(folder / DEMO_PIPELINE, defaults=project.settings.stream.flink_options())
    result = run_job(job, project=project, until_idle=True)
    stats = result.pipelines[0]
    out = project.root / job.pipelines[0].sink.table.options["path"]
    busiest = []
    if any(out.glob("*.parquet")):
        cursor = duckdb.connect().execute(
            f"""SELECT strftime(window_start, '%Y-%m-%d %H:%M') AS minute, url, views, visitors
                FROM read_parquet('{out}/*.parquet') ORDER BY views DESC, minute, url LIMIT 5"""
        )
        names = [d[0] for d in cursor.description]
        busiest = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    if not quiet:
        console.print(
            f"stream pipeline {DEMO_PIPELINE}: {stats.rows_in:,} events in, "
            f"{stats.rows_out:,} page-minute rows out, {stats.late_rows:,} late"
        )
    return {
        "pipeline": DEMO_PIPELINE,
        "rows_in": stats.rows_in,
        "rows_out": stats.rows_out,
        "late_rows": stats.late_rows,
        "busiest_minutes": busiest,
    }


def run_demo(
    root: Path, *, events: int, seed: int, reset: bool, quiet: bool = False
) -> dict[str, Any]:
    """Run the demo in *root*; return what happened (also printed unless *quiet*)."""
    import duckdb

    from fluvial.collector.keys import KeyStore
    from fluvial.generate import ClickstreamConfig, clickstream_batches
    from fluvial.generate.sinks import post_to_collector

    project = Project.init(root, exist_ok=True)
    if reset and (project.root / project.settings.project.data_dir).exists():
        shutil.rmtree(project.root / project.settings.project.data_dir)
    _, secret = KeyStore.for_project(project).create("demo")
    host = "127.0.0.1"
    config = ClickstreamConfig(
        events=events,
        seed=seed,
        users=max(50, events // 40),
        days=3.0,
        late_fraction=0.02,
        duplicate_fraction=0.01,
        invalid_fraction=0.01,
        app_id="demo",
    )
    with _Collector(project, host, _free_port(host)) as collector:
        if not quiet:
            console.print(
                f"[bold]Fluvial demo[/] in {project.root}: collector on {collector.url}, "
                f"posting {events:,} clickstream events"
            )
        progress = Progress(
            TextColumn("posting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=quiet,
        )
        with progress:
            task = progress.add_task("posting", total=events)
            delivery = post_to_collector(
                clickstream_batches(config),
                collector.url,
                secret,
                batch_size=100,
                concurrency=4,
                progress=lambda n: progress.advance(task, n),
            )
    stream = _run_stream_pipeline(project, quiet=quiet)
    with project.open_log() as log:
        topics: list[dict[str, Any]] = [
            {
                "topic": t.name,
                "partitions": t.num_partitions,
                "records": t.records,
                "bytes": t.bytes,
            }
            for t in log.list_topics()
        ]
        db = duckdb.connect()
        db.register("events", log.snapshot(project.settings.log.events_topic))
        db.register("events_failed", log.snapshot(project.settings.log.failed_topic))
        results = {}
        for title, sql in SUMMARY_SQL.items():
            cursor = db.execute(sql)
            names = [d[0] for d in cursor.description]
            results[title] = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    summary = {
        "project": str(project.root),
        "sent": delivery.sent,
        "accepted": delivery.accepted,
        "rejected": delivery.rejected,
        "seconds": round(delivery.seconds, 2),
        "events_per_second": round(delivery.rate),
        "topics": topics,
        "queries": results,
        "stream": stream,
    }
    stored = sum(int(t["records"]) for t in topics)
    if stored != delivery.sent:  # every event ends in exactly one place
        raise FluvialError(f"the demo sent {delivery.sent} events but the log holds {stored}")
    if not quiet:
        console.print(
            f"sent {delivery.sent:,} events in {delivery.seconds:.1f} s "
            f"({delivery.rate:,.0f}/s): {delivery.accepted:,} accepted, "
            f"{delivery.rejected:,} rejected with their reason — every one stored exactly once"
        )
        print_rows(
            topics, ["topic", "partitions", "records", "bytes"], as_json=False, title="event log"
        )
        for title, rows in results.items():
            print_rows(rows, list(rows[0]) if rows else [], as_json=False, title=title)
        print_rows(
            stream["busiest_minutes"],
            list(stream["busiest_minutes"][0]) if stream["busiest_minutes"] else [],
            as_json=False,
            title=f"stream pipeline {DEMO_PIPELINE}: busiest page-minutes",
        )
        console.print(
            "next: [bold]fluvial log tail events --project "
            f"{root} --limit 3[/], [bold]fluvial collect --project {root}[/]"
        )
    return summary


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        project: Annotated[
            Path,
            typer.Option(
                "--project", "-p", help="Folder for the demo project (created if missing)."
            ),
        ] = Path(".demo"),
        events: Annotated[
            int, typer.Option("--events", "-n", min=1, help="Events to post.")
        ] = 50_000,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated shop.")] = 7,
        keep: Annotated[
            bool,
            typer.Option("--keep", help="Keep the data of earlier runs (default: start afresh)."),
        ] = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Run the platform end to end on embedded defaults: collect, log, query."""
        summary = run_demo(project, events=events, seed=seed, reset=not keep, quiet=as_json)
        if as_json:
            print_json(summary)
