"""The schema registry: a versioned JSON Schema (draft 2020-12) per event type.

Each *subject* (an event type) has versions 1, 2, …; a schema describes the event's
``properties`` object. The built-in types (:data:`BUILTIN_TYPES`) ship as version 1 inside
the package; a project registers newer versions, and its own types, as files::

    schemas/<type>/v<N>.json      the schema of version N
    schemas/<type>/subject.json   {"compatibility": "BACKWARD"} (optional; per-subject mode)

A project file ``v<N>.json`` takes precedence over a built-in version N. Events validate
against a subject's latest version. Registering checks the schema (meta-validation with
jsonschema-rs) and the subject's compatibility mode (:mod:`fluvial.events.compat`).

>>> reg = SchemaRegistry(None)
>>> reg.latest("add_to_cart").schema["required"]
['product_id', 'quantity', 'price']
>>> reg.subject("add_to_cart").source
'builtin'
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema_rs

from fluvial.errors import ConfigError, NotFoundError, SchemaError, UsageError, did_you_mean
from fluvial.events.compat import Compatibility, check_compatibility

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = [
    "BUILTIN_TYPES",
    "RegisteredSchema",
    "SchemaRegistry",
    "SubjectInfo",
    "check_schema",
]

BUILTIN_TYPES = (
    "page_view",
    "click",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "purchase",
    "identify",
)

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
_SUBJECT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
_VERSION_RE = re.compile(r"^v([1-9][0-9]*)\.json$")
SUBJECT_FILE = "subject.json"


@dataclass(frozen=True)
class RegisteredSchema:
    """One version of a subject's schema."""

    subject: str
    version: int
    schema: Mapping[str, Any]
    source: str  # "builtin" | "project"

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON (sorted keys): equal schemas, equal fingerprints."""
        return hashlib.sha256(_canonical(self.schema).encode()).hexdigest()


@dataclass(frozen=True)
class SubjectInfo:
    """A subject's versions and compatibility mode."""

    name: str
    versions: tuple[int, ...]
    compatibility: Compatibility
    source: str  # of the latest version: "builtin" | "project"
    builtin: bool

    @property
    def latest(self) -> int:
        return self.versions[-1]


def _canonical(schema: Any) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _non_local_refs(node: Any, path: str = "") -> str | None:
    """The path of the first ``$ref`` that is not local (``#…``), else None."""
    if isinstance(node, Mapping):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            return f"{path}/$ref" if path else "$ref"
        for key, value in node.items():
            found = _non_local_refs(value, f"{path}/{key}")
            if found:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = _non_local_refs(value, f"{path}/{i}")
            if found:
                return found
    return None


def check_schema(schema: Any, *, where: str = "schema") -> dict[str, Any]:
    """Check that *schema* is a usable event-properties schema; return it as a dict.

    It must be a draft 2020-12 JSON Schema (meta-validated by jsonschema-rs) describing an
    object (``"type": "object"``), and use only local ``$ref``s.

    >>> check_schema({"type": "array"})
    Traceback (most recent call last):
    ...
    fluvial.errors.SchemaError: schema: an event's properties are an object: expected "type": "object", found "array"
    """
    if not isinstance(schema, Mapping):
        raise SchemaError(
            f"{where}: expected a JSON object (a JSON Schema), found {type(schema).__name__}"
        )
    schema = dict(schema)
    declared = schema.get("$schema")
    if declared is not None and str(declared).rstrip("#") != DRAFT_2020_12:
        raise SchemaError(f"{where}: expected $schema {DRAFT_2020_12!r}, found {declared!r}")
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as exc:
        at = "/".join(str(p) for p in exc.instance_path) or "(root)"
        raise SchemaError(f"{where}: not a valid JSON Schema at {at}: {exc.message}") from exc
    except Exception as exc:  # jsonschema-rs raises ValueError etc. for unusable input
        raise SchemaError(f"{where}: not a valid JSON Schema: {exc}") from exc
    if schema.get("type") != "object":
        raise SchemaError(
            f'{where}: an event\'s properties are an object: expected "type": "object", '
            f"found {json.dumps(schema.get('type'))}"
        )
    bad_ref = _non_local_refs(schema)
    if bad_ref:
        raise SchemaError(
            f"{where}: only local references ('#/$defs/...') are supported, found one at {bad_ref}"
        )
    try:
        jsonschema_rs.Draft202012Validator(schema)  # bad regexes, unresolvable refs
    except Exception as exc:
        raise SchemaError(f"{where}: cannot compile the schema: {exc}") from exc
    return schema


