"""A model's owner hears of its monitoring: a retraining triggered, failed or held opens one
ticket per run through the policy, the ledger, the audit trail and the dispatcher."""

from __future__ import annotations

import json

import pytest
from actionkit import T0, customer

from actions import audit
from actions.model_alerts import RULE, decide_alert, open_alert
from actions.policy import ActionType, ModelAlerts
from closedloop.alerts import AlertKind, ModelAlert


def alert(kind: AlertKind = AlertKind.TRIGGERED, run: str = "0003-20260301T0800") -> ModelAlert:
    return ModelAlert(
        model="fault",
        version="4",
        run=run,
        kind=kind,
        owner="network operations",
        at=T0,
        reasons=["drift in 5/12 features, 2 window(s) in a row", "pr_auc below the floor"],
        report="/home/monitoring/fault/0003/drift.html",
    )


def test_the_policy_decides_which_kinds_open_a_ticket(policy):
    only_failures = policy.model_copy(
        update={"model_alerts": ModelAlerts(kinds=[AlertKind.FAILED])}
    )
    assert decide_alert(alert(AlertKind.TRIGGERED), only_failures) is None
    assert decide_alert(alert(AlertKind.FAILED), only_failures) is not None
    assert decide_alert(alert(), policy.model_copy(update={"model_alerts": None})) is None


def test_the_ticket_names_the_owner_the_model_and_why(policy):
    ticket = decide_alert(alert(), policy)
    assert ticket.action is ActionType.TROUBLE_TICKET and ticket.rule_id == RULE
    assert ticket.team == "network operations" and ticket.target == "model:fault"
    assert ticket.priority == policy.model_alerts.priority
    assert ticket.params["reasons"] == alert().reasons
    assert decide_alert(alert(run="0004-x"), policy).key != ticket.key


def test_a_run_opens_one_ticket_that_is_audited_and_delivered(make_processor, tmp_path, policy):
    processor, dispatcher, clock = make_processor([customer(1)])
    ledger = processor.ledger
    key, new = open_alert(ledger, policy, alert(), clock(), "model owner ana")
    again, new_again = open_alert(ledger, policy, alert(), clock(), "model owner ana")
    assert new and key == again and not new_again
    assert ledger.read().value("SELECT count(*) FROM decisions") == 1
    row = ledger.decision(key)
    assert row["team"] == "network operations" and row["requested_by"] == "model owner ana"
    assert audit.verify(ledger).intact

    assert dispatcher.drain()["dispatched"] == 1
    (line,) = (tmp_path / "outbox" / "trouble_ticket.jsonl").read_text().splitlines()
    body = json.loads(line)["payload"]
    assert body["ticketType"] == "modelAlert" and body["externalId"] == alert().incident
    assert {"id": "network operations", "role": "owner", "@referredType": "Team"} in body[
        "relatedParty"
    ]
    model = next(e for e in body["relatedEntity"] if e["role"] == "affectedModel")
    assert model["id"] == "fault/4" and model["href"] == alert().report
    assert "pr_auc below the floor" in body["description"]


@pytest.mark.parametrize("team", [None, "billing"])
def test_a_rules_team_is_kept_on_its_decisions(make_processor, policy, team):
    from actionkit import event

    rules = [r.model_copy(update={"team": team}) for r in policy.rules]
    processor, _, _ = make_processor(
        [customer(1)], rules=policy.model_copy(update={"rules": rules})
    )
    processor.process(event())
    teams = {r["team"] for r in processor.ledger.read().rows("SELECT team FROM decisions")}
    assert teams == {team}
    assert audit.verify(processor.ledger).intact
