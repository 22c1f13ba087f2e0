"""Late rows on Fluvial and on Apache Flink: the same multiset of results.

Events up to 20 s out of order against a 5 s watermark delay, so many rows are late, and
``SET 'pipeline.auto-watermark-interval' = '0'``: both engines advance the watermark per
record (Flink's generator emits after each row; Fluvial judges each row against the rows
before it, vectorized), so which rows are dropped follows from the file order alone and
the results must match exactly — late rows included. SESSION windows are left out: Fluvial
merges a micro-batch's rows into sessions at once (see ``ops/session.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from tests.stream.test_against_flink import BASE, PAGES, QUERIES, ROOT, SOURCE, read_json_rows

from fluvial.stream.flink import find_flink_python, run_on_flink
from fluvial.stream.job import plan_text
from fluvial.stream.runtime import run_job

pytestmark = pytest.mark.slow

WINDOWED = ("tumble", "hop", "cumulate", "legacy_tumble")


def late_events(n: int, seed: int) -> list[dict[str, Any]]:
    """Events every ~200 ms; one in five up to 20 s early (late for a 5 s watermark)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        back = rng.randint(0, 20_000) if rng.random() < 0.2 else rng.randint(0, 2_000)
        ts = BASE + dt.timedelta(milliseconds=i * 200 - back)
        rows.append(
            {
                "user_id": f"u{rng.randrange(4)}",
                "page": rng.choice(PAGES),
                "amount": None if rng.random() < 0.1 else rng.randrange(100),
                "price": round(rng.uniform(0, 20), 2),
                "ts": ts.strftime("%Y-%m-%d %H:%M:%S.") + f"{ts.microsecond // 1000:03d}",
            }
        )
    return rows


def pipeline(src: Path, out: Path) -> str:
    text = "SET 'pipeline.auto-watermark-interval' = '0';\n" + SOURCE.format(src=src)
    for name in WINDOWED:
        columns = QUERIES[name][0]
        text += (
            f"CREATE TABLE {name}_out ({columns}) WITH ('connector' = 'filesystem', "
            f"'path' = '{out / name}', 'format' = 'json');\n"
        )
    for name in WINDOWED:
        text += f"INSERT INTO {name}_out {QUERIES[name][1]};\n"
    return text


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    python = find_flink_python(ROOT)
    if python is None:
        reason = "PyFlink is not installed: run `make flink` (or set FLUVIAL_FLINK_PYTHON)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"required under CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("late_flink")
    src = tmp / "events"
    src.mkdir()
    with (src / "events.json").open("w", encoding="utf-8") as f:
        for row in late_events(5000, seed=9):
            f.write(json.dumps(row) + "\n")
    result = run_job(
        plan_text(pipeline(src, tmp / "fluvial"), source="late_vs_flink.sql"),
        until_idle=True,
        checkpoint_dir=None,
        max_rows=333,  # several micro-batches: lateness must not depend on them
    )
    assert result.pipelines[0].late_rows > 20, result.pipelines[0].line()  # tumble
    run_on_flink(pipeline(src, tmp / "flink"), python=python, timeout=240)
    return {"fluvial": tmp / "fluvial", "flink": tmp / "flink"}


@pytest.mark.parametrize("name", WINDOWED)
def test_same_rows_as_flink_with_late_data(outputs: dict[str, Path], name: str) -> None:
    flink = read_json_rows(outputs["flink"] / name)
    fluvial = read_json_rows(outputs["fluvial"] / name)
    assert sum(flink.values()) > 5
    only_flink, only_fluvial = flink - fluvial, fluvial - flink
    assert not only_flink and not only_fluvial, (
        f"{name}: {sum(only_flink.values())} rows only on Flink, e.g. {list(only_flink)[:3]}; "
        f"{sum(only_fluvial.values())} only on Fluvial, e.g. {list(only_fluvial)[:3]}"
    )
