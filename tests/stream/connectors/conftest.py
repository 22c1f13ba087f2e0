"""Connector fixtures: tables from real DDL, and a project whose log holds real events."""

from __future__ import annotations

import pytest

from fluvial.events.ingest import Ingestor
from fluvial.generate import ClickstreamConfig, clickstream_batches
from fluvial.project import Project
from fluvial.stream.connectors import ConnectorContext
from fluvial.stream.sql.ast import CreateTable
from fluvial.stream.sql.parser import parse_script


def table(ddl: str) -> CreateTable:
    """The one CREATE TABLE in *ddl*."""
    (statement,) = parse_script(ddl).statements
    assert isinstance(statement, CreateTable)
    return statement


@pytest.fixture
def events_project(project: Project) -> Project:
    """A project whose ``events`` topic holds a few hundred generated clickstream events."""
    config = ClickstreamConfig(
        events=400,
        seed=7,
        users=30,
        start_ms=1_790_000_000_000,
        invalid_fraction=0.0,
        duplicate_fraction=0.0,
    )
    with Ingestor.for_project(project) as ingestor:
        for batch in clickstream_batches(config):
            ingestor.ingest(batch.lines(), source="generate")
    return project


@pytest.fixture
def context(project: Project) -> ConnectorContext:
    return ConnectorContext(project=project)
