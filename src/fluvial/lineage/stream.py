"""Run events of stream jobs: source tables → sink tables, with column lineage from the SQL.

A planned :class:`~fluvial.stream.plan.nodes.Job` says which tables each pipeline reads and
writes; its pipeline file (the Flink SQL) says how each sink column is computed. Window
table functions (``TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), …))``) are traced as their
input table plus ``window_start`` / ``window_end`` / ``window_time`` computed from the time
column; views are traced through.

A stream table is a dataset named after what its connector reads or writes:

==============  ==========================================
connector       dataset (namespace, name)
==============  ==========================================
``fluvial``     (project, ``log.<topic>``) — a log topic
``store``       (project, ``store.<table>``)
``filesystem``  (``file``, the path)
other           (project, ``<connector>.<table name>``)
==============  ==========================================

>>> from fluvial.stream.job import plan_text
>>> text = '''
... CREATE TABLE clicks (user_id BIGINT, url STRING, ts TIMESTAMP(3),
...   WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH ('connector' = 'fluvial', 'topic' = 'events');
... CREATE TABLE per_user (user_id BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
... INSERT INTO per_user SELECT user_id, COUNT(url) FROM clicks GROUP BY user_id;'''
>>> run = stream_events(plan_text(text, name="users"), text)
>>> start = run.start()
>>> [d["name"] for d in start["inputs"]], [d["name"] for d in start["outputs"]]
(['log.events'], ['blackhole.per_user'])
>>> fields = start["outputs"][0]["facets"]["columnLineage"]["fields"]
>>> [(f["field"], f["transformations"][0]["subtype"]) for f in fields["n"]["inputFields"]]
[('url', 'AGGREGATION')]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from sqlglot import exp

from fluvial.errors import SqlError
from fluvial.lineage.columns import column_lineage
from fluvial.lineage.events import (
    DEFAULT_NAMESPACE,
    EventType,
    RunEvent,
    build_event,
    column_lineage_facet,
    dataset,
    extraction_error,
    facet,
    new_run_id,
    schema_facet,
)
from fluvial.stream.plan.nodes import Job, Scan
from fluvial.stream.sql import parse_script
from fluvial.stream.sql.ast import CreateTable, Script, WindowTVF
from fluvial.stream.sql.dialect import Flink

__all__ = ["StreamRun", "stream_dataset", "stream_events", "topic_dataset"]

WINDOW_COLUMNS = ("window_start", "window_end", "window_time")


def topic_dataset(topic: str) -> str:
    """The dataset name of an event log topic (``events`` → ``log.events``)."""
    return f"log.{topic}"


def stream_dataset(table: CreateTable, namespace: str = DEFAULT_NAMESPACE) -> tuple[str, str]:
    """The (namespace, name) of the dataset a stream table reads or writes."""
    options = {k.lower(): v for k, v in table.options.items()}
    connector = options.get("connector", "").lower()
    if connector == "fluvial" and options.get("topic"):
        return namespace, topic_dataset(options["topic"])
    if connector == "store" and options.get("table"):
        return namespace, f"store.{options['table']}"
    if connector == "filesystem" and options.get("path"):
        return "file", options["path"]
    return namespace, f"{connector or 'table'}.{table.name}"


class StreamRun:
    """One run of a stream job: its ``START``, ``RUNNING``, ``COMPLETE`` and ``FAIL`` events.

    Every event carries the same run id, datasets and facets (computed once).
    """

    def __init__(
        self,
        job: Job,
        script: str | Script | None = None,
        *,
        run_id: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        self.job = job
        self.run_id = run_id or new_run_id()
        self.namespace = namespace
        if isinstance(script, str):
            script = parse_script(script, source=job.name)
        self.script = script
        sources: dict[tuple[str, str], CreateTable] = {}
        sinks: dict[tuple[str, str], CreateTable] = {}
        for pipeline in job.pipelines:
            for table in _scanned_tables(pipeline.scan):
                sources.setdefault(stream_dataset(table, namespace), table)
            sinks.setdefault(stream_dataset(pipeline.sink.table, namespace), pipeline.sink.table)
        self.inputs = sources
        self.outputs = sinks
        self.run_facets: dict[str, Any] = {}
        self.column_facets: dict[tuple[str, str], dict[str, Any]] = {}
        self.job_facets: dict[str, Any] = {
            "jobType": facet(
                "jobType", processingType="STREAMING", integration="FLUVIAL", jobType="PIPELINE"
            )
        }
        if script is not None:
            inserts = "\n".join(_insert_sql(s) for s in script.inserts)
            if inserts:
                self.job_facets["sql"] = facet("sql", query=script.text or inserts, dialect="flink")
            self._trace(script)

    # events ----------------------------------------------------------------
    def start(self) -> RunEvent:
        """The ``START`` event."""
        return self.event("START")

    def running(self) -> RunEvent:
        """A ``RUNNING`` event (e.g. at a checkpoint)."""
        return self.event("RUNNING")

    def complete(self) -> RunEvent:
        """The ``COMPLETE`` event (a bounded job finished, or the job was stopped cleanly)."""
        return self.event("COMPLETE")

    def fail(self, error: str) -> RunEvent:
        """The ``FAIL`` event, with the error."""
        return self.event("FAIL", error)

    def event(self, event_type: EventType, error: str | None = None) -> RunEvent:
        """An event of this run."""
        run_facets = dict(self.run_facets)
        if error is not None:
            run_facets["errorMessage"] = facet(
                "errorMessage", message=error, programmingLanguage="PYTHON"
            )
        return build_event(
            event_type,
            self.run_id,
            job=(self.namespace, self.job.name),
            job_facets=self.job_facets,
            run_facets=run_facets,
            inputs=[
                dataset(*key, {"schema": schema_facet(t.physical_schema())})
                for key, t in self.inputs.items()
            ],
            outputs=[
                dataset(
                    *key,
                    {
                        "schema": schema_facet(t.physical_schema()),
                        **(
                            {"columnLineage": self.column_facets[key]}
                            if key in self.column_facets
                            else {}
                        ),
                    },
                )
                for key, t in self.outputs.items()
            ],
        )

    # column lineage --------------------------------------------------------
    def _trace(self, script: Script) -> None:
        tables = script.tables
        names = {name: stream_dataset(t, self.namespace) for name, t in tables.items()}
        schemas = {name: [c.name for c in t.columns] for name, t in tables.items()}
        views = {name: _untvf(v.query) for name, v in script.views.items()}
        merged: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
        errors: list[dict[str, Any]] = []
        for number, insert in enumerate(script.inserts):
            sink = tables.get(insert.table)
            if sink is None:
                continue
            targets = list(insert.columns) or [c.name for c in sink.physical]
            try:
                cols = column_lineage(
                    _untvf(insert.query),
                    dialect=Flink,
                    schemas=schemas,
                    sources=views,
                    output_columns=targets,
                )
            except SqlError as exc:
                errors.append(
                    {"errorMessage": str(exc), "task": insert.table, "taskNumber": number}
                )
                continue
            fields = column_lineage_facet(cols, names)["fields"]
            out = merged.setdefault(names[sink.name], {})
            for column, spec in fields.items():
                items = out.setdefault(column, [])
                items.extend(i for i in spec["inputFields"] if i not in items)
        for key, fields in merged.items():
            self.column_facets[key] = facet(
                "columnLineage", fields={c: {"inputFields": v} for c, v in fields.items()}
            )
        if errors:
            err = extraction_error(errors[0]["errorMessage"], errors[0]["task"])
            err.update(totalTasks=len(script.inserts), failedTasks=len(errors), errors=errors)
            self.run_facets["extractionError"] = err


def stream_events(
    job: Job,
    script: str | Script | None = None,
    *,
    run_id: str | None = None,
    namespace: str = DEFAULT_NAMESPACE,
) -> StreamRun:
    """The run events of a planned stream *job*; *script* (its Flink SQL) adds column lineage.

    ``run = stream_events(job, text)``, then ``emit(project, run.start())`` when it starts
    and ``emit(project, run.complete())`` or ``emit(project, run.fail(str(exc)))`` at its end.
    """
    return StreamRun(job, script, run_id=run_id, namespace=namespace)


def _scanned_tables(node: Any) -> Iterator[CreateTable]:
    """Every source table below a plan node (a scan, or the inputs of a join or union)."""
    if isinstance(node, Scan):
        yield node.table
        return
    if isinstance(node, tuple | list):
        for item in node:
            yield from _scanned_tables(item)
        return
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            yield from _scanned_tables(getattr(node, f.name))


def _insert_sql(insert: Any) -> str:
    return f"INSERT INTO {insert.table} {_untvf(insert.query).sql(dialect=Flink)}"


def _untvf(query: exp.Expr) -> exp.Expr:
    """*query* with each window TVF replaced by its input and the window columns, which are
    computed from the time column."""

    def replace(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, WindowTVF):
            return node
        inner = node.this
        time_col = exp.column(str(node.args["time_col"]))
        kind = str(node.args["kind"])
        select = exp.select(
            exp.Star(),
            *(
                exp.alias_(exp.Anonymous(this=kind, expressions=[time_col.copy()]), name)
                for name in WINDOW_COLUMNS
            ),
        ).from_(inner.copy())
        alias = node.args.get("alias") or (inner.name if isinstance(inner, exp.Table) else "w")
        return exp.Subquery(this=select, alias=exp.TableAlias(this=exp.to_identifier(alias)))

    return query.transform(replace)
