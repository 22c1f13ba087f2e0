"""Connectors by name: ``create_source`` / ``create_sink`` for a ``CREATE TABLE``.

The table's ``'connector'`` option is looked up in
:data:`~fluvial.stream.connectors.base.CONNECTORS` (``"module:Class"``, imported lazily),
its options are checked against the class's ``required_options`` and
``optional_options``, and every mistake is a :class:`~fluvial.errors.SqlError` positioned
at the ``CREATE TABLE``: an unknown connector or option with "did you mean …?", a Flink
connector Fluvial does not run (``kafka``, ``jdbc``…) as an
:class:`~fluvial.errors.UnsupportedSqlError` naming what to use instead.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Literal

from fluvial.errors import did_you_mean
from fluvial.stream.connectors.base import CONNECTORS, ConnectorContext, Sink, Source
from fluvial.stream.connectors.options import Options

if TYPE_CHECKING:
    from fluvial.stream.sql.ast import CreateTable

__all__ = ["connector_class", "create_sink", "create_source"]

#: Flink connectors Fluvial refuses by name, with what to use instead
FLINK_ONLY = {
    "kafka": "use 'connector' = 'fluvial' with 'topic' (the project's event log)",
    "upsert-kafka": "use 'connector' = 'fluvial' (upserts are not supported yet)",
    "datagen": "generate data into a topic with `fluvial generate`",
    "jdbc": "not supported yet",
    "elasticsearch-7": "not supported yet",
    "hbase-2.2": "not supported yet",
    "hive": "not supported yet",
    "kinesis": "not supported yet",
    "pulsar": "not supported yet",
    "mongodb": "not supported yet",
}


def connector_class(table: CreateTable, role: Literal["source", "sink"]) -> type[Any]:
    """The class implementing the table's connector as a *role*, options checked."""
    opts = Options(table)
    name = opts.get("connector")
    if name is None:
        raise opts.error(
            f"no 'connector' option; expected one of {', '.join(sorted(CONNECTORS[role]))}"
        )
    if name in FLINK_ONLY:
        raise opts.error(
            f"connector '{name}' is not supported by Fluvial: {FLINK_ONLY[name]}",
            unsupported=True,
        )
    if name not in CONNECTORS[role]:
        other = "sink" if role == "source" else "source"
        if name in CONNECTORS[other]:
            raise opts.error(
                f"connector '{name}' can only be a {other}, and this table is read as a {role}",
                unsupported=True,
            )
        known = sorted(set(CONNECTORS["source"]) | set(CONNECTORS["sink"]))
        raise opts.error(
            f"unknown connector '{name}'{did_you_mean(name, known)}; "
            f"expected one of {', '.join(known)}"
        )
    module, _, cls_name = CONNECTORS[role][name].partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    opts.check(getattr(cls, "required_options", ()), getattr(cls, "optional_options", ()))
    return cls


def create_source(table: CreateTable, context: ConnectorContext | None = None) -> Source:
    """The source reading *table* (not opened yet)."""
    cls = connector_class(table, "source")
    source: Source = cls(table, table.options, context or ConnectorContext())
    return source


def create_sink(table: CreateTable, context: ConnectorContext | None = None) -> Sink:
    """The sink writing *table* (not opened yet)."""
    cls = connector_class(table, "sink")
    sink: Sink = cls(table, table.options, context or ConnectorContext())
    return sink
