"""``fluvial demo``: the whole platform on embedded defaults (what ``make demo`` runs).

It writes the clickstream example project (``fluvial init --example clickstream``: stream
pipelines, batch models, quality rules), issues a write key, starts everything as
``fluvial up`` does (web server, every pipeline, the archiver, the schedules, the alert
evaluator — each a supervised subprocess), drives the clickstream generator against the
collector over HTTP at a steady rate, and prints the dashboard URL. Then it keeps a
trickle of live traffic flowing (``LIVE_RATE`` events per second, timed now) until Ctrl-C,
so the stream pipelines' watermarks keep moving and the live dashboard's windows keep
closing: the example pipelines count the collector's skew-corrected time, which is when
the demo posts, not the simulated days.

With ``--exit`` it runs to completion instead of until Ctrl-C: once the pipelines and the
archiver have caught up, it stops every worker gracefully, drains every stream job (as
Flink's ``stop --drain``: from its last checkpoint to the end of its input, so every open
window fires, exactly once; :func:`drain_pipelines`), builds the batch models (with their
quality rules), runs the reconciliation when available, and prints a summary —
events accepted and failed, what the pipelines read and wrote, the tables built, the
quality checks — and ``--json`` prints it for machines.
"""

from __future__ import annotations

import inspect
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fluvial.cli._common import JsonOpt, console, err_console, print_json, print_rows
from fluvial.errors import FluvialError
from fluvial.project import Project

if TYPE_CHECKING:
    from fluvial.generate import ClickstreamConfig

__all__ = ["demo_traffic", "register", "run_demo"]

EXAMPLE = "clickstream"
#: the demo's workers commit to the lake within seconds (the default buffers a minute)
DEMO_ENV = {"FLUVIAL_LAKE__BUFFER_SECONDS": "2"}
CATCH_UP_SECONDS = 90.0
#: events per second the demo keeps posting after its backlog, until Ctrl-C
LIVE_RATE = 20.0
LIVE_ROUND = 200  # events per round of live traffic
RECONCILE_COLUMNS = (
    *("metric", "status", "start", "end", "periods", "rows", "matching"),
    *("late", "after_batch", "unexplained", "late_events"),
)

SUMMARY_SQL = {
    "events by type": """
        SELECT event_type, count(*) AS events, count(DISTINCT anonymous_id) AS devices,
               count(DISTINCT user_id) AS users
        FROM events GROUP BY event_type ORDER BY events DESC""",
    "failed events by reason": """
        SELECT reason, count(*) AS events, any_value(error) AS example
        FROM events_failed GROUP BY reason ORDER BY events DESC""",
}


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def create_example(root: Path, *, reset: bool) -> Project:
    """The clickstream example project in *root* (its data removed first with *reset*)."""
    if "example" in inspect.signature(Project.init).parameters:
        project = Project.init(root, exist_ok=True, example=EXAMPLE)
    else:  # before `fluvial init --example`: the packaged pipelines
        from fluvial.examples import example_pipelines

        project = Project.init(root, exist_ok=True)
        for name, text in example_pipelines(EXAMPLE).items():
            if not (project.root / "pipelines" / name).exists():
                (project.root / "pipelines" / name).write_text(text, encoding="utf-8")
    data = project.root / project.settings.project.data_dir
    if reset and data.exists():
        shutil.rmtree(data)
    for name in ("out",):  # file sinks of the example pipelines write under data/out
        (data / name).mkdir(parents=True, exist_ok=True)
    return project


