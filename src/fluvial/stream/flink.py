"""Run a pipeline file on Apache Flink (PyFlink's local mini-cluster), the reference engine.

PyFlink pins old pyarrow/pandas, so it lives in its own virtual environment
(``make flink`` builds ``.venv-flink``) and is driven here through a subprocess: this
module never imports ``pyflink``. The driver creates one streaming ``TableEnvironment``
(parallelism 1, session time zone UTC — as Fluvial's), applies each ``SET 'k' = 'v'`` to
the ``TableConfig`` (``execute_sql`` refuses SET: it is the SQL client's), runs each DDL
statement with ``execute_sql`` and the ``INSERT`` statements of a file as one ``StatementSet``,
waiting for it to finish. Several files can run in one JVM
(:func:`run_pipelines_on_flink`), one Flink job each, timed without the JVM start.

Used by ``tests/stream/test_against_flink.py`` and ``benchmarks/stream/bench_vs_flink.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fluvial.errors import PipelineError, UsageError

__all__ = [
    "FLINK_PYTHON_ENV",
    "FlinkTimings",
    "find_flink_python",
    "run_on_flink",
    "run_pipelines_on_flink",
    "split_statements",
]

#: environment variable naming the Python of a venv with ``apache-flink`` installed
FLINK_PYTHON_ENV = "FLUVIAL_FLINK_PYTHON"
DEFAULT_VENV = ".venv-flink"

# Runs inside the Flink venv: reads {"jobs": [[statement, ...], ...]} on stdin, prints
# one JSON line of timings on stdout. Kept dependency-free apart from pyflink.
_DRIVER = r"""
import json, re, sys, time
SET = re.compile(r"^SET\s+'((?:[^']|'')*)'\s*=\s*'((?:[^']|'')*)'$", re.I | re.S)
t0 = time.perf_counter()
from pyflink.table import EnvironmentSettings, TableEnvironment
request = json.load(sys.stdin)

def environment():  # one per job: each job has its own catalog, like a separate file
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = env.get_config()
    config.set("parallelism.default", "1")
    config.set("table.local-time-zone", "UTC")
    return env, config

environment()  # starts the JVM
started = time.perf_counter() - t0
jobs = []
for statements in request["jobs"]:
    t = time.perf_counter()
    env, config = environment()
    inserts = env.create_statement_set()
    n = 0
    for sql in statements:
        if sql.lstrip()[:6].upper() == "INSERT":
            inserts.add_insert_sql(sql)
            n += 1
        elif SET.match(sql.strip()):  # the SQL client's SET: TableConfig in the API
            key, value = SET.match(sql.strip()).groups()
            config.set(key.replace("''", "'"), value.replace("''", "'"))
        else:
            env.execute_sql(sql)
    if n:
        inserts.execute().wait()
    jobs.append(time.perf_counter() - t)
