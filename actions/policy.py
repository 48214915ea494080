"""Policy as data: a YAML file validated by pydantic, with errors that name the rule and field."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from importlib import resources
from pathlib import Path

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from closedloop.alerts import AlertKind
from closedloop.events import EventType, Severity
from closedloop.models import ModelName

RUNBOOKS = "runbooks"
DEFAULT_POLICY = "default.yaml"


class ActionType(StrEnum):
    TROUBLE_TICKET = "trouble_ticket"
    ESCALATE_INCIDENT = "escalate_incident"
    FIELD_DISPATCH = "field_dispatch"
    CUSTOMER_MESSAGE = "customer_message"
    BILL_CREDIT = "bill_credit"
    RETENTION_OFFER = "retention_offer"
    UPGRADE_OFFER = "upgrade_offer"


INCIDENT_ACTIONS = frozenset(
    {ActionType.TROUBLE_TICKET, ActionType.ESCALATE_INCIDENT, ActionType.FIELD_DISPATCH}
)
UPLIFT_ACTIONS = frozenset(
    {ActionType.CUSTOMER_MESSAGE, ActionType.RETENTION_OFFER, ActionType.BILL_CREDIT}
)  # the actions uplift models estimate (credit, message, offer)
CONTACT_ACTIONS = UPLIFT_ACTIONS | {ActionType.UPGRADE_OFFER}


class Target(StrEnum):
    CELL = "cell"
    CUSTOMER = "customer"


class PolicyError(Exception):
    """A policy that cannot be used; ``problems`` are lines like ``rules[3].threshold: ...``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source, self.problems = source, problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Strict):
    min: float | None = Field(None, description="inclusive lower bound")
    max: float | None = Field(None, description="inclusive upper bound")

    def holds(self, value: float | None) -> bool:
        if value is None:
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class Conditions(_Strict):
    """Context a rule needs; every condition given must hold."""

    sla_tiers: list[str] | None = Field(None, description="SLA tiers the rule applies to")
    segments: list[str] | None = Field(None, description="segments the rule applies to")
    contracts: list[str] | None = Field(None, description="contract types it applies to")
    mrr: Range | None = Field(None, description="monthly recurring revenue, USD")
    value_at_risk: Range | None = Field(None, description="probability × value, USD")
    affected_customers: Range | None = Field(None, description="customers of the cell hit")
    features: dict[str, Range] = Field(
        default_factory=dict, description="bounds on the scored features, by name"
    )


class Action(_Strict):
    type: ActionType
    params: dict[str, str | float | int | bool] = Field(
        default_factory=dict, description="action parameters, e.g. amount for a credit"
    )


class Rule(_Strict):
    """When an event and the scores it brings meet the conditions, take the action."""

    id: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    events: list[EventType] = Field(min_length=1, description="event types that trigger it")
    severities: list[Severity] | None = Field(None, description="event severities; all if absent")
    target: Target = Field(description="one action per cell, or one per affected customer")
    score: ModelName = Field(description="model whose probability the threshold applies to")
    threshold: dict[str, float] = Field(
        description="minimum probability by SLA tier; 'default' for tiers not listed"
    )
    when: Conditions = Field(default_factory=Conditions)
    action: Action
    approval_above: float | None = Field(
        None, ge=0, description="impact (credit amount, else value at risk) above which a human "
        "must approve",
    )  # fmt: skip
    runbook: str = Field(description="runbook id: actions/runbooks/<id>.md")
    team: str | None = Field(
        None, min_length=1, max_length=100, description="the team that answers for its actions"
    )
    min_net_gain: float | None = Field(
        None,
        description="act only when uplift × value_months × MRR − the action's cost reaches this "
        "many USD, never on an expected uplift ≤ 0 (harmful); for an upgrade offer the uplift is "
        "the chance of accepting × the upgrade's MRR gain / MRR; a customer without an estimate "
        "is not acted on",
    )

    @field_validator("threshold")
    @classmethod
    def _thresholds_are_probabilities(cls, threshold: dict[str, float]) -> dict[str, float]:
        if "default" not in threshold:
            raise ValueError("needs a 'default' entry")
        bad = {tier: p for tier, p in threshold.items() if not 0 <= p <= 1}
        if bad:
            raise ValueError(f"probabilities must lie in [0, 1], got {bad}")
        return threshold

    @model_validator(mode="after")
    def _net_gain_needs_a_customer_contact(self) -> Rule:
        if self.min_net_gain is not None and (
            self.target is not Target.CUSTOMER or self.action.type not in CONTACT_ACTIONS
        ):
            kinds = ", ".join(sorted(a.value for a in CONTACT_ACTIONS))
            raise ValueError(f"min_net_gain needs target customer and an action of {kinds}")
        return self

    def threshold_for(self, tier: str) -> float:
        return self.threshold.get(tier, self.threshold["default"])


