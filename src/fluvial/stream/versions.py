"""Versions of a stream job's outputs (Kappa): replay the log into a new version, switch
readers atomically, roll back.

A pipeline's outputs are *versioned*: version 1 writes the names its file declares;
version N (N >= 2) writes the same outputs under ``<name>__v<N>``: a store table
``page_views__v2``, a topic ``active_users__v2``, a lake table ``curated.visits__v2``, a
file sink folder ``data/out/sessions__v2`` and the late-events side output
``late__v2``. Version N runs as the job ``<job>__v<N>``, with its own checkpoints and
status under ``<data_dir>/stream/<job>__v<N>/``, so it never disturbs the version that is
serving.

Readers never hard-code a physical name: :func:`current_table` maps the name a pipeline
declares to the current version's name, through the job's registry
``<data_dir>/stream/<job>/versions.json`` (replaced atomically: a reader sees the old
registry or the new one, never half of one). A job that was never replayed has no
registry, and every name is its own.

:func:`replay` plans the pipeline file with renamed outputs, registers the new version as
``building``, runs it from the earliest offsets until it has caught up with the log, marks
it ``ready`` and switches the registry's ``current`` to it; the previous version keeps
serving until that switch and stays available: :func:`rollback` points readers back.

>>> versioned_name("page_views", 1), versioned_name("page_views", 3)
('page_views', 'page_views__v3')
>>> versioned_name("curated.visits", 2), versioned_name("data/out/sessions/", 2)
('curated.visits__v2', 'data/out/sessions__v2')
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluvial.errors import NotFoundError, PipelineError, UsageError, did_you_mean
from fluvial.stream.checkpoint import now_ms

if TYPE_CHECKING:
    from fluvial.project import Project
    from fluvial.stream.plan.nodes import Job
    from fluvial.stream.runtime import JobResult, PipelineStats
    from fluvial.stream.sql.ast import CreateTable, Script

__all__ = [
    "VERSIONS_FILE",
    "Output",
    "ReplayResult",
    "Version",
    "Versions",
    "current_table",
    "current_version",
    "job_outputs",
    "load_versions",
    "pipeline_file",
    "plan_version",
    "replay",
    "resolve_job",
    "rollback",
    "switch",
    "version_job_name",
    "versioned_name",
    "versioned_script",
]

VERSIONS_FILE = "versions.json"
LATE_TOPIC_OPTION = "fluvial.late-events.topic"
#: sink connector -> (output kind, the option naming the output)
SINK_OUTPUTS: dict[str, tuple[str, str]] = {
    "store": ("store", "table"),
    "fluvial": ("topic", "topic"),
    "lake": ("lake", "table"),
    "filesystem": ("path", "path"),
}
READY, BUILDING, FAILED = "ready", "building", "failed"


def versioned_name(name: str, version: int) -> str:
    """The name an output has in *version* (version 1 keeps the declared name)."""
    if version < 1:
        raise UsageError(f"versions are numbered from 1; found {version}")
    base = name.rstrip("/") or name
    return base if version == 1 else f"{base}__v{version}"


def version_job_name(job: str, version: int) -> str:
    """The job (checkpoint and status folder) that builds *version* of *job*."""
    return versioned_name(job, version)


@dataclass(frozen=True)
class Output:
    """One output of a job: its kind (store | topic | lake | path), declared name, and
    the name it has in one version."""

    kind: str
    name: str
    physical: str

    def as_dict(self) -> dict[str, str]:
        """A JSON-friendly dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Version:
    """One version of a job: the job that builds it and where its outputs are."""

    version: int
    job: str
    outputs: tuple[Output, ...]
    state: str = READY
    created_ms: int = 0
    finished_ms: int | None = None
    error: str | None = None

    def physical(self, name: str, kind: str | None = None) -> str | None:
        """This version's name for the declared output *name* (None: not an output)."""
        for out in self.outputs:
            if out.name == name and (kind is None or out.kind == kind):
                return out.physical
        return None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "version": self.version,
            "job": self.job,
            "state": self.state,
            "created_ms": self.created_ms,
            "finished_ms": self.finished_ms,
            "error": self.error,
            "outputs": [o.as_dict() for o in self.outputs],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Version:
        return cls(
            version=int(doc["version"]),
            job=str(doc["job"]),
            outputs=tuple(Output(**o) for o in doc.get("outputs", [])),
            state=str(doc.get("state", READY)),
            created_ms=int(doc.get("created_ms", 0)),
            finished_ms=doc.get("finished_ms"),
            error=doc.get("error"),
        )


