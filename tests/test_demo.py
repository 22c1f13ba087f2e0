"""`make demo` runs `fluvial demo`: the whole ingestion path on embedded defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluvial.cli import main


@pytest.mark.slow
def test_demo_stores_every_posted_event_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "demo"
    assert main(["demo", "--project", str(root), "--events", "3000", "--seed", "3", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sent"] == 3000
    assert summary["accepted"] + summary["rejected"] == 3000
    assert summary["rejected"] > 0  # the simulated shop sends some malformed events
    records = {t["topic"]: t["records"] for t in summary["topics"]}
    assert records == {"events": summary["accepted"], "events_failed": summary["rejected"]}
    by_type = summary["queries"]["events by type"]
    assert sum(row["events"] for row in by_type) == summary["accepted"]
    by_reason = summary["queries"]["failed events by reason"]
    assert sum(row["events"] for row in by_reason) == summary["rejected"]
    # the stream pipeline read every stored event and wrote page-minute counts
    stream = summary["stream"]
    assert stream["rows_in"] == summary["accepted"]
    assert stream["rows_out"] > 0 and stream["busiest_minutes"]
    # a second run starts afresh unless --keep is given
    assert main(["demo", "--project", str(root), "--events", "500", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert sum(t["records"] for t in again["topics"]) == 500
