"""Lineage: OpenLineage run events with schema and column lineage, and the lineage graph.

Every job run reports ``START`` then ``COMPLETE`` or ``FAIL`` (:func:`run_event` for batch
models, :func:`stream_events` for stream pipelines); :func:`emit` delivers an event through
the project's ``[lineage]`` transport (an fsynced NDJSON file, or HTTP to Marquez);
:func:`load_graph` reads the recorded events back as a graph of datasets, jobs and columns.
"""

from fluvial.lineage.columns import InputField, Transformation, column_lineage
from fluvial.lineage.events import DEFAULT_NAMESPACE, RunEvent, new_run_id, run_event
from fluvial.lineage.graph import (
    ColumnEdge,
    DatasetRef,
    JobNode,
    LineageGraph,
    build_graph,
    load_graph,
)
from fluvial.lineage.transport import (
    FileTransport,
    HttpTransport,
    Transport,
    emit,
    events_path,
    namespace_of,
    open_transport,
    read_events,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "ColumnEdge",
    "DatasetRef",
    "FileTransport",
    "HttpTransport",
    "InputField",
    "JobNode",
    "LineageGraph",
    "RunEvent",
    "StreamRun",
    "Transformation",
    "Transport",
    "build_graph",
    "column_lineage",
    "emit",
    "events_path",
    "load_graph",
    "namespace_of",
    "new_run_id",
    "open_transport",
    "read_events",
    "run_event",
    "stream_dataset",
    "stream_events",
]


def __getattr__(name: str) -> object:
    # the stream half imports the stream planner: load it only when asked for
    if name in ("StreamRun", "stream_dataset", "stream_events"):
        from fluvial.lineage import stream

        return getattr(stream, name)
    raise AttributeError(f"module 'fluvial.lineage' has no attribute {name!r}")
