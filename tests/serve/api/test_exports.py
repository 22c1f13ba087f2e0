"""The API and alerts packages' public surface is pinned."""

from __future__ import annotations

import fluvial.serve.alerts
import fluvial.serve.api


def test_exports_unique_and_present() -> None:
    for module in (fluvial.serve.api, fluvial.serve.alerts):
        assert len(set(module.__all__)) == len(module.__all__), module.__name__
        for name in module.__all__:
            assert hasattr(module, name), name
    assert {"create_api", "execute_sql"} <= set(fluvial.serve.api.__all__)
    assert {"AlertEvaluator", "AlertRule", "AlertStore"} <= set(fluvial.serve.alerts.__all__)