@dataclass(frozen=True)
class Versions:
    """A job's registry: every version and the one readers use (``current``)."""

    job: str
    current: int
    versions: tuple[Version, ...] = field(default=())

    def get(self, version: int) -> Version:
        """One version; :class:`NotFoundError` when there is no such version."""
        for v in self.versions:
            if v.version == version:
                return v
        known = ", ".join(str(v.version) for v in self.versions)
        raise NotFoundError(f"job '{self.job}' has no version {version} (versions: {known})")

    @property
    def active(self) -> Version:
        """The version readers use."""
        return self.get(self.current)

    def replace(self, version: Version) -> Versions:
        """A registry with *version* added or replaced."""
        others = [v for v in self.versions if v.version != version.version]
        ordered = tuple(sorted([*others, version], key=lambda v: v.version))
        return dataclasses.replace(self, versions=ordered)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (what ``versions.json`` holds)."""
        return {
            "job": self.job,
            "current": self.current,
            "versions": [v.as_dict() for v in self.versions],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Versions:
        return cls(
            job=str(doc["job"]),
            current=int(doc["current"]),
            versions=tuple(Version.from_dict(v) for v in doc.get("versions", [])),
        )


@dataclass(frozen=True)
class ReplayResult:
    """What :func:`replay` did: the version built, the one it replaced, and the run."""

    job: str
    version: int
    previous: int
    switched: bool
    result: JobResult

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "job": self.job,
            "version": self.version,
            "previous": self.previous,
            "switched": self.switched,
            "checkpoint_id": self.result.checkpoint_id,
            "pipelines": [vars(s) for s in self.result.pipelines],
        }


# --------------------------------------------------------------------------- the registry


def _registry_path(project: Project, job: str) -> Path:
    return project.data_dir / "stream" / job / VERSIONS_FILE


def load_versions(project: Project, job: str) -> Versions | None:
    """The registry of *job*, or None when the job was never replayed."""
    path = _registry_path(project, job)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise PipelineError(f"{path}: unreadable versions registry ({exc})") from exc
    return Versions.from_dict(doc)


def _save(project: Project, versions: Versions) -> None:
    """Replace the registry atomically and durably (write, fsync, rename, fsync dir)."""
    path = _registry_path(project, versions.job)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{VERSIONS_FILE}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(versions.as_dict(), fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _locked(project: Project, job: str) -> Iterator[None]:
    """One replay, switch or rollback of *job* at a time (an OS file lock)."""
    path = project.data_dir / "stream" / job / "versions.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise UsageError(
                f"job '{job}' is being replayed or switched by another process; try again "
                "when it has finished"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def current_version(project: Project, job: str) -> int:
    """The version of *job* readers use (1 when it was never replayed)."""
    versions = load_versions(project, job)
    return 1 if versions is None else versions.current


def _registries(project: Project) -> Iterator[Versions]:
    stream_dir = project.data_dir / "stream"
    if not stream_dir.is_dir():
        return
    for path in sorted(stream_dir.glob(f"*/{VERSIONS_FILE}")):
        found = load_versions(project, path.parent.name)
        if found is not None:
            yield found


def current_table(project: Project, name: str, kind: str | None = None) -> str:
    """The name readers use now for the output a pipeline declares as *name*.

    *kind* (store | topic | lake | path) narrows the match when names are shared across
    kinds. A name no replayed job declares is returned unchanged.

    >>> from fluvial.project import Project
    >>> import tempfile
    >>> current_table(Project.init(tempfile.mkdtemp() + "/p"), "page_views")
    'page_views'
    """
    for versions in _registries(project):
        physical = versions.active.physical(name, kind)
        if physical is not None:
            return physical
    return name


# --------------------------------------------------------------------------- planning


def pipeline_file(project: Project, pipeline: str | Path) -> Path:
    """A pipeline given as a file path or as a name in the project's ``pipelines/``."""
    path = Path(pipeline)
    if path.is_file():
        return path
    folder = project.root / "pipelines"
    candidate = folder / f"{pipeline}.sql"
    if candidate.is_file():
        return candidate
    names = sorted(p.stem for p in folder.glob("*.sql")) if folder.is_dir() else []
    raise NotFoundError(
        f"there is no pipeline '{pipeline}': neither a file nor pipelines/{pipeline}.sql"
        f"{did_you_mean(str(pipeline), names)}"
        + (f" (pipelines: {', '.join(names)})" if names else "")
    )


