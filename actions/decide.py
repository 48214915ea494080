"""The policy engine: ``decide(situation, policy) -> decisions``, pure and deterministic."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from actions.policy import ActionType, Policy, Rule, Target
from closedloop.events import NetworkEvent
from closedloop.models import ModelName
from closedloop.scores import Score

TIER_RANK = {"bronze": 0, "silver": 1, "gold": 2, "platinum": 3}


@dataclass(frozen=True)
class Customer:
    """What the policy may know about a customer (from the customers table)."""

    customer_id: str
    cell_id: str
    segment: str
    sla_tier: str
    contract_type: str
    mrr: float
    do_not_contact: bool = False


@dataclass(frozen=True)
class Situation:
    """One event (or outage) with the customers it affects and their scores."""

    event: NetworkEvent
    incident: str  # id of the outage or event the actions answer; part of the idempotency key
    customers: list[Customer]
    churn: dict[str, Score] = field(default_factory=dict)  # by customer id
    fault: Score | None = None  # of the event's cell
    uplift: dict[str, dict[ActionType, float]] = field(default_factory=dict)  # by customer id:
    # the expected fall in the chance of leaving each action buys (uplift models)
    uplift_version: str | None = None  # the uplift model those estimates come from


@dataclass(frozen=True, slots=True)
class Decision:
    """An action the policy asks for, before guards and approval."""

    key: str
    incident: str
    event_id: str
    rule_id: str
    action: ActionType
    target: str  # cell or customer id
    cell_id: str
    customer_id: str | None
    probability: float
    value_at_risk: float
    priority: int
    amount: float | None
    impact: float
    needs_approval: bool
    runbook: str
    params: dict[str, object]
    score: Score | None
    team: str | None = None  # who answers for the action: the rule's team, a model's owner
    held_out: bool = False  # drawn into the policy's control group: recorded, not sent
    cost: float = 0.0  # USD the action costs, as the policy's costs price it
    expected_gain: float | None = None  # uplift × value_months × MRR − cost; None: no estimate
    uplift_version: str | None = None  # the uplift model behind expected_gain


def idempotency_key(incident: str, target: str, action: ActionType, version: str) -> str:
    """Same incident, target, action and policy version: same key, so one action only."""
    text = f"{incident}|{target}|{action.value}|{version}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def drawn(key: str, share: float) -> bool:
    """A uniform draw fixed by an idempotency key: the same decision is always held out or
    always not, whoever decides it again."""
    return int(key[:8], 16) / 0x1_0000_0000 < share


def _best_tier(customers: list[Customer]) -> str:
    if len(customers) == 1:
        return customers[0].sla_tier
    return max((c.sla_tier for c in customers), key=lambda t: TIER_RANK.get(t, -1), default="")


def _applies(rule: Rule, event: NetworkEvent) -> bool:
    return event.event_type in rule.events and (
        rule.severities is None or event.severity in rule.severities
    )


def _conditions_hold(
    rule: Rule, group: list[Customer], score: Score | None, value_at_risk: float
) -> bool:
    when = rule.when
    checks = [
        when.sla_tiers is None or any(c.sla_tier in when.sla_tiers for c in group),
        when.segments is None or any(c.segment in when.segments for c in group),
        when.contracts is None or any(c.contract_type in when.contracts for c in group),
        when.mrr is None or when.mrr.holds(sum(c.mrr for c in group)),
        when.value_at_risk is None or when.value_at_risk.holds(value_at_risk),
        when.affected_customers is None or when.affected_customers.holds(len(group)),
    ]
    if when.features:
        features = score.features if score is not None else {}
        checks += [
            isinstance(features.get(name), int | float) and bounds.holds(features[name])
            for name, bounds in when.features.items()
        ]
    return all(checks)


def _amount(rule: Rule, group: list[Customer]) -> float | None:
    params = rule.action.params
    if "amount" in params:
        return float(params["amount"])
    if "mrr_fraction" in params:
        return round(float(params["mrr_fraction"]) * sum(c.mrr for c in group), 2)
    return None


def _decide_one(
    rule: Rule,
    policy: Policy,
    situation: Situation,
    target: str,
    group: list[Customer],
    score: Score | None,
) -> Decision | None:
    probability = score.probability if score is not None else 0.0  # unscored: only 0 passes
    if probability < rule.threshold_for(_best_tier(group)):
        return None
    value_at_risk = probability * policy.value_months * sum(c.mrr for c in group)
    if not _conditions_hold(rule, group, score, value_at_risk):
        return None
    mrr = sum(c.mrr for c in group)
    cost = float(policy.costs.of(rule.action.type, rule.action.params, mrr))
    uplift = (
        situation.uplift.get(group[0].customer_id, {}).get(rule.action.type)
        if rule.target is Target.CUSTOMER
        else None
    )
    gain = None if uplift is None else uplift * policy.value_months * mrr - cost
    if rule.min_net_gain is not None and (
        uplift is None or uplift <= 0 or gain < rule.min_net_gain
    ):
        return None
    amount = _amount(rule, group)
    impact = amount if amount is not None else value_at_risk
    customer = group[0].customer_id if rule.target is Target.CUSTOMER else None
    key = idempotency_key(situation.incident, target, rule.action.type, policy.version)
    holdout = policy.holdout
    return Decision(
        key=key,
        incident=situation.incident,
        event_id=situation.event.event_id,
        rule_id=rule.id,
        action=rule.action.type,
        target=target,
        cell_id=situation.event.cell_id,
        customer_id=customer,
        probability=probability,
        value_at_risk=round(value_at_risk, 2),
        priority=policy.priority(value_at_risk),
        amount=amount,
        impact=round(impact, 2),
        needs_approval=rule.approval_above is not None and impact > rule.approval_above,
        runbook=rule.runbook,
        params=dict(rule.action.params),
        score=score,
        team=rule.team,
        held_out=customer is not None
        and holdout is not None
        and rule.action.type in holdout.actions
        and drawn(key, holdout.share),
        cost=round(cost, 2),
        expected_gain=None if gain is None else round(gain, 2),
        uplift_version=None if gain is None else situation.uplift_version,
    )


def decide(situation: Situation, policy: Policy) -> list[Decision]:
    """Every action the policy asks for; the first rule wins per (target, action)."""
    decisions: dict[str, Decision] = {}
    event = situation.event
    for rule in policy.rules:
        if not _applies(rule, event):
            continue
        if rule.target is Target.CELL:
            score = situation.fault if rule.score is ModelName.FAULT else None
            candidates = [(event.cell_id, situation.customers, score)]
        else:
            candidates = [
                (
                    c.customer_id,
                    [c],
                    situation.churn.get(c.customer_id)
                    if rule.score is ModelName.CHURN
                    else situation.fault,
                )
                for c in situation.customers
            ]
        for target, group, score in candidates:
            decision = _decide_one(rule, policy, situation, target, group, score)
            if decision is not None and decision.key not in decisions:
                decisions[decision.key] = decision
    return list(decisions.values())