class Frequency(_Strict):
    action: ActionType
    max: int = Field(ge=1, description="actions of this type per target within the window")
    window_hours: float = Field(gt=0)


class AmountLimits(_Strict):
    min: float = Field(0, ge=0, description="smaller amounts are not worth sending")
    max: float = Field(gt=0, description="larger amounts are refused")


class CreditBudget(_Strict):
    per_day: float = Field(gt=0, description="USD of credits over all customers per day")
    per_customer: float = Field(gt=0, description="USD of credits per customer per 30 days")


class Guards(_Strict):
    """Limits that stop a decision (recorded as suppressed with the guard and the reason)."""

    frequency: list[Frequency] = Field(default_factory=list)
    cooldown_hours: dict[ActionType, float] = Field(
        default_factory=dict, description="minimum time between two actions of a type per target"
    )
    amount: dict[ActionType, AmountLimits] = Field(default_factory=dict)
    do_not_contact: list[str] = Field(
        default_factory=list, description="customers never contacted, besides the opted-out"
    )
    block: list[str] = Field(default_factory=list, description="targets never acted upon")
    credit_budget: CreditBudget | None = None
    max_open_incidents: int | None = Field(
        None, ge=1, description="cap on open tickets, escalations and dispatches together"
    )


class PriorityBand(_Strict):
    min_value_at_risk: float = Field(ge=0)
    priority: int = Field(ge=1, le=4, description="1 highest")


class Costs(_Strict):
    """What actions cost, USD: the backtest's and the expected net gain's accounting."""

    contact: float = Field(
        0.5, ge=0, description="each message, offer or credit to a customer (an upgrade offer "
        "costs this plus its incentive, the rule's amount)",
    )  # fmt: skip
    dispatch: float = Field(400, ge=0, description="each field dispatch")
    ticket: float = Field(0, ge=0, description="each trouble ticket or escalation")
    offer_months: float = Field(
        3, gt=0, description="months a retention offer's discount (discount_pct of MRR) runs"
    )

    def of(self, action: ActionType, params: dict, mrr):
        """USD one action costs on a customer of this MRR (a float, or an array of them)."""
        if action is ActionType.BILL_CREDIT:
            if "amount" in params:
                return self.contact + float(params["amount"]) + 0 * mrr
            return self.contact + np.round(float(params.get("mrr_fraction", 0)) * mrr, 2)
        if action is ActionType.UPGRADE_OFFER:
            return self.contact + float(params.get("amount", 0)) + 0 * mrr
        if action is ActionType.RETENTION_OFFER:
            share = float(params.get("discount_pct", 0)) / 100
            return self.contact + share * mrr * self.offer_months
        if action in CONTACT_ACTIONS:
            return self.contact + 0 * mrr
        if action is ActionType.FIELD_DISPATCH:
            return self.dispatch + 0 * mrr
        return self.ticket + 0 * mrr


class Holdout(_Strict):
    """A random control group: customers held out of a treatment they qualified for, recorded
    as such, so that the action's realised effect can be measured (``actions outcomes``)."""

    share: float = Field(gt=0, le=0.5, description="share of qualifying customers held out")
    actions: list[ActionType] = Field(
        default_factory=lambda: sorted(UPLIFT_ACTIONS),
        description="customer actions with a control group",
    )