def _read_script(path: Path) -> Script:
    from fluvial.stream.sql import parse_script

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    return parse_script(text, source=str(path))


def _rename(table: CreateTable, version: int, sink: bool) -> tuple[CreateTable, list[Output]]:
    """*table* with its outputs renamed for *version*, and those outputs: a sink's
    table, topic or path, and a source's late-events topic."""
    options = dict(table.options)
    outputs = []
    kind_option = SINK_OUTPUTS.get(options.get("connector", "")) if sink else None
    if kind_option is not None and kind_option[1] in options:
        kind, option = kind_option
        declared = versioned_name(options[option], 1)
        options[option] = versioned_name(declared, version)
        outputs.append(Output(kind, declared, options[option]))
    if LATE_TOPIC_OPTION in options:
        declared = options[LATE_TOPIC_OPTION]
        options[LATE_TOPIC_OPTION] = versioned_name(declared, version)
        outputs.append(Output("topic", declared, options[LATE_TOPIC_OPTION]))
    return dataclasses.replace(table, options=options), outputs


def _rewrite(script: Script, version: int) -> tuple[Script, list[Output]]:
    from fluvial.stream.sql.ast import CreateTable

    targets = {ins.table for ins in script.inserts}
    statements = []
    outputs: list[Output] = []
    for statement in script.statements:
        if isinstance(statement, CreateTable):
            statement, found = _rename(statement, version, statement.name in targets)
            outputs += found
        statements.append(statement)
    return dataclasses.replace(script, statements=tuple(statements)), outputs


def job_outputs(script: Script, version: int = 1) -> list[Output]:
    """The outputs a pipeline script writes (sink tables, late-events topics), named as
    in *version*. Print and blackhole sinks have none."""
    return _rewrite(script, version)[1]


def versioned_script(script: Script, version: int) -> Script:
    """*script* writing *version*'s outputs (its sources and queries unchanged)."""
    return _rewrite(script, version)[0]


def plan_version(project: Project, file: Path, version: int, job: str | None = None) -> Job:
    """The job that builds *version* of the pipeline in *file* (named ``<job>__v<N>``)."""
    from fluvial.stream.plan.build import build_job

    script = versioned_script(_read_script(file), version)
    name = version_job_name(job or file.stem, version)
    return build_job(script, name=name, defaults=project.settings.stream.flink_options())


def resolve_job(project: Project, file: Path | str) -> Job:
    """The job ``stream run`` should run for *file*: its current version (the file's own
    names when it was never replayed)."""
    path = Path(file)
    return plan_version(project, path, current_version(project, path.stem))


# --------------------------------------------------------------------------- operations