def _wait_healthy(url: str, stop: threading.Event, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        try:
            if httpx.get(url + "/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        stop.wait(0.2)
    if not stop.is_set():
        raise FluvialError(f"the web server did not answer on {url}/healthz in {timeout:g} s")


def _log_counts(project: Project) -> dict[str, int]:
    with project.open_log() as log:
        return {t.name: t.records for t in log.list_topics()}


def _pipelines(project: Project) -> list[dict[str, Any]]:
    from fluvial.stream.status import job_status, list_jobs

    stream_dir = project.data_dir / "stream"
    return [row for job in list_jobs(stream_dir) for row in job_status(stream_dir / job)]


def _lake_counts(project: Project) -> dict[str, int]:
    from fluvial.lake.catalog import open_lake

    counts: dict[str, int] = {}
    with open_lake(project) as lake:
        for name in lake.tables():
            snap = lake.table(name).current_snapshot()
            summary = snap.summary if snap is not None else None
            counts[name] = int((summary and summary["total-records"]) or 0)
    return counts


def _caught_up(project: Project, stop: threading.Event, say: Callable[[str], None]) -> bool:
    """Wait until every pipeline has read the events topic and the archiver has committed
    both topics to the lake (or a pipeline stays idle: it reads less than everything)."""
    names = project.settings.log
    want = _log_counts(project)
    events = want.get(names.events_topic, 0)
    archive = {
        "raw.events": events,
        "raw.events_failed": want.get(names.failed_topic, 0),
    }
    deadline = time.monotonic() + CATCH_UP_SECONDS
    seen: dict[tuple[str, str], tuple[int, float]] = {}
    while time.monotonic() < deadline and not stop.is_set():
        now = time.monotonic()
        pending = []
        for row in _pipelines(project):
            key = (row["job"], row["pipeline"])
            rows_in = int(row["rows_in"] or 0)
            last, since = seen.get(key, (-1, now))
            if rows_in != last:
                seen[key] = (rows_in, now)
                since = now
            if rows_in < events and not (rows_in > 0 and now - since > 5.0):
                pending.append(row["job"])
        lake = _lake_counts(project) if project.settings.up.archive else archive
        behind = [t for t, n in archive.items() if lake.get(t, 0) < n]
        if not pending and not behind:
            return True
        stop.wait(0.5)
    say("warning: the pipelines or the archiver did not catch up in time")
    return False


def drain_pipelines(project: Project) -> list[str]:
    """End every pipeline's job at the end of its input, as Flink's ``stop --drain`` does.

    Each job (the Kappa version its readers currently read) resumes from its newest
    checkpoint and runs until idle: it reads what its worker had not consumed yet, then
    its watermark goes to +∞, every open window fires and a last checkpoint commits the
    rows to the sinks exactly once. Run only once the job's worker has stopped. Returns
    the jobs drained (a job without a checkpoint has nothing to resume and is skipped).
    """
    from fluvial.stream.runtime import latest_checkpoint, run_job
    from fluvial.stream.versions import resolve_job

    drained = []
    for file in sorted((project.root / "pipelines").glob("*.sql")):
        job = resolve_job(project, file)
        if latest_checkpoint(project, job.name) is None:
            continue
        run_job(job, project=project, until_idle=True, from_checkpoint=True)
        drained.append(job.name)
    return drained


def _run_batch(project: Project) -> dict[str, Any] | None:
    """``fluvial batch run --json`` as a subprocess (its models and quality rules)."""
    from fluvial.batch import discover

    if not discover(project.root / project.settings.batch.models_dir):
        return None
    try:
        from fluvial.examples.clickstream import load_catalogue

        load_catalogue(project)  # the product catalogue feed that dim_products reads
    except (ImportError, FluvialError):
        pass
    done = subprocess.run(
        [sys.executable, "-m", "fluvial", "batch", "run", "--json", "--project", str(project.root)],
        capture_output=True,
        text=True,
        cwd=project.root,
        check=False,
    )
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return {"status": "failed", "error": (done.stderr or done.stdout).strip()[-2000:]}
    return result


def _quality(project: Project) -> list[dict[str, Any]]:
    from fluvial.quality.history import open_history

    return open_history(project).latest()


def _reconcile(project: Project) -> Any:
    """The Lambda reconciliation (batch view against speed view), when it is installed."""
    import importlib

    try:
        module = importlib.import_module("fluvial.serve.reconcile")
    except ImportError:
        return None
    call = getattr(module, "reconcile", None)
    if call is None:
        return None
    try:
        result = call(project)
    except FluvialError as exc:
        return {"error": str(exc)}
    for name in ("as_dict", "to_dict"):
        if hasattr(result, name):
            return getattr(result, name)()
    return result


def _queries(project: Project) -> dict[str, list[dict[str, Any]]]:
    import duckdb

    names = project.settings.log
    results: dict[str, list[dict[str, Any]]] = {}
    with project.open_log() as log:
        db = duckdb.connect()
        db.register("events", log.snapshot(names.events_topic))
        db.register("events_failed", log.snapshot(names.failed_topic))
        for title, sql in SUMMARY_SQL.items():
            cursor = db.execute(sql)
            cols = [d[0] for d in cursor.description]
            results[title] = [dict(zip(cols, row, strict=True)) for row in cursor.fetchall()]
    return results


def _admin_key_file(project: Project) -> Path:
    """Where the bootstrap admin's API key is (created now if the project has no admin):
    the dashboard and the API ask for it."""
    from fluvial.govern.principals import open_principals

    store = open_principals(project)
    store.bootstrap()
    assert store.key_file is not None
    return store.key_file


def demo_traffic(events: int, seed: int = 7, *, start_ms: int | None = None) -> ClickstreamConfig:
    """The simulated shop traffic the demo posts: *events* events over the last three days
    (from *start_ms*, by default three days ago), with late, duplicate and invalid ones.

    >>> demo_traffic(2000).late_fraction
    0.02
    """
    from fluvial.generate import ClickstreamConfig

    return ClickstreamConfig(
        events=events,
        seed=seed,
        users=max(50, events // 40),
        days=3.0,
        start_ms=start_ms,
        late_fraction=0.02,
        duplicate_fraction=0.01,
        invalid_fraction=0.01,
        app_id="demo",
    )


def _keep_live(
    url: str, secret: str, seed: int, stop: threading.Event, say: Callable[[str], None]
) -> None:
    """Post rounds of fresh shop traffic, timed now, at ``LIVE_RATE`` until *stop* is set."""
    from dataclasses import replace

    from fluvial.generate import clickstream_batches
    from fluvial.generate.sinks import post_to_collector

    span_ms = round(LIVE_ROUND / LIVE_RATE * 1000)
    round_no = 0
    while not stop.is_set():
        round_no += 1
        now = int(time.time() * 1000)
        config = replace(
            demo_traffic(LIVE_ROUND, seed + round_no, start_ms=now - span_ms),
            days=span_ms / 86_400_000,
        )
        try:
            post_to_collector(
                clickstream_batches(config),
                url,
                secret,
                batch_size=20,
                concurrency=1,
                rate=LIVE_RATE,
            )
        except FluvialError as exc:  # the web server restarting, or stopping
            if not stop.is_set():
                say(f"live traffic: {exc}")
                stop.wait(1.0)


def run_demo(
    root: Path,
    *,
    events: int,
    rate: float,
    seed: int = 7,
    reset: bool = True,
    exit_when_done: bool = False,
    quiet: bool = False,
    port: int | None = None,
) -> dict[str, Any] | None:
    """Run the demo in *root*: until Ctrl-C, or with *exit_when_done* to completion (then
    the summary is returned, and printed unless *quiet*)."""
    from fluvial.collector.keys import KeyStore
    from fluvial.generate import clickstream_batches
    from fluvial.generate.sinks import post_to_collector
    from fluvial.up import build_supervisor

    def say(message: str) -> None:
        if not quiet:
            err_console.print(message, highlight=False, markup=False)

    project = create_example(root, reset=reset)
    _, secret = KeyStore.for_project(project).create("demo")
    admin_key = _admin_key_file(project)
    host = "127.0.0.1"
    port = port or _free_port(host)
    supervisor = build_supervisor(project, host=host, port=port, env=DEMO_ENV, on_event=say)
    url = str(supervisor.info["url"])
    config = demo_traffic(events, seed)
    outcome: dict[str, Any] = {}
    failure: list[BaseException] = []
    stop = supervisor.stop_event
    finished = threading.Event()

    def drive() -> None:
        try:
            _wait_healthy(url, stop)
            if stop.is_set():
                return
            if not quiet:
                console.print(
                    f"[bold]Fluvial demo[/] in {project.root}: dashboard [bold]{url}/[/], "
                    f"API {url}/api/docs, metrics {url}/metrics; posting {events:,} events"
                    + (f" at {rate:,.0f}/s" if rate > 0 else "")
                    + f"\nsign in with the admin API key in {admin_key}",
                    highlight=False,
                )
            delivery = post_to_collector(
                clickstream_batches(config), url, secret, batch_size=100, concurrency=4, rate=rate
            )
            outcome["delivery"] = delivery
            say(
                f"posted {delivery.sent:,} events in {delivery.seconds:.1f} s: "
                f"{delivery.accepted:,} accepted, {delivery.rejected:,} rejected"
            )
            if not exit_when_done:
                say(
                    f"the platform keeps running with live traffic ({LIVE_RATE:g} events/s): "
                    "Ctrl-C stops it"
                )
                _keep_live(url, secret, seed, stop, say)
                return
            outcome["caught_up"] = _caught_up(project, stop, say)
        except BaseException as exc:
            failure.append(exc)
        finally:
            if exit_when_done or failure:
                finished.set()

    driver = threading.Thread(target=drive, name="demo-driver", daemon=True)
    supervisor.start()
    driver.start()
    supervisor.run(until=finished.is_set)
    driver.join(timeout=5)
    if failure:
        raise failure[0]
    if not exit_when_done or "delivery" not in outcome:
        return None
    # every worker has stopped gracefully (each pipeline took a last checkpoint): end the
    # stream jobs as a bounded run would, so every open window fires, then build the batch
    say("draining the stream pipelines: every open window fires")
    outcome["drained"] = drain_pipelines(project)
    say("building the batch models")
    outcome["batch"] = _run_batch(project)
    outcome["reconcile"] = _reconcile(project)
    summary = _summary(project, url, outcome, supervisor.snapshot())
    if not quiet:
        _print_summary(summary)
    return summary


def _summary(
    project: Project, url: str, outcome: dict[str, Any], status: dict[str, Any]
) -> dict[str, Any]:
    delivery = outcome["delivery"]
    counts = _log_counts(project)
    names = project.settings.log
    stored = counts.get(names.events_topic, 0) + counts.get(names.failed_topic, 0)
    if stored != delivery.sent:  # every event ends in exactly one place
        raise FluvialError(f"the demo sent {delivery.sent} events but the log holds {stored}")
    batch = outcome.get("batch")
    return {
        "project": str(project.root),
        "url": url,
        "sent": delivery.sent,
        "accepted": delivery.accepted,
        "rejected": delivery.rejected,
        "seconds": round(delivery.seconds, 2),
        "events_per_second": round(delivery.rate),
        "caught_up": outcome.get("caught_up", False),
        "drained": outcome.get("drained", []),
        "topics": [{"topic": k, "records": v} for k, v in sorted(counts.items())],
        "queries": _queries(project),
        "pipelines": [
            {
                k: row[k]
                for k in ("job", "pipeline", "sink", "state", "rows_in", "rows_out", "late_rows")
            }
            for row in _pipelines(project)
        ],
        "lake": _lake_counts(project),
        "batch": batch,
        "quality": _quality(project),
        "reconcile": outcome.get("reconcile"),
        "workers": [
            {k: w[k] for k in ("name", "kind", "state", "restarts", "last_exit_code")}
            for w in status["workers"]
        ],
    }


def _print_summary(summary: dict[str, Any]) -> None:
    console.print(
        f"sent {summary['sent']:,} events ({summary['events_per_second']:,}/s): "
        f"{summary['accepted']:,} accepted, {summary['rejected']:,} failed with their reason "
        "— every one stored exactly once",
        highlight=False,
    )
    print_rows(
        summary["pipelines"],
        ["job", "pipeline", "state", "rows_in", "rows_out", "late_rows"],
        as_json=False,
        title="stream pipelines",
    )
    lake = [{"table": k, "records": v} for k, v in summary["lake"].items()]
    print_rows(lake, ["table", "records"], as_json=False, title="lake tables")
    batch = summary["batch"]
    if batch is not None:
        print_rows(
            batch.get("models", []),
            ["model", "status", "rows_written"],
            as_json=False,
            title=f"batch run: {batch.get('status')}",
        )
        if batch.get("error"):
            console.print(f"batch run failed: {batch['error']}", highlight=False, markup=False)
    if summary["quality"]:
        print_rows(
            summary["quality"],
            ["table_name", "passed", "row_count", "failing_rows", "errors", "warnings"],
            as_json=False,
            title="quality checks",
        )
    reconciled = summary["reconcile"]
    if isinstance(reconciled, dict) and "metrics" in reconciled:
        print_rows(
            reconciled["metrics"],
            RECONCILE_COLUMNS,
            as_json=False,
            title="Lambda reconciliation (speed layer against batch layer): "
            + ("ok" if reconciled.get("ok") else "unexplained drift"),
        )
        if not reconciled["metrics"]:
            console.print(f"reconciliation: {reconciled.get('note') or 'no metrics'}")
    elif reconciled is not None:
        console.print(f"reconciliation: {reconciled}", highlight=False, markup=False)
    console.print(
        f"next: [bold]fluvial up --project {summary['project']}[/] and open {summary['url']}/",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        directory: Annotated[
            Path | None,
            typer.Argument(help="Folder for the demo project (created if missing; default .demo)."),
        ] = None,
        project: Annotated[
            Path | None,
            typer.Option("--project", "-p", help="Same as DIR.", hidden=True),
        ] = None,
        events: Annotated[
            int, typer.Option("--events", "-n", min=1, help="Events to post.")
        ] = 50_000,
        rate: Annotated[
            float,
            typer.Option("--rate", "-r", min=0, help="Events per second (0: as fast as possible)."),
        ] = 2_000.0,
        exit_: Annotated[
            bool,
            typer.Option(
                "--exit", help="Run to completion, print a summary and stop (default: run on)."
            ),
        ] = False,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated shop.")] = 7,
        keep: Annotated[
            bool,
            typer.Option("--keep", help="Keep the data of earlier runs (default: start afresh)."),
        ] = False,
        port: Annotated[
            int | None, typer.Option("--port", help="Port of the web server (default: a free one).")
        ] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Run the whole platform on the clickstream example: pipelines, lake, batch, UI."""
        root = directory or project or Path(".demo")
        summary = run_demo(
            root,
            events=events,
            rate=rate,
            seed=seed,
            reset=not keep,
            exit_when_done=exit_,
            quiet=as_json,
            port=port,
        )
        if as_json and summary is not None:
            print_json(summary)
