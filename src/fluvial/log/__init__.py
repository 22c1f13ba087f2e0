"""The event log: partitioned, durable, replayable topics (our Kinesis Data Streams / Kafka).

Backends are looked up by name and imported lazily; a missing extra says what to install.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from fluvial.config import Settings
from fluvial.errors import ConfigError, did_you_mean
from fluvial.log.base import (
    SYSTEM_COLUMNS,
    AppendResult,
    EventLog,
    GroupInfo,
    PartitionInfo,
    TopicInfo,
    with_system_columns,
)
from fluvial.log.partitioner import partition_for

__all__ = [
    "BACKENDS",
    "SYSTEM_COLUMNS",
    "AppendResult",
    "EventLog",
    "GroupInfo",
    "PartitionInfo",
    "TopicInfo",
    "open_log",
    "partition_for",
    "with_system_columns",
]

#: backend name -> "module:class"; adding a backend adds one entry here
BACKENDS: dict[str, str] = {
    "embedded": "fluvial.log.embedded:EmbeddedLog",
    "kafka": "fluvial.log.kafka:KafkaLog",
    "kinesis": "fluvial.log.kinesis:KinesisLog",
}


def open_log(settings: Settings, data_dir: Path) -> EventLog:
    """Open the backend named by ``[log] backend``."""
    name = settings.log.backend
    if name not in BACKENDS:
        raise ConfigError(f"unknown log backend '{name}'{did_you_mean(name, BACKENDS)}")
    module, _, cls_name = BACKENDS[name].partition(":")
    cls: type[EventLog] = getattr(importlib.import_module(module), cls_name)
    return cls.from_settings(settings, data_dir)
