"""The CLI's shared behaviour: help everywhere, one-line errors, exit codes, init."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from fluvial.cli import app, main


def _all_command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(cmd: Any, prefix: list[str]) -> None:
        paths.append(prefix)
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*prefix, name])

    walk(root, [])
    return paths


@pytest.mark.parametrize("path", _all_command_paths(), ids=lambda p: " ".join(p) or "fluvial")
def test_every_command_has_help(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_init_writes_project_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "shop"
    assert main(["init", str(target)]) == 0
    text = (target / "fluvial.toml").read_text()
    assert "# partitions = 4" in text and "[collector]" in text
    assert all((target / d).is_dir() for d in ("pipelines", "models", "schemas"))
    capsys.readouterr()
    assert main(["init", str(target)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err


def test_unknown_option_is_usage_error() -> None:
    assert main(["init", "--no-such-flag"]) == 2


def test_config_error_is_one_line_exit_1(tmp_path: Path) -> None:
    target = tmp_path / "p"
    main(["init", str(target)])
    (target / "fluvial.toml").write_text("[log]\npartitons = 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "fluvial", "log", "topics", "--project", str(target)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    assert "did you mean 'partitions'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