def _initial(project: Project, job: str, script: Script) -> Versions:
    """The registry of a job never replayed: version 1, its declared outputs, current."""
    first = Version(1, job, tuple(job_outputs(script, 1)), READY, created_ms=now_ms())
    return Versions(job, 1, (first,))


def replay(
    project: Project,
    pipeline: str | Path,
    *,
    start: str = "earliest",
    switch_when_done: bool = True,
    stop: threading.Event | None = None,
    on_progress: Callable[[list[PipelineStats]], None] | None = None,
    max_rows: int | None = None,
) -> ReplayResult:
    """Rebuild a pipeline's outputs from the log into a new version, then switch readers.

    The new version N runs as job ``<job>__v<N>`` from *start* (the earliest offsets by
    default) until it has caught up with its sources; meanwhile readers keep using the
    current version. Once it is complete the registry is replaced atomically with N as
    current (unless *switch_when_done* is False). A failed or stopped replay leaves the
    current version in place and the new one marked ``failed``.

    Raises:
        NotFoundError: there is no such pipeline.
        UsageError: another replay or switch of the job is under way.
        PipelineError, SqlError: the pipeline does not plan or run.
    """
    from fluvial.stream.runtime import run_job

    file = pipeline_file(project, pipeline)
    job_name = file.stem
    script = _read_script(file)
    with _locked(project, job_name):
        versions = load_versions(project, job_name) or _initial(project, job_name, script)
        number = max(v.version for v in versions.versions) + 1
        job = plan_version(project, file, number, job_name)
        building = Version(
            number, job.name, tuple(job_outputs(script, number)), BUILDING, created_ms=now_ms()
        )
        versions = versions.replace(building)
        _save(project, versions)
        try:
            result = run_job(
                job,
                project=project,
                start=start,
                until_idle=True,
                stop=stop,
                on_progress=on_progress,
                max_rows=max_rows,
            )
            if stop is not None and stop.is_set():
                raise PipelineError(f"the replay of '{job_name}' was stopped before it caught up")
        except BaseException as exc:
            failed = dataclasses.replace(
                building, state=FAILED, finished_ms=now_ms(), error=str(exc) or type(exc).__name__
            )
            _save(project, versions.replace(failed))
            raise
        ready = dataclasses.replace(building, state=READY, finished_ms=now_ms())
        versions = versions.replace(ready)
        previous = versions.current
        if switch_when_done:
            versions = dataclasses.replace(versions, current=number)
        _save(project, versions)
    return ReplayResult(job_name, number, previous, switch_when_done, result)


def switch(project: Project, job: str, version: int) -> Versions:
    """Point readers of *job* at *version* (which must be ``ready``), atomically.

    Raises:
        NotFoundError: the job has no registry or no such version.
        UsageError: the version is not ready (still building, or failed).
    """
    with _locked(project, job):
        versions = load_versions(project, job)
        if versions is None:
            raise NotFoundError(
                f"job '{job}' has a single version (it was never replayed): nothing to switch to"
            )
        target = versions.get(version)
        if target.state != READY:
            raise UsageError(
                f"version {version} of job '{job}' is {target.state}, not ready: "
                "readers can only use a complete version"
            )
        versions = dataclasses.replace(versions, current=version)
        _save(project, versions)
        return versions


def rollback(project: Project, job: str, version: int | None = None) -> Versions:
    """Point readers back at *version*, by default the newest ready version older than
    the current one.

    Raises:
        NotFoundError: the job was never replayed, or has no such version.
        UsageError: there is no older ready version.
    """
    versions = load_versions(project, job)
    if versions is None:
        raise NotFoundError(
            f"job '{job}' has a single version (it was never replayed): nothing to roll back to"
        )
    if version is None:
        older = [v.version for v in versions.versions if v.version < versions.current]
        ready = [n for n in older if versions.get(n).state == READY]
        if not ready:
            raise UsageError(
                f"job '{job}' has no ready version older than its current version "
                f"{versions.current}"
            )
        version = max(ready)
    return switch(project, job, version)
