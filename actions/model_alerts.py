"""A model's owner hears of its monitoring where the team works: a ticket through the policy,
the ledger, the audit trail and the dispatcher, like every other action."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from actions import audit
from actions.decide import Decision, idempotency_key
from actions.ledger import Ledger, Status
from actions.policy import ActionType, Policy
from actions.processor import decision_entry, decision_row
from actions.queries import existing_keys, insert
from closedloop.alerts import ModelAlert

RULE = "model-alert"
"""The rule id an owner's ticket is recorded under (the policy's ``model_alerts`` section)."""


def decide_alert(alert: ModelAlert, policy: Policy) -> Decision | None:
    """The ticket the policy asks for on ``alert``, or None when it asks for none."""
    wanted = policy.model_alerts
    if wanted is None or alert.kind not in wanted.kinds:
        return None
    target = f"model:{alert.model}"
    action = ActionType.TROUBLE_TICKET
    return Decision(
        key=idempotency_key(alert.incident, target, action, policy.version),
        incident=alert.incident,
        event_id=alert.incident,
        rule_id=RULE,
        action=action,
        target=target,
        cell_id="",
        customer_id=None,
        probability=0.0,
        value_at_risk=0.0,
        priority=wanted.priority,
        amount=None,
        impact=0.0,
        needs_approval=False,
        runbook=wanted.runbook,
        params={
            "ticketType": "modelAlert",
            "model": alert.model,
            "version": alert.version,
            "run": alert.run,
            "kind": alert.kind.value,
            "summary": alert.headline,
            "reasons": alert.reasons,
            "report": alert.report,
        },
        score=None,
        team=alert.owner,
    )


def open_alert(
    ledger: Ledger, policy: Policy, alert: ModelAlert, now: datetime, by: str | None
) -> tuple[str | None, bool]:
    """Commit the owner's ticket for ``alert`` (queued for the dispatcher) with its audit row;
    ``by``: the principal whose monitoring run raised it. Returns the ticket's key (None when
    the policy wants none) and whether it is new (a run alerts its owner once)."""
    decision = decide_alert(alert, policy)
    if decision is None:
        return None, False
    raised, at = alert.at.astimezone(UTC).isoformat(), now.astimezone(UTC).isoformat()
    params = json.dumps(decision.params, sort_keys=True)
    with ledger.write() as tx:
        if existing_keys(tx, [decision.key]):
            return decision.key, False
        row = decision_row(
            decision, policy.version, Status.PENDING, None, None, (raised, at, at), params, by
        )
        insert(tx, "decisions", [row])
        audit.append(tx, [decision_entry(decision, policy.version, Status.PENDING, [], now, None)])
    return decision.key, True
