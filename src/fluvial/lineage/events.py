"""OpenLineage run events (spec 2-0-2): jobs, runs, datasets and their facets, as JSON.

A run of a job (a batch model, a stream pipeline file) reports ``START`` and then
``COMPLETE`` or ``FAIL``, with the datasets it reads and writes. Datasets carry a ``schema``
facet; outputs a ``columnLineage`` facet computed from the job's SQL; the job a ``sql``
facet; a failed run an ``errorMessage`` facet. When the SQL cannot be traced the event is
still sent, with an ``extractionError`` run facet saying why.

>>> event = run_event(
...     "COMPLETE", "curated.revenue", "01890a5d-ac96-774b-bcce-b302099a8057",
...     inputs=["refined.orders"], outputs=["curated.revenue"],
...     sql="SELECT day, sum(amount) AS revenue FROM refined.orders GROUP BY day",
... )
>>> event["eventType"], event["job"]["name"], event["inputs"][0]["name"]
('COMPLETE', 'curated.revenue', 'refined.orders')
>>> lineage = event["outputs"][0]["facets"]["columnLineage"]["fields"]
>>> [(f["field"], f["transformations"][0]["subtype"]) for f in lineage["revenue"]["inputFields"]]
[('amount', 'AGGREGATION')]
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

import pyarrow as pa
from sqlglot.dialects.dialect import DialectType

from fluvial.errors import SqlError, UsageError

__all__ = [
    "DEFAULT_NAMESPACE",
    "PRODUCER",
    "SCHEMA_URL",
    "EventType",
    "RunEvent",
    "column_lineage_facet",
    "dataset",
    "facet",
    "new_run_id",
    "run_event",
    "schema_facet",
]

#: a run event as JSON-ready data (what is written to the file and POSTed)
RunEvent: TypeAlias = dict[str, Any]
EventType = Literal["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]
EVENT_TYPES = ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER")

#: jobs and datasets of a project whose ``[lineage] namespace`` is not set
DEFAULT_NAMESPACE = "fluvial"
PRODUCER = "https://pypi.org/project/fluvial/0.1.0/"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_FACETS = "https://openlineage.io/spec/facets"
FACET_SCHEMAS = {
    "schema": f"{_FACETS}/1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
    "columnLineage": (
        f"{_FACETS}/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet"
    ),
    "sql": f"{_FACETS}/1-1-0/SQLJobFacet.json#/$defs/SQLJobFacet",
    "jobType": f"{_FACETS}/2-0-3/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
    "errorMessage": f"{_FACETS}/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
    "extractionError": (
        f"{_FACETS}/1-1-2/ExtractionErrorRunFacet.json#/$defs/ExtractionErrorRunFacet"
    ),
}


def new_run_id() -> str:
    """A fresh run id: a time-ordered UUID (version 7), as OpenLineage recommends."""
    ms = int(datetime.now(UTC).timestamp() * 1000)
    rand = uuid.uuid4().int & ((1 << 74) - 1)
    value = (
        (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    )
    return str(uuid.UUID(int=value))


def facet(kind: str, **fields: Any) -> dict[str, Any]:
    """A standard facet: its ``_producer``, ``_schemaURL`` and *fields*."""
    return {"_producer": PRODUCER, "_schemaURL": FACET_SCHEMAS[kind], **fields}


def _type_name(typ: pa.DataType) -> str:
    return str(typ)


def schema_facet(schema: pa.Schema) -> dict[str, Any]:
    """The ``schema`` facet of an Arrow schema (nested fields for structs).

    >>> schema_facet(pa.schema([("a", pa.int64())]))["fields"]
    [{'name': 'a', 'type': 'int64'}]
    """

    def one(f: pa.Field) -> dict[str, Any]:
        item: dict[str, Any] = {"name": f.name, "type": _type_name(f.type)}
        if pa.types.is_struct(f.type):
            item["fields"] = [one(f.type.field(i)) for i in range(f.type.num_fields)]
        return item

    return facet("schema", fields=[one(f) for f in schema])


def column_lineage_facet(
    lineage: Mapping[str, Sequence[Any]], datasets: Mapping[str, tuple[str, str]]
) -> dict[str, Any]:
    """The ``columnLineage`` facet from :func:`~fluvial.lineage.columns.column_lineage`.

    *datasets* maps the table names the SQL uses to (namespace, dataset name); a table not
    in it keeps its SQL name in the namespace of the first dataset.
    """
    default_ns = next(iter(datasets.values()))[0] if datasets else DEFAULT_NAMESPACE
    fields: dict[str, Any] = {}
    for column, inputs in lineage.items():
        items = []
        for f in inputs:
            namespace, name = _resolve(f.table, datasets, default_ns)
            items.append(
                {
                    "namespace": namespace,
                    "name": name,
                    "field": f.column,
                    "transformations": [t.to_dict() for t in f.transformations],
                }
            )
        if items:
            fields[column] = {"inputFields": items}
    return facet("columnLineage", fields=fields)


def _resolve(
    table: str, datasets: Mapping[str, tuple[str, str]], default_ns: str
) -> tuple[str, str]:
    """The dataset a SQL table name stands for (exact, else a unique suffix match)."""
    key = table.lower()
    lowered = {k.lower(): v for k, v in datasets.items()}
    if key in lowered:
        return lowered[key]
    matches = [v for k, v in lowered.items() if k.endswith("." + key) or key.endswith("." + k)]
    return matches[0] if len(matches) == 1 else (default_ns, table)


def dataset(namespace: str, name: str, facets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An input or output dataset of an event."""
    item: dict[str, Any] = {"namespace": namespace, "name": name}
    if facets:
        item["facets"] = dict(facets)
    return item


