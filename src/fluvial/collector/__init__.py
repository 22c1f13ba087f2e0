"""The HTTP collector (our API Gateway -> Kinesis): write keys, validation, durable appends.

``fluvial collect`` serves :func:`create_app` under uvicorn; ``fluvial keys`` manages the
write keys in ``<data_dir>/keys.json``. See ``docs/collector.md``.

Names are imported on first use, so ``fluvial keys`` does not pay for Starlette and
pyarrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fluvial.collector.app import EVENTS_PATH, create_app
    from fluvial.collector.keys import KeyStore, WriteKey
    from fluvial.collector.metrics import CollectorMetrics
    from fluvial.collector.pipeline import IngestPipeline, Receipt
    from fluvial.collector.server import serve

__all__ = [
    "EVENTS_PATH",
    "CollectorMetrics",
    "IngestPipeline",
    "KeyStore",
    "Receipt",
    "WriteKey",
    "create_app",
    "serve",
]

_WHERE = {
    "EVENTS_PATH": "app",
    "create_app": "app",
    "KeyStore": "keys",
    "WriteKey": "keys",
    "CollectorMetrics": "metrics",
    "IngestPipeline": "pipeline",
    "Receipt": "pipeline",
    "serve": "server",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'fluvial.collector' has no attribute {name!r}")
    return getattr(importlib.import_module(f"fluvial.collector.{_WHERE[name]}"), name)
