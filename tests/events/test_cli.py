"""``fluvial schemas``: list, show, register, check — through fluvial.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluvial.cli import main
from fluvial.events import BUILTIN_TYPES
from fluvial.project import Project

from .conftest import dumps, make_event

VIDEO = {"type": "object", "required": ["video_id"], "properties": {"video_id": {"type": "string"}}}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schemas", "list", "--project", str(project.root), "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["type"] for r in rows] == sorted(BUILTIN_TYPES)
    assert {(r["latest"], r["compatibility"], r["source"]) for r in rows} == {
        (1, "BACKWARD", "builtin")
    }


def test_register_show_and_list(
    project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = str(project.root)
    schema_file = tmp_path / "video.json"
    schema_file.write_text(json.dumps(VIDEO))
    code, out, _ = run(capsys, "schemas", "register", "video_play", str(schema_file), "-p", p)
    assert code == 0 and "registered video_play version 1" in out
    breaking = {**VIDEO, "required": ["video_id", "seconds"]}
    schema_file.write_text(json.dumps(breaking))
    code, _, err = run(capsys, "schemas", "register", "video_play", str(schema_file), "-p", p)
    assert code == 1
    assert "incompatible with BACKWARD: properties.seconds became required" in err
    code, out, _ = run(
        capsys, "schemas", "register", "video_play", str(schema_file), "-p", p,
        "--compatibility", "none", "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out) == {
        "type": "video_play",
        "version": 2,
        "created": True,
        "compatibility": "NONE",
    }
    code, out, _ = run(capsys, "schemas", "show", "video_play", "-p", p, "--json")
    shown = json.loads(out)
    assert (shown["version"], shown["versions"], shown["schema"]) == (2, [1, 2], breaking)
    code, out, _ = run(capsys, "schemas", "show", "video_play", "--version", "1", "-p", p)
    assert code == 0 and "video_play version 1 of 2" in out and '"video_id"' in out
    code, out, _ = run(capsys, "schemas", "list", "-p", p)
    assert code == 0 and "video_play" in out and "project" in out


def test_register_errors(
    project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = str(project.root)
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    code, _, err = run(capsys, "schemas", "register", "x", str(bad), "-p", p)
    assert code == 1 and "not valid JSON" in err
    bad.write_text(json.dumps({"type": "object", "properties": {"a": {"type": "nope"}}}))
    code, _, err = run(capsys, "schemas", "register", "x", str(bad), "-p", p)
    assert code == 1 and "not a valid JSON Schema" in err
    code, _, err = run(capsys, "schemas", "register", "x", str(bad), "-p", p, "-c", "sideways")
    assert code == 2 and "unknown compatibility mode" in err
    code, _, err = run(capsys, "schemas", "show", "purchse", "-p", p)
    assert code == 1 and "did you mean 'purchase'" in err


def test_check(project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = str(project.root)
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(dumps(make_event()) for _ in range(5)) + b"\n")
    code, out, _ = run(capsys, "schemas", "check", str(path), "-p", p)
    assert code == 0 and "5 valid, 0 invalid" in out
    lines = [dumps(make_event()) for _ in range(4)]
    lines[1] = b"[]"
    lines[3] = dumps(make_event(properties={"product_id": "p", "quantity": 1, "price": -2}))
    path.write_bytes(b"\n".join(lines))
    code, out, _ = run(capsys, "schemas", "check", str(path), "-p", p, "--json")
    assert code == 1
    report = json.loads(out)
    assert (report["valid"], report["invalid"]) == (2, 2)
    assert report["by_reason"] == {"payload_format": 1, "schema_violation": 1}
    assert [(e["line"], e["path"]) for e in report["first_errors"]] == [
        (2, None),
        (4, "properties.price"),
    ]
    code, out, _ = run(capsys, "schemas", "check", str(path), "-p", p)
    assert code == 1 and "schema_violation" in out and "properties.price" in out
    # nothing was stored
    assert not (project.root / "data" / "log").exists() or not any(
        (project.root / "data" / "log").iterdir()
    )


@pytest.mark.parametrize("command", ["list", "show", "register", "check"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schemas", command, "--help")
    assert code == 0 and "--project" in out
