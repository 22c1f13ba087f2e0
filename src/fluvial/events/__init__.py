"""Fluvial's event model: the envelope, the schema registry, validation and ingestion.

>>> from fluvial.events import EventValidator, SchemaRegistry
>>> v = EventValidator(SchemaRegistry(None))
>>> r = v.validate([b'{"event_type": "page_view"}'], received_at_ms=0)
>>> r.accepted, r.errors[0].reason, r.errors[0].path
(0, 'schema_violation', 'event_id')
"""

from __future__ import annotations

from fluvial.events.compat import Compatibility, check_compatibility, compatibility_problems
from fluvial.events.envelope import EVENT_KEY, EVENT_SCHEMA, FAILED_REASONS, FAILED_SCHEMA
from fluvial.events.ingest import Ingestor, IngestResult, load_file
from fluvial.events.payload import split_payloads
from fluvial.events.registry import (
    BUILTIN_TYPES,
    RegisteredSchema,
    SchemaRegistry,
    SubjectInfo,
    check_schema,
)
from fluvial.events.validate import EventError, EventValidator, ValidationResult

__all__ = [
    "BUILTIN_TYPES",
    "EVENT_KEY",
    "EVENT_SCHEMA",
    "FAILED_REASONS",
    "FAILED_SCHEMA",
    "Compatibility",
    "EventError",
    "EventValidator",
    "IngestResult",
    "Ingestor",
    "RegisteredSchema",
    "SchemaRegistry",
    "SubjectInfo",
    "ValidationResult",
    "check_compatibility",
    "check_schema",
    "compatibility_problems",
    "load_file",
    "split_payloads",
]
