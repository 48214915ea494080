"""The pure policy engine: thresholds by tier, conditions, value at risk, approval, keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from actionkit import customer, event, score

from actions.decide import Situation, decide, idempotency_key
from actions.policy import ActionType, PolicyError, load_policy
from closedloop.events import EventType, Severity


def _decide(policy, customers, churn, fault=0.5, kind=EventType.ALARM_ONSET, **fields):
    trigger = event(kind, **fields)
    situation = Situation(
        trigger,
        "outage:x",
        customers,
        {c: score(c, p) for c, p in churn.items()},
        score(trigger.cell_id, fault, "fault") if fault is not None else None,
    )
    return decide(situation, policy)


def _by(decisions, action):
    return {d.target: d for d in decisions if d.action is action}


def test_outage_opens_one_ticket_per_cell_and_messages_each_customer(policy):
    people = [customer(1), customer(2)]
    decisions = _decide(policy, people, {"cus_0000001": 0.1, "cus_0000002": 0.1})
    assert list(_by(decisions, ActionType.TROUBLE_TICKET)) == ["cell_00001"]
    assert set(_by(decisions, ActionType.CUSTOMER_MESSAGE)) == {"cus_0000001", "cus_0000002"}
    assert not _by(decisions, ActionType.ESCALATE_INCIDENT)  # no gold or platinum customer


def test_threshold_depends_on_the_sla_tier(policy):
    gold, bronze = customer(1, sla_tier="gold", mrr=120), customer(2, sla_tier="silver", mrr=120)
    decisions = _decide(policy, [gold, bronze], {"cus_0000001": 0.2, "cus_0000002": 0.2})
    credits = _by(decisions, ActionType.BILL_CREDIT)
    assert set(credits) == {"cus_0000001"}  # gold needs 0.1, silver 0.3
    assert credits["cus_0000001"].amount == 12.0  # 10 % of MRR
    assert ActionType.ESCALATE_INCIDENT in {d.action for d in decisions}


def test_value_at_risk_sets_priority_and_approval(policy):
    rich = customer(1, mrr=1_000, contract_type="one_year")
    modest = customer(2, mrr=40)
    decisions = _decide(policy, [rich, modest], {"cus_0000001": 0.9, "cus_0000002": 0.6})
    offers = _by(decisions, ActionType.RETENTION_OFFER)
    assert offers["cus_0000001"].value_at_risk == 0.9 * 12 * 1_000
    assert offers["cus_0000001"].priority == 2 and offers["cus_0000001"].needs_approval
    assert offers["cus_0000002"].priority == 3 and not offers["cus_0000002"].needs_approval


def test_contract_condition_excludes_committed_customers(policy):
    committed = customer(1, contract_type="two_year", mrr=200)
    decisions = _decide(policy, [committed], {"cus_0000001": 0.95})
    assert not _by(decisions, ActionType.RETENTION_OFFER)


def test_without_scores_only_threshold_zero_rules_fire(policy):
    decisions = _decide(policy, [customer(1)], {}, fault=None)
    assert {d.action for d in decisions} == {
        ActionType.TROUBLE_TICKET,
        ActionType.CUSTOMER_MESSAGE,
    }
    assert all(d.probability == 0 for d in decisions)


def test_minor_severity_and_other_event_types_select_their_rules(policy):
    minor = _decide(policy, [customer(1)], {"cus_0000001": 0.9}, severity=Severity.MINOR)
    assert {d.action for d in minor} == {ActionType.RETENTION_OFFER}
    failing = _decide(
        policy, [customer(1)], {"cus_0000001": 0.1}, kind=EventType.REPEATED_FAILURE,
        customer_id="cus_0000001",
    )  # fmt: skip
    assert {d.action for d in failing} == {ActionType.TROUBLE_TICKET, ActionType.FIELD_DISPATCH}


def test_idempotency_key_is_stable_and_changes_with_each_part():
    key = idempotency_key("outage:a", "cus_1", ActionType.BILL_CREDIT, "v1")
    assert key == idempotency_key("outage:a", "cus_1", ActionType.BILL_CREDIT, "v1")
    others = {
        idempotency_key("outage:b", "cus_1", ActionType.BILL_CREDIT, "v1"),
        idempotency_key("outage:a", "cus_2", ActionType.BILL_CREDIT, "v1"),
        idempotency_key("outage:a", "cus_1", ActionType.CUSTOMER_MESSAGE, "v1"),
        idempotency_key("outage:a", "cus_1", ActionType.BILL_CREDIT, "v2"),
    }
    assert key not in others and len(others) == 4


def test_decide_is_pure(policy):
    people = [customer(n, sla_tier="platinum", mrr=300) for n in range(1, 4)]
    churn = {c.customer_id: score(c.customer_id, 0.7) for c in people}
    situation = Situation(event(), "outage:x", people, churn, score("cell_00001", 0.6, "fault"))
    first = decide(situation, policy)
    assert first == decide(situation, policy)
    assert len(first) == 3 * 3 + 3  # per customer: message, credit, offer; per cell: 3 actions


def test_a_net_gain_rule_acts_only_on_a_helpful_uplift_worth_its_cost(tmp_path):
    value = load_policy(Path("actions/policies/value.yaml"))
    people = [customer(1, mrr=100), customer(2, mrr=100), customer(3, mrr=100), customer(4)]
    trigger = event(EventType.ALARM_ONSET)
    # value_months 12 × MRR 100: an uplift of 0.001 is worth 1.2 USD, a message costs 0.5
    uplift = {
        "cus_0000001": {ActionType.CUSTOMER_MESSAGE: 0.001},
        "cus_0000002": {ActionType.CUSTOMER_MESSAGE: 0.0001},  # worth 0.12 < 0.5
        "cus_0000003": {ActionType.CUSTOMER_MESSAGE: -0.01},  # harmful
    }  # cus_0000004: no estimate
    churn = {c.customer_id: score(c.customer_id, 0.1) for c in people}
    situation = Situation(trigger, "outage:x", people, churn, None, uplift, "7")
    messaged = _by(decide(situation, value), ActionType.CUSTOMER_MESSAGE)
    assert set(messaged) == {"cus_0000001"}
    (message,) = messaged.values()
    assert (message.cost, message.expected_gain, message.uplift_version) == (0.5, 0.7, "7")
    tickets = _by(decide(situation, value), ActionType.TROUBLE_TICKET)
    assert set(tickets) == {"cell_00001"}  # incident rules need no uplift
    (ticket,) = tickets.values()
    assert (ticket.cost, ticket.expected_gain, ticket.uplift_version) == (
        value.costs.ticket, None, None,
    )  # fmt: skip

    text = Path("actions/policies/value.yaml").read_text()
    bad = text.replace("    min_net_gain: 0\n", "", 4).replace(
        "    runbook: trouble_ticket\n", "    runbook: trouble_ticket\n    min_net_gain: 0\n", 1
    )
    (tmp_path / "bad.yaml").write_text(bad)
    with pytest.raises(PolicyError, match="min_net_gain needs target customer"):
        load_policy(tmp_path / "bad.yaml")


def test_a_usage_spike_offers_an_upgrade_only_where_the_expected_mrr_gained_pays(policy):
    people = [customer(1, mrr=50), customer(2, mrr=50), customer(3, mrr=50)]
    # the upsell estimate: chance of accepting × the upgrade's MRR gain / MRR; value_months 12 ×
    # MRR 50 × 0.02 = 12 USD against the offer's 0.5 contact + 10 incentive
    upsell = {
        "cus_0000001": {ActionType.UPGRADE_OFFER: 0.02},
        "cus_0000002": {ActionType.UPGRADE_OFFER: 0.01},  # worth 6 < 10.5
    }  # cus_0000003: no estimate
    trigger = event(EventType.USAGE_SPIKE, severity=Severity.WARNING)
    churn = {c.customer_id: score(c.customer_id, 0.1) for c in people}
    situation = Situation(trigger, "spike:x", people, churn, None, upsell, "3")
    offered = _by(decide(situation, policy), ActionType.UPGRADE_OFFER)
    assert set(offered) == {"cus_0000001"}
    (offer,) = offered.values()
    assert (offer.cost, offer.expected_gain, offer.rule_id) == (10.5, 1.5, "upgrade-offer")
    alarm = Situation(event(EventType.ALARM_ONSET), "outage:x", people, churn, None, upsell)
    assert not _by(decide(alarm, policy), ActionType.UPGRADE_OFFER)  # only a spike triggers it
