"""``fluvial stream run`` and ``fluvial stream explain`` through the real CLI entry point."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from fluvial.cli import main
from fluvial.project import Project

BASE = dt.datetime(2026, 11, 24, 10, 0, 0)


def write_pipeline(project: Project, n: int = 300) -> tuple[Path, Counter[tuple[int, str]]]:
    src = project.root / "clicks.json"
    expected: Counter[tuple[int, str]] = Counter()
    with src.open("w", encoding="utf-8") as f:
        for i in range(n):
            ts = BASE + dt.timedelta(milliseconds=i * 700)
            page = ("/home", "/p/1", "/cart")[i % 3]
            ms = int(ts.replace(tzinfo=dt.UTC).timestamp() * 1000) // 60_000 * 60_000
            expected[(ms, page)] += 1
            f.write(
                json.dumps({"page": page, "ts": ts.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]}) + "\n"
            )
    out = project.root / "out"
    pipeline = project.root / "pipelines" / "views.sql"
    pipeline.write_text(
        f"""-- page views per minute
CREATE TABLE clicks (
  page STRING,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{src}', 'format' = 'json');
CREATE TABLE views (ws TIMESTAMP(3), page STRING, n BIGINT)
  WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'parquet');
INSERT INTO views
SELECT window_start, page, COUNT(*)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, page;
""",
        encoding="utf-8",
    )
    return pipeline, expected


def test_run_until_idle_writes_every_window(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline, expected = write_pipeline(project)
    code = main(
        ["stream", "run", str(pipeline), "--until-idle", "--project", str(project.root), "--json"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["pipelines"][0]["rows_in"] == sum(expected.values())
    assert report["pipelines"][0]["rows_out"] == len(expected)
    assert "watermark" in captured.err  # status lines go to stderr
    files = [str(p) for p in (project.root / "out").rglob("*.parquet")]
    got = (
        duckdb.connect()
        .execute(f"SELECT epoch_ms(ws), page, n FROM read_parquet({files!r})")
        .fetchall()
    )
    assert Counter({(ms, page): n for ms, page, n in got}) == expected


def test_explain_shows_the_operator_tree(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline, _ = write_pipeline(project)
    assert main(["stream", "explain", str(pipeline)]) == 0
    out = capsys.readouterr().out
    order = [
        "Sink(table=[views]",
        "WindowAggregate(",
        "TUMBLE(size=[1 min])",
        "TableSourceScan(table=[clicks]",
    ]
    positions = [out.index(s) for s in order]
    assert positions == sorted(positions), out
    assert "WatermarkAssigner(rowtime=[ts]" in out


def test_errors_are_one_line_with_file_line_and_column(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline, _ = write_pipeline(project)
    text = pipeline.read_text(encoding="utf-8").replace(
        "SELECT window_start, page", "SELECT window_start, pgae"
    )
    pipeline.write_text(text, encoding="utf-8")
    line = text[: text.index("pgae")].count("\n") + 1
    column = text.index("pgae") - text.rfind("\n", 0, text.index("pgae"))
    assert main(["stream", "explain", str(pipeline)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{pipeline}:{line}:{column}: unknown column 'pgae'; did you mean 'page'?" in err


def test_missing_file_and_bad_start_are_usage_errors(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stream", "explain", str(project.root / "nope.sql")]) == 2
    pipeline, _ = write_pipeline(project)
    assert (
        main(["stream", "run", str(pipeline), "--from", "yesterday", "-p", str(project.root)]) == 2
    )
    assert "--from must be one of" in capsys.readouterr().err


def test_from_checkpoint_without_one_fails_clearly(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline, _ = write_pipeline(project)
    assert (
        main(["stream", "run", str(pipeline), "--from", "checkpoint", "-p", str(project.root)]) == 1
    )
    assert "no checkpoint to resume job 'views' from" in capsys.readouterr().err
