"""A batch run with the platform's hooks: a failing error rule quarantines the rows that
break it, writes the others, blocks the models downstream; every model run leaves
OpenLineage events."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from tests.batch.conftest import events, read

from fluvial.batch import run
from fluvial.cli.batch import platform_hooks
from fluvial.lake import Lake
from fluvial.project import Project


def test_quality_blocks_downstream_and_quarantines(
    bproject: Project,
    lake: Lake,
    add_events: Callable[[pa.Table], None],
    write_model: Callable[[str, str], Path],
) -> None:
    data = events(0, 300)
    add_events(data)
    write_model(
        "refined/buys.sql",
        """
        /*---
        materialized: table
        quality:
          - ColumnValues: {column: amount, between: [1, 80]}
        ---*/
        SELECT event_id, user_id, amount, at FROM raw.events WHERE kind = 'buy'
        """,
    )
    write_model(
        "curated/buyers.sql",
        "SELECT user_id, sum(amount) AS spent FROM refined.buys GROUP BY user_id",
    )
    result = run(bproject, hooks=platform_hooks(bproject))
    assert result.model("refined.buys").status == "success"
    assert result.model("curated.buyers").status == "skipped"
    buys = data.filter(pc.equal(data["kind"], "buy"))
    bad = buys.filter(pc.greater(buys["amount"], 80))
    assert bad.num_rows > 0
    written = read(lake, "refined.buys")
    assert written.num_rows == buys.num_rows - bad.num_rows
    assert pc.max(written["amount"]).as_py() <= 80
    lake.catalog.load_table("quarantine.refined__buys")  # created
    quarantined = read(lake, "quarantine.refined__buys")
    assert sorted(quarantined["event_id"].to_pylist()) == sorted(bad["event_id"].to_pylist())
    assert set(quarantined["_rule"].to_pylist()) == {"ColumnValues(amount)"}
    lines = (bproject.data_dir / "lineage" / "events.ndjson").read_text().splitlines()
    kinds = [(e["job"]["name"], e["eventType"]) for e in map(json.loads, lines)]
    assert ("refined.buys", "START") in kinds and ("refined.buys", "COMPLETE") in kinds
