"""The clickstream reference project, built once for the module: events generated, landed
in raw.events through the log and the archiver in two deliveries, and built by two batch
runs (the second incremental, after a catalogue price change)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fluvial.batch import QualityHooks, RunResult, run
from fluvial.events.ingest import Ingestor
from fluvial.events.validate import ValidationResult
from fluvial.examples.clickstream import load_catalogue
from fluvial.generate.clickstream import KINDS, ClickstreamConfig, clickstream_batches
from fluvial.lake import Archiver, open_lake
from fluvial.project import Project

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
#: the runs' times (each run sees the catalogue exported then); the events span 2026-01-01
#: to 01-16, so orders fall before the first run, between the runs and after the second
FIRST_RUN = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
SECOND_RUN = datetime(2026, 1, 6, 8, 0, tzinfo=UTC)
#: product id -> new price, exported between the two runs (P10420 is ordered on both
#: sides of the change, P10000 before it)
PRICE_CHANGES = {"P10000": "9.99", "P10061": "1234.50", "P10700": "0.49", "P10420": "55.00"}
#: lines of the first delivery the tracker sends again in the second (late retries)
RESENT = 25


@dataclass(frozen=True)
class Line:
    """One line as the collector received it, and the generator's truth about it."""

    line: bytes
    kind: str
    received_ms: int
    true_time_ms: int


@dataclass
class Built:
    """The built project and what went in."""

    project: Project
    lines: list[Line]
    first: RunResult
    second: RunResult
    first_part: int


def _deliver(project: Project, lines: Sequence[Line]) -> None:
    """Validate like the collector (received_at per line), append to the log, archive."""
    with Ingestor.for_project(project) as ingestor:
        payloads = [x.line for x in lines]
        result = ingestor.validator.validate(payloads, received_at_ms=0, app_id="demo")
        rejected = {e.index for e in result.errors}
        kept = np.array([i for i in range(len(lines)) if i not in rejected], dtype=np.int64)
        received = pa.array(np.array([x.received_ms for x in lines], dtype=np.int64)[kept])
        valid = result.valid
        ts = valid.schema.field("received_at").type
        skew = pc.subtract(valid["sent_at"].cast(pa.int64()), received)
        derived = pc.subtract(valid["event_time"].cast(pa.int64()), skew)
        for name, values in (("received_at", received), ("derived_time", derived)):
            at = valid.schema.get_field_index(name)
            valid = valid.set_column(at, valid.schema.field(name), values.cast(ts))
        ingestor.append(ValidationResult(valid, result.failed, result.errors))
    with open_lake(project) as lake, project.open_log() as log:
        Archiver(lake, log, settings=project.settings).run(until_idle=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root: Path = tmp_path_factory.mktemp("clickstream") / "shop"
    project = Project.init(root, example="clickstream")
    config = ClickstreamConfig(events=20_000, seed=11, users=400, days=15, start_ms=START_MS)
    lines: list[Line] = []
    for batch in clickstream_batches(config):
        for i in range(len(batch)):
            lines.append(
                Line(
                    batch.line(i),
                    KINDS[batch.kinds[i]],
                    int(batch.send_time_ms[i]),
                    int(batch.event_time_ms[i]),
                )
            )
    split = len(lines) * 3 // 5
    first, second = lines[:split], lines[split:]
    last_ms = max(x.received_ms for x in lines)
    resent = [
        Line(x.line, "resent", last_ms + 1_000 + i, x.true_time_ms)
        for i, x in enumerate([x for x in first if x.kind == "valid"][:: split // RESENT][:RESENT])
    ]
    second = second + resent

    _deliver(project, first)
    load_catalogue(project, exported_at=FIRST_RUN)
    one = run(project, hooks=QualityHooks(project), now=FIRST_RUN)
    _deliver(project, second)
    load_catalogue(project, PRICE_CHANGES, exported_at=SECOND_RUN)
    two = run(project, hooks=QualityHooks(project), now=SECOND_RUN)
    yield Built(project, first + second, one, two, len(first))