class ModelAlerts(_Strict):
    """Tickets for a model's owning team when monitoring triggers, fails or holds a retraining."""

    kinds: list[AlertKind] = Field(
        default_factory=lambda: list(AlertKind), description="the alert kinds that open a ticket"
    )
    priority: int = Field(3, ge=1, le=4, description="the ticket's priority, 1 highest")
    runbook: str = Field("model_owner_alert", description="runbook id of the owner's ticket")


class Policy(_Strict):
    version: str = Field(min_length=1, description="part of every idempotency key")
    approval_ttl_minutes: float = Field(gt=0, description="how long an approval may wait")
    exception_above: float | None = Field(
        None, ge=0, description="impact above which only an approver (not an operator) may "
        "approve, reject or retry an action",
    )  # fmt: skip
    value_months: float = Field(12, gt=0, description="months of MRR a customer is worth")
    priorities: list[PriorityBand] = Field(
        min_length=1, description="priority by value at risk, highest band first"
    )
    guards: Guards = Field(default_factory=Guards)
    costs: Costs = Field(default_factory=Costs)
    holdout: Holdout | None = Field(None, description="None: no control group")
    model_alerts: ModelAlerts | None = Field(
        default_factory=ModelAlerts, description="None: monitoring opens no owner tickets"
    )
    rules: list[Rule] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_rule_ids(self) -> Policy:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return self

    @field_validator("priorities")
    @classmethod
    def _highest_band_first(cls, bands: list[PriorityBand]) -> list[PriorityBand]:
        floors = [band.min_value_at_risk for band in bands]
        if floors != sorted(floors, reverse=True):
            raise ValueError("list the bands from the highest min_value_at_risk down")
        return bands

    def priority(self, value_at_risk: float) -> int:
        for band in self.priorities:
            if value_at_risk >= band.min_value_at_risk:
                return band.priority
        return 4


def _where(location: tuple[int | str, ...]) -> str:
    """``('rules', 3, 'threshold')`` → ``rules[3].threshold``."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def parse_policy(text: str, source: str, runbooks: set[str] | None = None) -> Policy:
    """A policy from YAML text; raises :class:`PolicyError` with located problems."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PolicyError(source, [f"not valid YAML: {error}".replace("\n", " ")]) from None
    if not isinstance(raw, dict):
        raise PolicyError(source, ["expected a mapping with version, rules and guards"])
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as error:
        problems = [
            f"{_where(e['loc']) or 'policy'}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        ]
        raise PolicyError(source, problems) from None
    known = available_runbooks() if runbooks is None else runbooks
    used = [(f"rules[{i}].runbook", rule.runbook) for i, rule in enumerate(policy.rules)]
    if policy.model_alerts is not None:
        used.append(("model_alerts.runbook", policy.model_alerts.runbook))
    missing = [
        f"{where}: no runbook {runbook!r} (have {', '.join(sorted(known))})"
        for where, runbook in used
        if runbook not in known
    ]
    if missing:
        raise PolicyError(source, missing)
    return policy


def load_policy(path: Path | None) -> Policy:
    """The policy in ``path``, or the packaged default when ``path`` is None."""
    if path is None:
        text = resources.files("actions").joinpath("policies", DEFAULT_POLICY).read_text()
        return parse_policy(text, f"actions/policies/{DEFAULT_POLICY}")
    if not path.is_file():
        raise PolicyError(str(path), ["file not found"])
    return parse_policy(path.read_text(), str(path))


def canonical(policy: Policy) -> str:
    """The policy as canonical JSON: what its digest covers (comments and layout do not count)."""
    return json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def policy_digest(policy: Policy) -> str:
    """SHA-256 of the policy's content: two policies with the same digest decide alike."""
    return hashlib.sha256(canonical(policy).encode()).hexdigest()


def available_runbooks() -> set[str]:
    folder = resources.files("actions").joinpath(RUNBOOKS)
    return {item.name.removesuffix(".md") for item in folder.iterdir() if item.name.endswith(".md")}


def runbook_text(runbook: str) -> str:
    return resources.files("actions").joinpath(RUNBOOKS, f"{runbook}.md").read_text()
