"""Golden files: every ``golden/*.sql`` parses to the dump in the matching ``*.txt``.

Regenerate with ``FLUVIAL_UPDATE_GOLDEN=1`` (then review the diff).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fluvial.stream.sql import dump, parse_script

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*.sql"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    text = dump(parse_script(path.read_text(), source=path.name))
    expected_path = path.with_suffix(".txt")
    if os.environ.get("FLUVIAL_UPDATE_GOLDEN") == "1":
        expected_path.write_text(text)
    assert expected_path.exists(), f"missing {expected_path.name}: run with FLUVIAL_UPDATE_GOLDEN=1"
    assert text == expected_path.read_text()


def test_dump_round_trips() -> None:
    # The dumped queries are Flink SQL again: parsing them gives the same dump.
    script = parse_script((GOLDEN / "window_tvfs.sql").read_text())
    for insert in script.inserts:
        again = parse_script(f"INSERT INTO out {insert.query.sql('flink')}")
        assert again.inserts[0].query.sql("flink") == insert.query.sql("flink")
