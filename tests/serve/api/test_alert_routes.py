"""The alert routes: rules (file and API), create / replace / delete, states, history."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from fluvial.project import Project
from fluvial.serve.alerts import AlertEvaluator
from fluvial.serve.api import create_api
from fluvial.serve.store import open_store

from .conftest import TestClient, admin_key

FILE_RULE = """
[[rule]]
name = "from_file"
kind = "threshold"
metric = "late_rows"
threshold = 1
"""

RULE = {
    "name": "hot",
    "kind": "threshold",
    "table": "temps",
    "column": "celsius",
    "agg": "max",
    "op": ">",
    "threshold": 30,
    "for": "1 min",
}


def test_rule_lifecycle(tmp_path: Any) -> None:
    project = Project.init(tmp_path / "p")
    (project.root / "alerts.toml").write_text(FILE_RULE)
    headers = {"Authorization": f"Bearer {admin_key(project)}"}
    with TestClient(create_api(Project(project.root)), headers=headers) as client:
        res = client.post("/api/alerts/rules", json=RULE)
        assert res.status_code == 201, res.text
        created = res.json()
        assert created["origin"] == "api" and created["state"]["state"] == "OK"
        assert created["rule"]["for"] == 60.0
        assert created["summary"] == "max celsius of store table temps > 30 for 60s"

        again = client.post("/api/alerts/rules", json=RULE)
        assert again.status_code == 400 and "already exists" in again.json()["message"]
        bad = client.post("/api/alerts/rules", json={**RULE, "name": "x", "threshold": None})
        assert bad.status_code == 400 and "needs a 'threshold'" in bad.json()["message"]

        listed = client.get("/api/alerts/rules").json()
        assert [(r["name"], r["origin"]) for r in listed] == [("from_file", "file"), ("hot", "api")]

        res = client.put("/api/alerts/rules/hot", json={**RULE, "threshold": 35})
        assert res.status_code == 200 and res.json()["rule"]["threshold"] == 35
        res = client.put("/api/alerts/rules/from_file", json={**RULE, "name": "from_file"})
        assert res.status_code == 400 and "edit the file" in res.json()["message"]
        res = client.put("/api/alerts/rules/hot", json={**RULE, "name": "other"})
        assert res.status_code == 400

        with open_store(project) as store:
            store.upsert("temps", pa.table({"room": ["a", "b"], "celsius": [21.0, 36.5]}), ["room"])
        with AlertEvaluator(project) as ev:
            t0 = 1_800_000_000.0
            ev.evaluate_once(t0)
            ev.evaluate_once(t0 + 60)
        hot = client.get("/api/alerts/rules/hot").json()
        assert hot["state"]["state"] == "FIRING" and hot["state"]["value"] == 36.5
        states = client.get("/api/alerts/states").json()
        assert [s["rule"] for s in states] == ["hot", "from_file"]  # firing first
        history = client.get("/api/alerts/history", params={"rule": "hot"}).json()
        assert [(h["from_state"], h["to_state"]) for h in history] == [
            ("PENDING", "FIRING"),
            ("OK", "PENDING"),
        ]

        assert client.delete("/api/alerts/rules/hot").status_code == 204
        assert client.get("/api/alerts/rules/hot").status_code == 404
        assert client.delete("/api/alerts/rules/from_file").status_code == 400
        # the history outlives the rule
        assert len(client.get("/api/alerts/history").json()) == 2
