"""The lake package's public surface is deliberate: pin it."""

from __future__ import annotations

import fluvial.lake


def test_lake_exports() -> None:
    assert len(set(fluvial.lake.__all__)) == len(fluvial.lake.__all__)
    assert set(fluvial.lake.__all__) == {
        "ZONES",
        "AppendResult",
        "ArchiveStats",
        "Archiver",
        "Lake",
        "Route",
        "SchemaChange",
        "SchemaVersion",
        "Zone",
        "append",
        "committed_offsets",
        "connect",
        "default_routes",
        "load_extensions",
        "open_lake",
        "plan_changes",
        "run_sql",
        "schema_history",
    }
    for name in fluvial.lake.__all__:
        assert hasattr(fluvial.lake, name)
