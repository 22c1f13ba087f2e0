"""Every Nexmark query file in ``benchmarks/stream/nexmark/`` runs on Apache Flink, and
which of them Fluvial can plan today.

A query's pipeline is ``source.sql`` (the events table over an NDJSON file, and the
person, auction and bid views) followed by its file. On Flink (PyFlink, one JVM, one job
per file) each blackhole sink becomes a filesystem sink — ``json``, or ``debezium-json``
for the queries whose results update (joins of aggregates, Top-N, deduplication and
unbounded GROUP BY: Flink's filesystem sink takes a changelog only in a changelog
format) — over a few thousand generated events, and each query must produce rows,
except q12, whose processing-time windows need not close before a short input ends.
The queries Fluvial runs today run on it too, and their results must be Flink's: the
same multiset of rows, or for updating queries the same final rows once each engine's
changelog is applied.

The Flink part is slow (about a minute) and needs ``.venv-flink`` (``make flink``) or
``$FLUVIAL_FLINK_PYTHON``: skipped with the reason when absent, a failure under CI=true.
The planning part records, as strict xfails, the queries that need operators Fluvial
does not have yet, so it fails — and the mark comes off — when one lands.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fluvial.errors import SqlError
from fluvial.generate.nexmark import NexmarkConfig, nexmark_lines, nexmark_tables
from fluvial.stream.flink import find_flink_python, run_pipelines_on_flink
from fluvial.stream.job import plan_text
from fluvial.stream.runtime import run_job

from .helpers import collecting

ROOT = Path(__file__).resolve().parents[2]
NEXMARK = ROOT / "benchmarks" / "stream" / "nexmark"
QUERIES = sorted(
    (p.stem for p in NEXMARK.glob("*.sql") if p.stem != "source"),
    key=lambda q: (q[0] != "q", int(q[1:].split("_")[0]) if q[0] == "q" else 0, q),
)
#: queries whose results update (Flink writes them as a changelog)
UPDATING = {"q4", "q9", "q15", "q16", "q17", "q18", "q19"}
#: queries that may rightly emit nothing on a short bounded input
MAY_BE_EMPTY = {"q12"}
#: what each query Fluvial cannot plan yet is waiting for
NOT_YET: dict[str, tuple[type[SqlError], str]] = {}
EVENTS = 4000
START_MS = 1_700_000_000_000


def query_text(query: str) -> str:
    return (NEXMARK / f"{query}.sql").read_text(encoding="utf-8")


def pipeline(query: str, events: Path, out: Path) -> str:
    """*query*'s whole pipeline over *events*, its sink a filesystem sink under *out*."""
    source = (NEXMARK / "source.sql").read_text(encoding="utf-8")
    fmt = "debezium-json" if query in UPDATING else "json"
    sink = f"'connector' = 'filesystem', 'path' = '{out / query}', 'format' = '{fmt}'"
    text = query_text(query).replace("'connector' = 'blackhole'", sink)
    text = text.replace("${OUTPUT}", str(out / query))
    return (
        "SET 'execution.checkpointing.interval' = '1s';\n"
        + source.replace("${EVENTS}", str(events))
        + "\n"
        + text
    )


def count_rows(directory: Path) -> int:
    """The lines of the committed (visible) files under *directory*."""
    rows = 0
    for path in directory.rglob("*"):
        if path.is_file() and not any(p.startswith((".", "_")) for p in path.parts[-1:]):
            rows += sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line)
    return rows


def write_events(directory: Path) -> None:
    """A few thousand Nexmark events as NDJSON: 100 events/s, so 40 s of event time."""
    directory.mkdir(parents=True)
    config = NexmarkConfig(events=EVENTS, seed=11, rate=100, start_ms=START_MS)
    with (directory / "events.json").open("wb") as f:
        for table in nexmark_tables(config):
            f.write(nexmark_lines(table)[0])


def test_every_query_file_is_listed() -> None:
    numbers = {q for q in QUERIES if q[1:].isdigit()}
    expected = {f"q{n}" for n in range(23)} - {"q6", "q13"}  # q6: not in Flink; q13: side input
    assert numbers == expected
    readme = (NEXMARK / "README.md").read_text(encoding="utf-8")
    for query in QUERIES:
        assert f"`{query}.sql`" in readme, f"{query} is missing from the README"


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(
            q,
            marks=pytest.mark.xfail(strict=True, raises=NOT_YET[q][0], reason=NOT_YET[q][1]),
        )
        if q in NOT_YET
        else q
        for q in QUERIES
    ],
)
def test_fluvial_plans(query: str, tmp_path: Path) -> None:
    """The file as it is (its blackhole sink) plans on Fluvial."""
    source = (NEXMARK / "source.sql").read_text(encoding="utf-8")
    text = source.replace("${EVENTS}", str(tmp_path)) + "\n" + query_text(query)
    job = plan_text(text.replace("${OUTPUT}", str(tmp_path)), source=f"{query}.sql")
    assert [p.sink.table.name for p in job.pipelines] == [f"nexmark_{query}"]