def _load_builtin(name: str) -> dict[str, Any]:
    text = resources.files("fluvial.events").joinpath("builtin", f"{name}.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{path}: cannot read JSON: {exc}") from exc


def _write_json(path: Path, value: Any, *, exclusive: bool = False) -> None:
    """Write atomically; with *exclusive*, fail with FileExistsError if *path* exists."""
    text = json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        if exclusive:
            os.link(tmp, path)  # atomic create-if-absent: concurrent registrations can't collide
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class SchemaRegistry:
    """Versioned event schemas: the built-in ones plus a project's ``schemas/`` folder.

    ``root`` is the project's schemas folder (``None``: built-ins only, read-only).
    """

    def __init__(
        self,
        root: Path | str | None,
        *,
        default_compatibility: Compatibility | str = Compatibility.BACKWARD,
        builtins: bool = True,
    ) -> None:
        self.root = Path(root) if root is not None else None
        self.default_compatibility = Compatibility.parse(default_compatibility)
        self._builtins = builtins
        self._versions: dict[str, dict[int, RegisteredSchema]] = {}
        self._modes: dict[str, Compatibility] = {}
        self._stamp: tuple[Any, ...] = ()
        self.reload()

    @classmethod
    def for_project(cls, project: Project) -> SchemaRegistry:
        """The project's registry, with its default compatibility from ``[schemas]``."""
        try:
            mode = Compatibility.parse(project.settings.schemas.compatibility)
        except UsageError as exc:
            raise ConfigError(f"schemas.compatibility: {exc}") from exc
        return cls(project.schemas_dir, default_compatibility=mode)

    # -- loading ------------------------------------------------------------------------

    def disk_stamp(self) -> tuple[Any, ...]:
        """Modification times of the schema folders: changes when a schema is registered."""
        if self.root is None or not self.root.is_dir():
            return ()
        stamp: list[Any] = [self.root.stat().st_mtime_ns]
        with os.scandir(self.root) as entries:
            for entry in entries:
                if entry.is_dir():
                    stamp.append((entry.name, entry.stat().st_mtime_ns))
                    subject_file = Path(entry.path) / SUBJECT_FILE
                    if subject_file.exists():
                        stamp.append(subject_file.stat().st_mtime_ns)
        return tuple(sorted(stamp, key=str))

    def changed_on_disk(self) -> bool:
        """Whether another process registered something since the last :meth:`reload`."""
        return self.disk_stamp() != self._stamp

    def reload(self) -> None:
        """Re-read the built-ins and the project's folder."""
        versions: dict[str, dict[int, RegisteredSchema]] = {}
        modes: dict[str, Compatibility] = {}
        if self._builtins:
            for name in BUILTIN_TYPES:
                versions[name] = {1: RegisteredSchema(name, 1, _load_builtin(name), "builtin")}
        stamp = self.disk_stamp()
        if self.root is not None and self.root.is_dir():
            for folder in sorted(self.root.iterdir()):
                if not folder.is_dir() or not _SUBJECT_RE.match(folder.name):
                    continue
                for file in folder.iterdir():
                    m = _VERSION_RE.match(file.name)
                    if m:
                        n = int(m.group(1))
                        schema = check_schema(_read_json(file), where=str(file))
                        versions.setdefault(folder.name, {})[n] = RegisteredSchema(
                            folder.name, n, schema, "project"
                        )
                subject_file = folder / SUBJECT_FILE
                if subject_file.exists():
                    config = _read_json(subject_file)
                    mode = config.get("compatibility") if isinstance(config, dict) else None
                    if mode is not None:
                        try:
                            modes[folder.name] = Compatibility.parse(mode)
                        except UsageError as exc:
                            raise SchemaError(f"{subject_file}: {exc}") from exc
        self._versions = {k: v for k, v in versions.items() if v}
        for name, numbered in self._versions.items():
            expected = list(range(1, len(numbered) + 1))
            if sorted(numbered) != expected:
                raise SchemaError(
                    f"{self.root}/{name}: versions must be numbered 1..N without gaps, "
                    f"found {sorted(numbered)}"
                )
        self._modes = modes
        self._stamp = stamp

    # -- reading ------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every registered event type, sorted."""
        return sorted(self._versions)

    def __contains__(self, name: object) -> bool:
        return name in self._versions

    def _require(self, name: str) -> dict[int, RegisteredSchema]:
        if name not in self._versions:
            raise NotFoundError(
                f"event type {name!r} is not registered{did_you_mean(name, self._versions)} "
                f"(registered: {', '.join(self.names())})"
            )
        return self._versions[name]

    def compatibility(self, name: str) -> Compatibility:
        """The subject's mode: its own ``subject.json`` setting, else the project default."""
        return self._modes.get(name, self.default_compatibility)

    def subject(self, name: str) -> SubjectInfo:
        numbered = self._require(name)
        versions = tuple(sorted(numbered))
        return SubjectInfo(
            name=name,
            versions=versions,
            compatibility=self.compatibility(name),
            source=numbered[versions[-1]].source,
            builtin=name in BUILTIN_TYPES and self._builtins,
        )

    def subjects(self) -> list[SubjectInfo]:
        return [self.subject(name) for name in self.names()]

    def get(self, name: str, version: int | None = None) -> RegisteredSchema:
        """A version of a subject's schema (default: the latest)."""
        numbered = self._require(name)
        if version is None:
            return numbered[max(numbered)]
        if version not in numbered:
            raise NotFoundError(
                f"{name} has no version {version}; versions: "
                + ", ".join(str(v) for v in sorted(numbered))
            )
        return numbered[version]

    def latest(self, name: str) -> RegisteredSchema:
        return self.get(name)

    # -- writing ------------------------------------------------------------------------

    def _writable_root(self) -> Path:
        if self.root is None:
            raise UsageError("this schema registry has no project folder to write to")
        return self.root

    def set_compatibility(self, name: str, mode: Compatibility | str) -> Compatibility:
        """Set a subject's compatibility mode (stored in ``schemas/<type>/subject.json``)."""
        self._check_name(name)
        parsed = Compatibility.parse(mode)
        folder = self._writable_root() / name
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / SUBJECT_FILE, {"compatibility": parsed.value})
        self._modes[name] = parsed
        self._stamp = self.disk_stamp()
        return parsed

    @staticmethod
    def _check_name(name: str) -> None:
        if not _SUBJECT_RE.match(name):
            raise UsageError(
                f"invalid event type name {name!r}: expected a letter, then letters, "
                "digits, '_', '.' or '-' (at most 100 characters)"
            )

    def check(
        self,
        name: str,
        schema: Mapping[str, Any],
        *,
        compatibility: Compatibility | str | None = None,
    ) -> None:
        """Raise SchemaError / IncompatibleSchemaError if *schema* cannot be registered."""
        self._check_name(name)
        checked = check_schema(schema)
        mode = (
            Compatibility.parse(compatibility)
            if compatibility is not None
            else self.compatibility(name)
        )
        numbered = self._versions.get(name, {})
        previous = [(v, numbered[v].schema) for v in sorted(numbered)]
        check_compatibility(previous, checked, mode)

    def register(
        self,
        name: str,
        schema: Mapping[str, Any],
        *,
        compatibility: Compatibility | str | None = None,
    ) -> RegisteredSchema:
        """Register *schema* as the next version of *name* and return it.

        With *compatibility*, the subject's mode is first set to it (and stored). A schema
        equal to the latest version is not registered again: the latest is returned.

        Raises:
            SchemaError: the schema is malformed.
            IncompatibleSchemaError: it breaks the subject's compatibility mode.
        """
        self._check_name(name)
        root = self._writable_root()
        if self.changed_on_disk():
            self.reload()
        checked = check_schema(schema)
        numbered = self._versions.get(name, {})
        if numbered:
            latest = numbered[max(numbered)]
            if _canonical(latest.schema) == _canonical(checked):
                if compatibility is not None:
                    self.set_compatibility(name, compatibility)
                return latest
        mode = (
            Compatibility.parse(compatibility)
            if compatibility is not None
            else self.compatibility(name)
        )
        previous = [(v, numbered[v].schema) for v in sorted(numbered)]
        check_compatibility(previous, checked, mode)
        if compatibility is not None:
            self.set_compatibility(name, mode)
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        version = max(numbered, default=0) + 1
        try:
            _write_json(folder / f"v{version}.json", checked, exclusive=True)
        except FileExistsError as exc:
            raise SchemaError(
                f"{name} version {version} was registered concurrently; reload and try again"
            ) from exc
        registered = RegisteredSchema(name, version, checked, "project")
        self._versions.setdefault(name, {})[version] = registered
        self._stamp = self.disk_stamp()
        return registered
