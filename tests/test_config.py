"""Settings: defaults, fluvial.toml, FLUVIAL_<SECTION>__<KEY> overrides, clear errors."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from fluvial.config import Settings, load_settings, render_default_toml
from fluvial.errors import ConfigError


def test_defaults_render_as_valid_commented_toml() -> None:
    text = render_default_toml()
    assert tomllib.loads(text)  # every section present, every setting commented out
    uncommented = "\n".join(
        line[2:] if re.match(r"^# [a-z_]+ = ", line) else line for line in text.splitlines()
    )
    data = tomllib.loads(uncommented)
    assert data["log"]["partitions"] == Settings().log.partitions
    assert data["collector"]["port"] == Settings().collector.port


def test_file_then_environment(tmp_path: Path) -> None:
    (tmp_path / "fluvial.toml").write_text('[log]\npartitions = 6\nfsync = "always"\n')
    s = load_settings(
        tmp_path, env={"FLUVIAL_LOG__PARTITIONS": "12", "FLUVIAL_COLLECTOR__PORT": "9000"}
    )
    assert (s.log.partitions, s.log.fsync, s.collector.port) == (12, "always", 9000)


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[log]\npartitions = 'x'\n", {}, "expected int"),
        ("[lgo]\n", {}, "did you mean 'log'"),
        ("", {"FLUVIAL_LOG__PARTITIONS": "many"}, "expected int, found 'many'"),
        ("", {"FLUVIAL_LOG__PARTITONS": "3"}, "did you mean 'partitions'"),
        ("[log\n", {}, "fluvial.toml"),
    ],
)
def test_errors_name_the_setting(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    (tmp_path / "fluvial.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings(tmp_path, env=env)


def test_the_aws_backend_gives_defaults_that_explicit_settings_override(tmp_path: Path) -> None:
    (tmp_path / "fluvial.toml").write_text(
        '[project]\nbackend = "aws"\n[aws]\nresource_prefix = "shop"\n[log]\nbackend = "embedded"\n'
    )
    s = load_settings(tmp_path, env={"FLUVIAL_LAKE__WAREHOUSE": "s3://mine/wh"})
    assert (s.store.backend, s.lake.catalog_uri) == ("dynamodb", "glue")
    assert (s.log.backend, s.lake.warehouse) == ("embedded", "s3://mine/wh")  # set: kept
    s = load_settings(tmp_path, env={"FLUVIAL_LOG__PARTITIONS": "2"})
    assert s.lake.warehouse == "s3://shop-lake/warehouse"
    # the local backend (the default) changes nothing
    assert load_settings(None, env={}) == Settings()
    with pytest.raises(ConfigError, match=r"project\.backend: expected local or aws, found 'aws2'"):
        load_settings(None, env={"FLUVIAL_PROJECT__BACKEND": "aws2"})
