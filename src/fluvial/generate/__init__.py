"""Load generators: a simulated shop's clickstream and the Nexmark benchmark's auctions.

>>> from fluvial.generate import ClickstreamConfig, generate_clickstream
>>> kinds = {e.kind for e in generate_clickstream(ClickstreamConfig(events=20, start_ms=0))}
>>> kinds <= {"valid", "duplicate"} | {f"invalid:{k}" for k in INVALID_KINDS}
True
"""

from __future__ import annotations

from fluvial.generate.clickstream import (
    KINDS,
    ClickstreamConfig,
    EventBatch,
    GeneratedEvent,
    clickstream_batches,
    generate_clickstream,
)
from fluvial.generate.faults import EXPECTED_REASON, INVALID_KINDS
from fluvial.generate.nexmark import (
    NEXMARK_SCHEMA,
    NexmarkConfig,
    append_nexmark,
    nexmark_lines,
    nexmark_tables,
)
from fluvial.generate.simulation import EVENT_TYPES, SESSION_TIMEOUT_MS

__all__ = [
    "EVENT_TYPES",
    "EXPECTED_REASON",
    "INVALID_KINDS",
    "KINDS",
    "NEXMARK_SCHEMA",
    "SESSION_TIMEOUT_MS",
    "ClickstreamConfig",
    "EventBatch",
    "GeneratedEvent",
    "NexmarkConfig",
    "append_nexmark",
    "clickstream_batches",
    "generate_clickstream",
    "nexmark_lines",
    "nexmark_tables",
]
