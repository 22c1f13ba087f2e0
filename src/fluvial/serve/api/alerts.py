"""The alert routes: rules with their states, history, and creating, replacing and deleting
the rules the API owns (a rules file's rules are read-only here)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from fluvial.serve.alerts.catalog import RuleEntry
from fluvial.serve.alerts.store import RuleState
from fluvial.serve.api.models import AlertHistoryEntry, AlertRuleOut, AlertStateOut
from fluvial.serve.api.routes import Svc

__all__ = ["router"]

router = APIRouter(prefix="/alerts", tags=["alerts"])

_RULE_EXAMPLE = {
    "name": "lagging",
    "kind": "threshold",
    "metric": "lag_seconds",
    "op": ">",
    "threshold": 120,
    "for": "2 min",
    "cooldown": "15 min",
    "channels": [{"type": "webhook", "url": "http://127.0.0.1:9000/hook"}],
}
RuleBody = Annotated[dict[str, Any], Body(examples=[_RULE_EXAMPLE])]


def _out(entry: RuleEntry, state: RuleState | None) -> AlertRuleOut:
    rule = entry.rule
    return AlertRuleOut(
        name=rule.name,
        origin=entry.origin,
        summary=rule.describe(),
        rule=rule.to_doc(),
        state=AlertStateOut.model_validate((state or RuleState(rule.name)).to_dict()),
    )


@router.get("/rules", response_model=list[AlertRuleOut])
def list_rules(svc: Svc) -> list[AlertRuleOut]:
    """Every rule (from the rules file and the API) with its state."""
    states = svc.alerts.states()
    return [_out(e, states.get(e.rule.name)) for e in svc.rules.entries()]


@router.get("/rules/{name}", response_model=AlertRuleOut)
def get_rule(svc: Svc, name: str) -> AlertRuleOut:
    """One rule with its state."""
    return _out(svc.rules.get(name), svc.alerts.states().get(name))


@router.post("/rules", response_model=AlertRuleOut, status_code=201)
def create_rule(svc: Svc, body: RuleBody) -> AlertRuleOut:
    """Create a rule (400 if invalid or if the name is taken)."""
    rule = svc.rules.create(body)
    return _out(RuleEntry(rule, "api"), None)


@router.put("/rules/{name}", response_model=AlertRuleOut)
def update_rule(svc: Svc, name: str, body: RuleBody) -> AlertRuleOut:
    """Replace a rule the API created (its state and history stay)."""
    rule = svc.rules.update(name, body)
    return _out(RuleEntry(rule, "api"), svc.alerts.states().get(name))


@router.delete("/rules/{name}", status_code=204, response_class=Response)
def delete_rule(svc: Svc, name: str) -> Response:
    """Delete a rule the API created (its history stays)."""
    svc.rules.delete(name)
    return Response(status_code=204)


@router.get("/states", response_model=list[AlertStateOut])
def states(svc: Svc) -> list[AlertStateOut]:
    """Every rule's state, firing ones first."""
    names = [e.rule.name for e in svc.rules.entries()]
    known = svc.alerts.states()
    order = {"FIRING": 0, "PENDING": 1, "RESOLVED": 2, "OK": 3}
    out = [AlertStateOut.model_validate((known.get(n) or RuleState(n)).to_dict()) for n in names]
    return sorted(out, key=lambda s: (order[s.state], s.rule))


@router.get("/history", response_model=list[AlertHistoryEntry])
def history(
    svc: Svc,
    rule: Annotated[str | None, Query(description="only this rule's changes")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[AlertHistoryEntry]:
    """State changes, newest first."""
    return [
        AlertHistoryEntry.model_validate(h.to_dict()) for h in svc.alerts.history(rule, limit=limit)
    ]