_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?Z?$")


def _norm(value: Any) -> Any:
    """Timestamps as values (Flink writes ``10:01:00``, Fluvial ``10:01:00.000``), numbers
    (a DECIMAL is a string or a number) to 12 significant digits."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, str) and _TIMESTAMP.match(value):
        return dt.datetime.fromisoformat(value.removesuffix("Z"))
    if isinstance(value, str) and re.fullmatch(r"-?\d+\.\d+", value):
        value = float(value)
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return float(f"{value:.12g}")
    return value


def _row(values: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(_norm(v) for v in values.values())


def flink_rows(directory: Path) -> Counter[tuple[Any, ...]]:
    """The final rows of a Flink sink directory: json rows, or a debezium-json changelog
    applied (``c``/``r`` insert ``after``, ``d`` retracts ``before``, ``u`` both)."""
    rows: Counter[tuple[Any, ...]] = Counter()
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.name.startswith((".", "_")):
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            if "op" not in record:
                rows[_row(record)] += 1
                continue
            if record["op"] in ("d", "u"):
                rows[_row(record["before"])] -= 1
            if record["op"] in ("c", "r", "u"):
                rows[_row(record["after"])] += 1
    return +rows


def fluvial_rows(query: str, events: Path) -> Counter[tuple[Any, ...]]:
    """*query* run by Fluvial into a collecting sink, its changelog (``_op``: 0 +I,
    1 -U, 2 +U, 3 -D) applied."""
    source = (NEXMARK / "source.sql").read_text(encoding="utf-8")
    text = source.replace("${EVENTS}", str(events)) + "\n" + query_text(query)
    text = text.replace("'connector' = 'blackhole'", "'connector' = 'collect'")
    rows: Counter[tuple[Any, ...]] = Counter()
    with collecting() as committed:
        run_job(plan_text(text, source=f"{query}.sql"), until_idle=True, checkpoint_dir=None)
        for tables in committed.values():
            for table in tables:
                for record in table.to_pylist():
                    op = record.pop("_op", 0)
                    rows[_row(record)] += -1 if op in (1, 3) else 1
    return +rows


@pytest.fixture(scope="module")
def flink_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run every query on Flink (one JVM, one job per file); the output root (the events
    are in its sibling ``events``)."""
    python = find_flink_python(ROOT)
    if python is None:
        reason = "PyFlink is not installed: run `make flink` (or set FLUVIAL_FLINK_PYTHON)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"required under CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("nexmark-flink")
    write_events(tmp / "events")
    out = tmp / "out"
    texts = [pipeline(q, tmp / "events", out) for q in QUERIES]
    run_pipelines_on_flink(texts, python=python, timeout=240)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("query", QUERIES)
def test_flink_runs(flink_output: Path, query: str) -> None:
    rows = count_rows(flink_output / query)
    if query not in MAY_BE_EMPTY:
        assert rows > 0, f"{query} produced no rows on Flink"


def partitioned_lines(directory: Path) -> Counter[tuple[str, str]]:
    """(partition folder, CSV line) of every committed file under *directory*."""
    lines: Counter[tuple[str, str]] = Counter()
    for path in directory.rglob("*"):
        if path.is_file() and not path.name.startswith((".", "_")):
            folder = str(path.parent.relative_to(directory))
            for line in path.read_text(encoding="utf-8").splitlines():
                if line:
                    lines[(folder, line)] += 1
    return lines


@pytest.mark.slow
def test_partitioned_sink_matches_flink(flink_output: Path, tmp_path: Path) -> None:
    """q10: the same partition folders (dt=…/hm=…) with the same CSV lines."""
    text = pipeline("q10", flink_output.parent / "events", tmp_path)
    run_job(plan_text(text, source="q10.sql"), until_idle=True, checkpoint_dir=None)
    flink = partitioned_lines(flink_output / "q10")
    fluvial = partitioned_lines(tmp_path / "q10")
    assert sum(flink.values()) > 100
    assert flink == fluvial


@pytest.mark.slow
@pytest.mark.parametrize("query", [q for q in QUERIES if q not in NOT_YET and q != "q10"])
def test_fluvial_matches_flink(flink_output: Path, query: str) -> None:
    flink = flink_rows(flink_output / query)
    fluvial = fluvial_rows(query, flink_output.parent / "events")
    only_flink, only_fluvial = flink - fluvial, fluvial - flink
    assert not only_flink and not only_fluvial, (
        f"{query}: {sum(only_flink.values())} rows only on Flink, e.g. {list(only_flink)[:2]}; "
        f"{sum(only_fluvial.values())} only on Fluvial, e.g. {list(only_fluvial)[:2]}"
    )