print("FLUVIAL-FLINK " + json.dumps({"start_s": started, "jobs_s": jobs}), flush=True)
"""


@dataclass(frozen=True)
class FlinkTimings:
    """Wall-clock seconds of one Flink driver run.

    ``start_s`` is the JVM and ``TableEnvironment`` start (excluded from the jobs);
    ``jobs_s[i]`` covers a fresh ``TableEnvironment``, planning, submitting and running job *i* to completion on the
    mini-cluster, which includes Flink's per-job start (about a second).
    """

    start_s: float
    jobs_s: tuple[float, ...]


def find_flink_python(root: Path | None = None) -> Path | None:
    """The Python of the Flink venv: ``$FLUVIAL_FLINK_PYTHON``, else
    ``<root>/.venv-flink/bin/python`` (*root* defaults to the working directory);
    None when neither exists."""
    named = os.environ.get(FLINK_PYTHON_ENV)
    if named:
        return Path(named) if Path(named).is_file() else None
    candidate = (root or Path.cwd()) / DEFAULT_VENV / "bin" / "python"
    return candidate if candidate.is_file() else None


def split_statements(sql_text: str) -> list[str]:
    """The statements of a pipeline file, split on ``;`` outside quotes and comments
    (comments are dropped; empty statements skipped).

    >>> split_statements("SET 'a' = 'x;y'; -- one; two\\nINSERT INTO t SELECT ';' FROM s;")
    ["SET 'a' = 'x;y'", "INSERT INTO t SELECT ';' FROM s"]
    """
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql_text)
    while i < n:
        c = sql_text[i]
        if c in "'\"`":
            end = i + 1
            while end < n:
                if sql_text[end] == c:
                    if end + 1 < n and sql_text[end + 1] == c:  # doubled quote: escaped
                        end += 2
                        continue
                    break
                end += 1
            current.append(sql_text[i : end + 1])
            i = end + 1
        elif sql_text.startswith("--", i):
            end = sql_text.find("\n", i)
            i = n if end < 0 else end
        elif sql_text.startswith("/*", i):
            end = sql_text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c == ";":
            statements.append("".join(current))
            current = []
            i += 1
        else:
            current.append(c)
            i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def _python(python: Path | None) -> Path:
    found = python if python is not None else find_flink_python()
    if found is None or not Path(found).is_file():
        raise UsageError(
            f"expected a Python with apache-flink installed ({DEFAULT_VENV}/bin/python "
            f"or ${FLINK_PYTHON_ENV}), found {'nothing' if found is None else found}; "
            "run `make flink`"
        )
    return Path(found)


def _java_error(stderr: str) -> str:
    """The most specific cause in a Java stack trace (the last ``Caused by``)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    causes = [ln for ln in lines if ln.startswith("Caused by:")]
    if causes:
        return causes[-1].removeprefix("Caused by:").strip()
    errors = [ln for ln in lines if "Exception" in ln or "Error" in ln]
    return (errors[-1] if errors else lines[-1] if lines else "no output")[:2000]


def run_pipelines_on_flink(
    sql_texts: Sequence[str], *, python: Path | None = None, timeout: float
) -> FlinkTimings:
    """Run each pipeline text as one Flink job, in order, in one JVM (parallelism 1).

    Raises :class:`~fluvial.errors.PipelineError` with Flink's error when a statement or
    job fails, or when the whole run exceeds *timeout* seconds.
    """
    exe = _python(python)
    request = json.dumps({"jobs": [split_statements(t) for t in sql_texts]})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        done = subprocess.run(
            [str(exe), "-I", "-c", _DRIVER],
            input=request,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:  # subprocess.run kills the child
        raise PipelineError(f"Flink did not finish within {timeout:g} s") from exc
    except OSError as exc:
        raise PipelineError(f"cannot start {exe}: {exc}") from exc
    marker = [ln for ln in done.stdout.splitlines() if ln.startswith("FLUVIAL-FLINK ")]
    if done.returncode != 0 or not marker:
        raise PipelineError(
            f"Flink failed (exit {done.returncode}): {_java_error(done.stderr + done.stdout)}"
        )
    result = json.loads(marker[-1].removeprefix("FLUVIAL-FLINK "))
    return FlinkTimings(float(result["start_s"]), tuple(float(s) for s in result["jobs_s"]))


def run_on_flink(sql_text: str, *, python: Path | None = None, timeout: float) -> None:
    """Execute a pipeline file's statements with PyFlink: ``SET``/DDL one by one, the
    ``INSERT`` statements as one statement set, waiting until the job finishes.

    *python* defaults to :func:`find_flink_python` (``$FLUVIAL_FLINK_PYTHON`` or
    ``.venv-flink/bin/python``)."""
    run_pipelines_on_flink([sql_text], python=python, timeout=timeout)


if __name__ == "__main__":  # python -m fluvial.stream.flink FILE.sql
    for arg in sys.argv[1:]:
        run_on_flink(Path(arg).read_text(encoding="utf-8"), timeout=600)
