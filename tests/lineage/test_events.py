"""Run events: the OpenLineage 2-0-2 shape (checked against the spec subset) and facets."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from tests.lineage.helpers import spec_errors

from fluvial.errors import UsageError
from fluvial.lineage import new_run_id, run_event

RUN = "01890a5d-ac96-774b-bcce-b302099a8057"
SQL = """
SELECT o.user_id, u.country, sum(o.amount) AS revenue
FROM refined.orders AS o JOIN refined.users AS u ON u.id = o.user_id
GROUP BY 1, 2
"""
ORDERS = pa.schema([("user_id", pa.int64()), ("amount", pa.float64()), ("day", pa.date32())])
USERS = pa.schema(
    [("id", pa.int64()), ("country", pa.string()), ("addr", pa.struct([("zip", pa.string())]))]
)
OUT = pa.schema([("user_id", pa.int64()), ("country", pa.string()), ("revenue", pa.float64())])
SCHEMAS = {"refined.orders": ORDERS, "refined.users": USERS, "curated.revenue": OUT}


def _event(event_type: str = "COMPLETE", **kw: object) -> dict:
    args: dict = {
        "inputs": ["refined.orders", "refined.users"],
        "outputs": ["curated.revenue"],
        "sql": SQL,
        "schemas": SCHEMAS,
    }
    args.update(kw)
    return run_event(event_type, "curated.revenue", RUN, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("event_type", ["START", "COMPLETE", "FAIL"])
def test_events_satisfy_the_spec_subset(event_type: str) -> None:
    event = _event(event_type, error="boom" if event_type == "FAIL" else None)
    assert spec_errors(event) == []
    assert event["eventType"] == event_type
    assert event["run"]["runId"] == RUN
    assert event["job"] == {
        "namespace": "fluvial",
        "name": "curated.revenue",
        "facets": event["job"]["facets"],
    }
    assert event["job"]["facets"]["sql"]["query"] == SQL
    assert event["job"]["facets"]["jobType"]["processingType"] == "BATCH"
    assert [d["name"] for d in event["inputs"]] == ["refined.orders", "refined.users"]
    when = datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - when).total_seconds()) < 60


def test_the_subset_rejects_what_the_spec_rejects() -> None:
    """The schema is not a rubber stamp: broken events fail it."""
    good = _event()
    assert spec_errors(good) == []
    for breakage in (
        lambda e: e["run"].update(runId="run-1"),
        lambda e: e.update(eventType="DONE"),
        lambda e: e["job"].pop("namespace"),
        lambda e: e["outputs"][0]["facets"]["columnLineage"].pop("_schemaURL"),
        lambda e: e["outputs"][0]["facets"]["columnLineage"]["fields"]["revenue"]["inputFields"][
            0
        ].pop("field"),
        lambda e: e["outputs"][0]["facets"]["schema"]["fields"].append({"type": "int"}),
        lambda e: e.pop("schemaURL"),
    ):
        event = _event()
        breakage(event)
        assert spec_errors(event), breakage


def test_schema_facets_list_every_field_with_its_type() -> None:
    event = _event()
    users = next(d for d in event["inputs"] if d["name"] == "refined.users")
    fields = users["facets"]["schema"]["fields"]
    assert [f["name"] for f in fields] == USERS.names
    assert [f["type"] for f in fields] == [str(t) for t in USERS.types]
    assert fields[2]["fields"] == [{"name": "zip", "type": "string"}]
    out = event["outputs"][0]["facets"]["schema"]["fields"]
    assert [f["name"] for f in out] == OUT.names


def test_column_lineage_facet_on_outputs() -> None:
    fields = _event()["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert set(fields) == {"user_id", "country", "revenue"}

    def inputs(col: str) -> set[tuple[str, str, str, str]]:
        return {
            (f["namespace"], f["name"], f["field"], t["subtype"])
            for f in fields[col]["inputFields"]
            for t in f["transformations"]
        }

    assert inputs("user_id") == {("fluvial", "refined.orders", "user_id", "IDENTITY")}
    assert inputs("country") == {("fluvial", "refined.users", "country", "IDENTITY")}
    assert inputs("revenue") == {("fluvial", "refined.orders", "amount", "AGGREGATION")}


def test_outputs_are_named_after_the_output_schema_by_position() -> None:
    out = pa.schema([("uid", pa.int64()), ("land", pa.string()), ("total", pa.float64())])
    event = _event(schemas={**SCHEMAS, "curated.revenue": out})
    assert list(event["outputs"][0]["facets"]["columnLineage"]["fields"]) == out.names


def test_fail_carries_the_error_message() -> None:
    event = _event("FAIL", error="Binder Error: column x not found")
    facet = event["run"]["facets"]["errorMessage"]
    assert facet["message"] == "Binder Error: column x not found"
    assert facet["programmingLanguage"] == "PYTHON"
    assert "errorMessage" not in _event("COMPLETE")["run"]["facets"]


def test_sql_that_cannot_be_traced_still_gives_an_event_saying_why() -> None:
    event = _event(sql="SELECT FROM WHERE (")
    assert spec_errors(event) == []
    assert "columnLineage" not in event["outputs"][0]["facets"]
    error = event["run"]["facets"]["extractionError"]
    assert error["failedTasks"] == 1 and "SQL" in error["errors"][0]["errorMessage"]


def test_no_sql_no_lineage_facets() -> None:
    event = run_event("START", "copy", RUN, ["raw.a"], ["raw.b"])
    assert spec_errors(event) == []
    assert "sql" not in event["job"]["facets"]
    assert "facets" not in event["outputs"][0]


def test_bad_arguments_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="event type"):
        run_event("DONE", "j", RUN, [], [])  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="UUID"):
        run_event("START", "j", "run-1", [], [])


def test_new_run_ids_are_uuid7_in_time_order() -> None:
    ids = [new_run_id() for _ in range(50)]
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert len(set(ids)) == 50
    ms = [u.int >> 80 for u in parsed]
    assert ms == sorted(ms)
    now = int(datetime.now(UTC).timestamp() * 1000)
    assert abs(ms[-1] - now) < 60_000
