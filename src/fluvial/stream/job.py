"""A pipeline file, from text to a runnable plan: ``load_job(path)`` and ``plan_script``.

>>> job = plan_text('''
... CREATE TABLE src (a INT) WITH ('connector' = 'filesystem', 'path' = 'x', 'format' = 'json');
... CREATE TABLE out (a INT) WITH ('connector' = 'blackhole');
... INSERT INTO out SELECT a FROM src WHERE a > 1;''', source="p.sql")
>>> job.name, len(job.pipelines)
('p', 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fluvial.errors import UsageError
from fluvial.stream.plan.build import build_job
from fluvial.stream.plan.nodes import Job
from fluvial.stream.sql import parse_script

__all__ = ["load_job", "plan_text"]


def plan_text(
    text: str,
    source: str = "",
    name: str | None = None,
    defaults: Mapping[str, str] | None = None,
) -> Job:
    """Parse and plan Flink SQL *text* (raises SqlError with line and column).

    *defaults* are configuration keys (e.g. from fluvial.toml's ``[stream]``) that the
    script's own ``SET`` statements override.
    """
    return build_job(parse_script(text, source=source), name=name, defaults=defaults)


def load_job(
    path: Path | str, name: str | None = None, defaults: Mapping[str, str] | None = None
) -> Job:
    """Read, parse and plan a pipeline file; the job is named after the file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"expected a pipeline file (Flink SQL), found nothing at {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    return plan_text(text, source=str(path), name=name or path.stem, defaults=defaults)
