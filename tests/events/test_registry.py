"""The schema registry: built-ins, versions on disk, modes, malformed schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fluvial.errors import (
    ConfigError,
    IncompatibleSchemaError,
    NotFoundError,
    SchemaError,
    UsageError,
)
from fluvial.events import BUILTIN_TYPES, Compatibility, SchemaRegistry
from fluvial.project import Project

VIDEO_V1: dict[str, Any] = {
    "type": "object",
    "required": ["video_id"],
    "properties": {"video_id": {"type": "string"}, "seconds": {"type": "number"}},
}


def test_builtins_are_version_1(tmp_path: Path) -> None:
    reg = SchemaRegistry(tmp_path / "schemas")
    assert reg.names() == sorted(BUILTIN_TYPES)
    for name in BUILTIN_TYPES:
        info = reg.subject(name)
        assert (info.versions, info.source, info.builtin) == ((1,), "builtin", True)
        assert reg.latest(name).schema["type"] == "object"
    atc = reg.latest("add_to_cart").schema
    assert set(atc["required"]) == {"product_id", "quantity", "price"}
    assert atc["properties"]["quantity"] == {"type": "integer", "minimum": 1}


def test_register_versions_persist_on_disk(tmp_path: Path) -> None:
    root = tmp_path / "schemas"
    reg = SchemaRegistry(root)
    first = reg.register("video_play", VIDEO_V1)
    assert (first.version, first.source) == (1, "project")
    v2 = {**VIDEO_V1, "properties": {**VIDEO_V1["properties"], "muted": {"type": "boolean"}}}
    second = reg.register("video_play", v2)
    assert second.version == 2
    assert json.loads((root / "video_play" / "v2.json").read_text()) == v2
    # the same schema again is not a new version
    assert reg.register("video_play", v2).version == 2
    again = SchemaRegistry(root)  # a fresh process sees the same
    assert again.subject("video_play").versions == (1, 2)
    assert again.get("video_play", 1).schema == VIDEO_V1
    assert again.latest("video_play").fingerprint == second.fingerprint


def test_newer_version_of_a_builtin(tmp_path: Path) -> None:
    reg = SchemaRegistry(tmp_path)
    base = reg.latest("search").schema
    newer = {**base, "properties": {**base["properties"], "page": {"type": "integer"}}}
    assert reg.register("search", newer).version == 2
    info = SchemaRegistry(tmp_path).subject("search")
    assert (info.versions, info.source) == ((1, 2), "project")
    assert SchemaRegistry(tmp_path).get("search", 1).source == "builtin"


def test_incompatible_registration_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    reg = SchemaRegistry(tmp_path)
    reg.register("video_play", VIDEO_V1)
    breaking = {**VIDEO_V1, "required": ["video_id", "seconds"]}
    with pytest.raises(
        IncompatibleSchemaError, match=r"BACKWARD: properties\.seconds became required"
    ):
        reg.register("video_play", breaking)
    assert not (tmp_path / "video_play" / "v2.json").exists()
    # an explicit mode change lets it through, and is remembered
    assert reg.register("video_play", breaking, compatibility="NONE").version == 2
    assert SchemaRegistry(tmp_path).compatibility("video_play") is Compatibility.NONE


def test_per_subject_mode_overrides_the_default(tmp_path: Path) -> None:
    reg = SchemaRegistry(tmp_path, default_compatibility="FORWARD")
    reg.register("video_play", VIDEO_V1)
    loosened = {**VIDEO_V1, "required": []}
    with pytest.raises(IncompatibleSchemaError, match="FORWARD"):
        reg.check("video_play", loosened)
    reg.set_compatibility("video_play", "backward")
    reg.check("video_play", loosened)
    assert reg.subject("video_play").compatibility is Compatibility.BACKWARD
    assert reg.subject("click").compatibility is Compatibility.FORWARD


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ([1, 2], "expected a JSON object"),
        ({"type": "object", "properties": {"a": {"type": "strng"}}}, "not a valid JSON Schema"),
        ({"type": "object", "minProperties": -1}, "not a valid JSON Schema"),
        ({"type": "array"}, 'expected "type": "object", found "array"'),
        ({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}, "draft/2020-12"),
        (
            {"type": "object", "properties": {"a": {"$ref": "https://x.example/s.json"}}},
            "local references",
        ),
        ({"type": "object", "properties": {"a": {"type": "string", "pattern": "(["}}}, "schema"),
    ],
)
def test_malformed_schemas_are_refused(tmp_path: Path, schema: Any, message: str) -> None:
    with pytest.raises(SchemaError, match=message.replace("(", r"\(").replace("[", r"\[")):
        SchemaRegistry(tmp_path).register("thing", schema)


def test_names_and_lookups(tmp_path: Path) -> None:
    reg = SchemaRegistry(tmp_path)
    with pytest.raises(NotFoundError, match="did you mean 'purchase'"):
        reg.get("purchse")
    with pytest.raises(NotFoundError, match="no version 3; versions: 1"):
        reg.get("purchase", 3)
    with pytest.raises(UsageError, match="invalid event type name"):
        reg.register("../evil", VIDEO_V1)
    with pytest.raises(UsageError, match="no project folder"):
        SchemaRegistry(None).register("video_play", VIDEO_V1)


def test_bad_files_on_disk_are_reported(tmp_path: Path) -> None:
    (tmp_path / "video_play").mkdir()
    (tmp_path / "video_play" / "v1.json").write_text("{not json")
    with pytest.raises(SchemaError, match=r"v1\.json: cannot read JSON"):
        SchemaRegistry(tmp_path)
    (tmp_path / "video_play" / "v1.json").write_text(json.dumps(VIDEO_V1))
    (tmp_path / "video_play" / "v3.json").write_text(json.dumps(VIDEO_V1))
    with pytest.raises(SchemaError, match=r"without gaps, found \[1, 3\]"):
        SchemaRegistry(tmp_path)


def test_for_project_uses_settings(project: Project) -> None:
    (project.root / "fluvial.toml").write_text('[schemas]\ncompatibility = "full"\n')
    reg = SchemaRegistry.for_project(Project(project.root))
    assert reg.default_compatibility is Compatibility.FULL
    assert reg.root == project.schemas_dir
    (project.root / "fluvial.toml").write_text('[schemas]\ncompatibility = "sideways"\n')
    with pytest.raises(ConfigError, match=r"schemas\.compatibility"):
        SchemaRegistry.for_project(Project(project.root))
