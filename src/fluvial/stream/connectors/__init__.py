"""Sources and sinks of stream pipelines: the contract, the registry and its connectors.

=============  =======  =======  =========================================================
connector      source   sink     what
=============  =======  =======  =========================================================
fluvial        yes      yes      a topic of the project's event log (exactly-once sink)
filesystem     yes      yes      json / csv / parquet files (bounded source; part files)
print          —        yes      ``+I[…]`` lines on stdout or stderr
blackhole      —        yes      discards rows, counts them
=============  =======  =======  =========================================================
"""

from __future__ import annotations

from fluvial.stream.connectors.base import (
    CONNECTORS,
    ConnectorContext,
    Sink,
    Source,
    SourceBatch,
)
from fluvial.stream.connectors.registry import connector_class, create_sink, create_source

__all__ = [
    "CONNECTORS",
    "ConnectorContext",
    "Sink",
    "Source",
    "SourceBatch",
    "connector_class",
    "create_sink",
    "create_source",
]