def run_event(
    event_type: EventType,
    job: str,
    run_id: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    sql: str | None = None,
    schemas: Mapping[str, pa.Schema] | None = None,
    error: str | None = None,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    dialect: DialectType = "duckdb",
    processing: Literal["BATCH", "STREAMING"] = "BATCH",
    event_time: datetime | None = None,
) -> RunEvent:
    """An OpenLineage RunEvent for a run of *job* reading *inputs* and writing *outputs*.

    *sql* (a SELECT in *dialect*) gives the ``sql`` job facet and, on every output, a
    ``columnLineage`` facet (outputs are named by position after the output's schema when
    *schemas* has it); *schemas* (dataset name → Arrow schema) gives ``schema`` facets;
    *error* gives the ``errorMessage`` facet of a ``FAIL``. Datasets and the job live in
    *namespace*; :func:`~fluvial.lineage.emit` moves events of the default namespace to
    the project's.

    Raises:
        UsageError: an unknown *event_type* or a *run_id* that is not a UUID.
    """
    if event_type not in EVENT_TYPES:
        raise UsageError(
            f"event type must be one of {', '.join(EVENT_TYPES)}, found {event_type!r}"
        )
    try:
        uuid.UUID(run_id)
    except (ValueError, TypeError, AttributeError) as exc:
        raise UsageError(f"run id must be a UUID, found {run_id!r}") from exc
    schemas = schemas or {}
    run_facets: dict[str, Any] = {}
    job_facets: dict[str, Any] = {
        "jobType": facet(
            "jobType",
            processingType=processing,
            integration="FLUVIAL",
            jobType="MODEL" if processing == "BATCH" else "PIPELINE",
        ),
    }
    lineage: dict[str, dict[str, Any]] = {}
    if sql is not None:
        job_facets["sql"] = facet("sql", query=sql, dialect=_dialect_name(dialect))
        names = {name: (namespace, name) for name in [*inputs, *outputs]}
        for out in outputs:
            out_schema = schemas.get(out)
            try:
                from fluvial.lineage.columns import column_lineage

                cols = column_lineage(
                    sql,
                    dialect=dialect,
                    schemas={k: v for k, v in schemas.items() if k in inputs},
                    output_columns=out_schema.names if out_schema is not None else None,
                )
            except SqlError as exc:
                run_facets["extractionError"] = extraction_error(str(exc), job)
                break
            lineage[out] = column_lineage_facet(cols, names)
    if error is not None:
        run_facets["errorMessage"] = facet(
            "errorMessage", message=error, programmingLanguage="PYTHON"
        )
    return build_event(
        event_type,
        run_id,
        job=(namespace, job),
        job_facets=job_facets,
        run_facets=run_facets,
        inputs=[dataset(namespace, name, _schema_facets(schemas.get(name))) for name in inputs],
        outputs=[
            dataset(
                namespace,
                name,
                {
                    **_schema_facets(schemas.get(name)),
                    **({"columnLineage": lineage[name]} if name in lineage else {}),
                },
            )
            for name in outputs
        ],
        event_time=event_time,
    )


def extraction_error(message: str, task: str) -> dict[str, Any]:
    """The ``extractionError`` run facet: lineage could not be read from the job."""
    return facet(
        "extractionError",
        totalTasks=1,
        failedTasks=1,
        errors=[{"errorMessage": message, "task": task, "taskNumber": 0}],
    )


def build_event(
    event_type: EventType,
    run_id: str,
    *,
    job: tuple[str, str],
    inputs: Sequence[dict[str, Any]],
    outputs: Sequence[dict[str, Any]],
    job_facets: Mapping[str, Any] | None = None,
    run_facets: Mapping[str, Any] | None = None,
    event_time: datetime | None = None,
) -> RunEvent:
    """Assemble a RunEvent from ready datasets and facets."""
    when = (event_time or datetime.now(UTC)).astimezone(UTC)
    return {
        "eventType": event_type,
        "eventTime": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "run": {"runId": run_id, "facets": dict(run_facets or {})},
        "job": {"namespace": job[0], "name": job[1], "facets": dict(job_facets or {})},
        "inputs": list(inputs),
        "outputs": list(outputs),
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
    }


def _schema_facets(schema: pa.Schema | None) -> dict[str, Any]:
    return {} if schema is None else {"schema": schema_facet(schema)}


def _dialect_name(dialect: DialectType) -> str:
    if isinstance(dialect, str):
        return dialect
    name = dialect.__name__ if isinstance(dialect, type) else type(dialect).__name__
    return name.lower()
