"""The package's public surface is deliberate: pin it, so a change to it is a decision."""

from __future__ import annotations

import fluvial
import fluvial.errors
import fluvial.log


def test_root_exports() -> None:
    assert fluvial.__all__ == sorted(fluvial.__all__)
    assert set(fluvial.__all__) == {
        "FluvialError",
        "Project",
        "Settings",
        "__version__",
        "load_settings",
    }
    for name in fluvial.__all__:
        assert hasattr(fluvial, name)


def test_every_error_is_a_fluvial_error() -> None:
    for name in fluvial.errors.__all__:
        obj = getattr(fluvial.errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, fluvial.errors.FluvialError), name


def test_every_documented_error_is_in_the_docstring() -> None:
    doc = fluvial.errors.__doc__ or ""
    for name in fluvial.errors.__all__:
        if isinstance(getattr(fluvial.errors, name), type):
            assert name in doc, f"{name} is missing from the hierarchy in errors.py's docstring"


def test_log_exports_are_unique_and_present() -> None:
    assert len(set(fluvial.log.__all__)) == len(fluvial.log.__all__)
    for name in fluvial.log.__all__:
        assert hasattr(fluvial.log, name)
