"""Backtest a policy against the world's ground truth (pure: a simulated world in, a table out).

Each row of the table is one way of choosing actions over a window: nothing; the shipped policy
replayed on the window's events; the top of a churn score; the best expected net gain of uplift
estimates; the oracle, which knows each action's true expected effect on each customer (the
world's hazards and hazard ratios); the clairvoyant, which knows moreover who would leave (each
action's realised effect). Every row's plan is applied to
the world re-simulated from its seed (:mod:`closedloop.world.treatment`), so churn prevented and
customers harmed are counted exactly, and every row spends at most the same budget. Apart, the
upsell rows value the upgrade offers the window's usage spikes trigger against the world's
upgrade truth (:mod:`closedloop.world.upgrade`): the policy's upgrade rule, every trigger, the
oracle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pandas as pd
from pydantic import BaseModel

from actions.decide import Customer, Situation, decide
from actions.guards import GuardBook, first_failed
from actions.policy import CONTACT_ACTIONS, ActionType, Policy, Target
from closedloop.events import EventType, NetworkEvent
from closedloop.models import ModelName
from closedloop.scores import Score
from closedloop.world import catalog
from closedloop.world.churn import EFFECT_DAYS, churn_at
from closedloop.world.simulate import Truth
from closedloop.world.treatment import (
    KIND,
    Treatments,
    left_within,
    ratio,
    resimulate,
    treated_hazard,
)
from closedloop.world.upgrade import accept_chance, accepts, can_upgrade, mrr_gain, upgrade_truth

WORLD_KIND = {
    ActionType.BILL_CREDIT: KIND["credit"],
    ActionType.CUSTOMER_MESSAGE: KIND["message"],
    ActionType.RETENTION_OFFER: KIND["offer"],
    ActionType.FIELD_DISPATCH: KIND["priority_repair"],
}
ACTION_OF = {catalog.ACTIONS[kind]: action for action, kind in WORLD_KIND.items()}
RANKED = (ActionType.BILL_CREDIT, ActionType.CUSTOMER_MESSAGE, ActionType.RETENTION_OFFER)
SCORE_ONLY_ACTION = ActionType.RETENTION_OFFER
PRICE_STEPS = 40  # bisections of the budget's price in best_within_budget
NO_ACTION, SCORE_ONLY, SHIPPED, UPLIFT, ORACLE, CLAIRVOYANT = (
    "no action",
    "top-k churn score",
    "shipped policy",
    "uplift (net gain)",
    "oracle (true effects)",
    "clairvoyant (outcomes known)",
)
UPSELL, UPSELL_ALL, UPSELL_ORACLE = (
    "upsell",
    "upsell, every trigger",
    "upsell oracle (true chances)",
)
UPGRADE_TRIGGERS = (EventType.USAGE_SPIKE.value,)


class BacktestError(ValueError):
    """A backtest that cannot run: a window outside the world, a policy without actions."""


@dataclass(frozen=True)
class Window:
    """Days ``[start, end]`` of a world (indices from its first day), both included."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str, first: date, days: int) -> Window:
        """``YYYY-MM-DD..YYYY-MM-DD`` within a world of ``days`` days from ``first``."""
        try:
            low, high = (date.fromisoformat(part) for part in text.split(".."))
        except ValueError:
            raise BacktestError(
                f"window {text!r} is not START..END (YYYY-MM-DD..YYYY-MM-DD)"
            ) from None
        start, end = (low - first).days, (high - first).days
        last = first + timedelta(days=days - 1)
        if start < 1 or end >= days or start > end:
            raise BacktestError(
                f"window {text} must lie within {first + timedelta(days=1)}..{last}, start first"
            )
        return cls(start, end)


@dataclass(frozen=True)
class Plan:
    """Actions chosen for a window: one entry per action, with its target customers."""

    action: np.ndarray  # ActionType values
    customer: np.ndarray  # customer index, -1 for a cell action without a customer effect
    day: np.ndarray
    cost: np.ndarray

    @classmethod
    def empty(cls) -> Plan:
        return cls(np.empty(0, dtype=object), *(np.empty(0, dtype=np.int64),) * 2, np.empty(0))

    def within(self, budget: float) -> Plan:
        """The plan cut where its spend, in its order, passes the budget."""
        return self.where(np.cumsum(self.cost) <= budget + 1e-9)

    def where(self, keep: np.ndarray) -> Plan:
        return Plan(self.action[keep], self.customer[keep], self.day[keep], self.cost[keep])

    def treatments(self) -> Treatments:
        kinds = np.array([WORLD_KIND.get(ActionType(a), -1) for a in self.action], dtype=np.int64)
        acts = (kinds >= 0) & (self.customer >= 0)
        return Treatments.of(self.customer[acts], self.day[acts], kinds[acts])


class Row(BaseModel):
    """One policy's result over the window, against the untreated world."""

    policy: str
    churn_prevented: int  # leavers kept, less customers driven away
    revenue_retained: float  # Σ MRR × value_months over kept, less driven away
    cost: float
    net_value: float
    expected_net_value: float  # the same in expectation over who leaves (the world's hazards)
    budget_used: float  # cost over the budget
    contacted: int  # customers sent a message, offer or credit
    treated: int  # customers any action reached (a dispatch reaches the cell's customers)
    harmed: int  # treated customers who left only because of the treatment


class Backtest(BaseModel):
    window: str
    customers: int
    budget: float
    untreated_churn: int  # customers leaving within the window with no action
    rows: list[Row]
    upsell: list[Row] = []  # upgrade offers at the window's usage spikes, on their own budget:
    # revenue_retained is the MRR the accepted upgrades add × value_months


@dataclass(frozen=True)
class Estimates:
    """What a ranking policy knows about customers at the window's start (from models)."""

    churn: np.ndarray  # churn score per customer
    uplift: Mapping[str, np.ndarray] | None = None  # by world action (credit, message, offer):
    # the expected fall in the chance of leaving within the window
    upsell: np.ndarray | None = None  # expected MRR an upgrade offer adds: the upsell model's
    # chance of accepting × the upgrade's MRR gain


def unit_costs(policy: Policy, mrr: np.ndarray) -> dict[ActionType, np.ndarray]:
    """Cost of each ranked action per customer, as the policy's first customer rule of each type
    prices it (``Costs.of``); an action no rule takes is absent."""
    found: dict[ActionType, np.ndarray] = {}
    for rule in policy.rules:
        kind = rule.action.type
        if kind in RANKED and kind not in found and rule.target is Target.CUSTOMER:
            found[kind] = policy.costs.of(kind, rule.action.params, mrr)
    return found


def best_within_budget(
    net: Mapping[ActionType, np.ndarray],
    cost: Mapping[ActionType, np.ndarray],
    eligible: np.ndarray,
    budget: float,
    day: int,
) -> Plan:
    """At most one action per eligible customer, of positive net gain, the sum of net gains
    highest within the budget (a multiple-choice knapsack, solved by its Lagrangian): each
    customer takes the action of highest net gain less ``price`` × its cost, when positive, at
    the lowest price whose choices fit the budget."""
    kinds = list(net)
    table = np.stack([np.where(eligible, net[k], -np.inf) for k in kinds])
    spend = np.stack([cost[k] for k in kinds])
    columns = np.arange(table.shape[1])

    def choose(price: float) -> tuple[np.ndarray, np.ndarray]:
        priced = table - price * spend
        best = priced.argmax(axis=0)
        return best, np.flatnonzero(priced[best, columns] > 0)

    def spent(price: float) -> float:
        best, taken = choose(price)
        return float(spend[best[taken], taken].sum())

    low, high = 0.0, 1.0
    if spent(low) > budget:
        while spent(high) > budget:
            low, high = high, 2 * high
        for _ in range(PRICE_STEPS):
            middle = (low + high) / 2
            low, high = (middle, high) if spent(middle) > budget else (low, middle)
        low = high
    best, taken = choose(low)
    actions = np.array([kinds[k].value for k in best[taken]], dtype=object)
    return Plan(
        actions, taken.astype(np.int64), np.full(len(taken), day), spend[best[taken], taken]
    )


def top_by_score(
    score: np.ndarray, cost: np.ndarray, eligible: np.ndarray, budget: float, day: int
) -> Plan:
    """The score-only baseline: customers by churn score, each given the retention offer while
    the budget allows."""
    order = [i for i in np.argsort(-score, kind="stable") if eligible[i]]
    return _take(order, [SCORE_ONLY_ACTION] * len(order), cost, budget, day)


def _take(order, actions, cost: np.ndarray, budget: float, day: int) -> Plan:
    chosen, kinds, spent = [], [], 0.0
    for i, kind in zip(order, actions, strict=True):
        if spent + cost[i] <= budget:
            chosen.append(i)
            kinds.append(kind.value)
            spent += cost[i]
    customer = np.array(chosen, dtype=np.int64)
    return Plan(np.array(kinds, dtype=object), customer, np.full(len(chosen), day), cost[customer])


def shipped_plan(truth: Truth, policy: Policy, window: Window, estimates: Estimates) -> Plan:
    """The policy replayed on the window's events, in event order: each new alarm (first onset
    of its id) and every other acting event decided with the churn scores of the window's
    start, guarded as the ledger would (a decision needing approval counts as approved); a rule
    with ``min_net_gain`` reads the uplift estimates of the window's start."""
    c, config = truth.customers, truth.config
    present = truth.churn.active(config.days)[:, window.start]
    first = datetime.combine(config.start, time(), tzinfo=UTC)
    events = truth.events
    when = pd.to_datetime(events["occurred_at"], utc=True)
    day = ((when - pd.Timestamp(first)).dt.total_seconds() // 86_400).astype(int)
    inside = (day >= window.start) & (day <= window.end)
    inside &= events["event_type"] != EventType.ALARM_CLEAR.value
    onsets = events["event_type"] == EventType.ALARM_ONSET.value
    inside &= ~(onsets & events["alarm_id"].duplicated())
    by_cell: dict[str, np.ndarray] = {}
    cell_ids = truth.cells.ids[c.cell]
    for cell in np.unique(cell_ids):
        by_cell[cell] = np.flatnonzero((cell_ids == cell) & present)
    index = {customer_id: i for i, customer_id in enumerate(c.ids)}
    facts = _customer_facts(truth, estimates)
    guards = GuardBook(policy.guards, opted_out=frozenset(c.ids[c.do_not_contact]))
    actions, customers, days, spend = [], [], [], []
    for row, event_day in zip(events[inside].itertuples(index=False), day[inside], strict=True):
        event = NetworkEvent.model_validate(
            {k: v for k, v in row._asdict().items() if not pd.isna(v)}
        )
        if event.customer_id is not None:
            affected = [index[event.customer_id]] if event.customer_id in index else []
            affected = [i for i in affected if present[i]]
        else:
            affected = list(by_cell.get(event.cell_id, []))
        situation = Situation(
            event=event,
            incident=event.alarm_id or event.event_id,
            customers=[facts(i).customer for i in affected],
            churn={c.ids[i]: facts(i).churn for i in affected},
            uplift={c.ids[i]: facts(i).uplift for i in affected},
        )
        at = event.occurred_at
        for decision in decide(situation, policy):
            if decision.held_out or first_failed(guards.check(decision, at)) is not None:
                continue
            guards.record(decision, at)
            kind = decision.action
            if decision.customer_id is not None:
                targets = [index[decision.customer_id]]
            elif kind is ActionType.FIELD_DISPATCH:
                targets = affected
            else:
                targets = [-1]
            for n, target in enumerate(targets or [-1]):
                actions.append(kind.value)
                customers.append(target)
                days.append(event_day)
                spend.append(decision.cost if n == 0 else 0.0)
    return Plan(
        np.array(actions, dtype=object),
        np.array(customers, dtype=np.int64),
        np.array(days, dtype=np.int64),
        np.array(spend, dtype=np.float64),
    )


@dataclass(frozen=True)
class _Facts:
    """What a situation says of one customer: who, the churn score and the uplift estimates."""

    customer: Customer
    churn: Score
    uplift: dict[ActionType, float]


def _customer_facts(truth: Truth, estimates: Estimates):
    """Each customer's facts, built once (the window's events name the same customers again)."""
    c = truth.customers
    cell_ids = truth.cells.ids[c.cell]
    uplift = estimates.uplift or {}
    known: dict[int, _Facts] = {}

    def facts(i: int) -> _Facts:
        if i not in known:
            customer = Customer(
                customer_id=c.ids[i],
                cell_id=cell_ids[i],
                segment=catalog.SEGMENTS[c.segment[i]],
                sla_tier=catalog.SLA_TIERS[c.sla[i]],
                contract_type=catalog.CONTRACTS[c.contract[i]],
                mrr=float(c.mrr[i]),
                do_not_contact=bool(c.do_not_contact[i]),
            )
            valued = {ACTION_OF[arm]: float(up[i]) for arm, up in uplift.items()}
            if estimates.upsell is not None and c.mrr[i] > 0:
                valued[ActionType.UPGRADE_OFFER] = float(estimates.upsell[i] / c.mrr[i])
            known[i] = _Facts(customer, _score(c.ids[i], estimates.churn[i]), valued)
        return known[i]

    return facts


def _score(customer_id: str, probability: float) -> Score:
    return Score(
        entity_id=customer_id,
        model=ModelName.CHURN.value,
        model_version="backtest",
        feature_service="backtest",
        probability=min(max(float(probability), 0.0), 1.0),
    )


def expected_kept(
    truth: Truth, window: Window, hazard: np.ndarray, present: np.ndarray
) -> np.ndarray:
    """Per customer present at the window's start, the expected fall in the chance of leaving
    within the window under ``hazard`` against the untreated world's: a customer leaves once the
    cumulative hazard passes an exponential threshold, so the chance of staying through the
    window is exp(-the window's hazard)."""
    days = slice(window.start, window.end + 1)
    stays = np.exp(-hazard[:, days].sum(axis=1)) - np.exp(-truth.hazard[:, days].sum(axis=1))
    return np.where(present, stays, 0.0)


def account(
    name: str,
    plan: Plan,
    truth: Truth,
    window: Window,
    value_months: float,
    budget: float,
    untreated: np.ndarray,
    present: np.ndarray,
) -> Row:
    """One row: the plan applied to the world, counted against the untreated world."""
    hazard = treated_hazard(truth.hazard, truth.effects, plan.treatments())
    treated_left = left_within(churn_at(hazard, truth.threshold), window.start, window.end)
    mrr = truth.customers.mrr
    kept, driven = untreated & ~treated_left, ~untreated & treated_left
    reached = np.unique(plan.customer[plan.customer >= 0])
    contact = np.isin(plan.action, [a.value for a in CONTACT_ACTIONS]) & (plan.customer >= 0)
    revenue = float((mrr * (kept.astype(float) - driven)).sum() * value_months)
    expected = float((mrr * expected_kept(truth, window, hazard, present)).sum() * value_months)
    cost = float(plan.cost.sum())
    return Row(
        policy=name,
        churn_prevented=int(kept.sum() - driven.sum()),
        revenue_retained=round(revenue, 2),
        cost=round(cost, 2),
        net_value=round(revenue - cost, 2),
        expected_net_value=round(expected - cost, 2),
        budget_used=round(cost / budget, 4) if budget > 0 else 0.0,
        contacted=len(np.unique(plan.customer[contact])),
        treated=len(reached),
        harmed=int(driven[reached].sum()),
    )


def upgrade_cost(policy: Policy, mrr: np.ndarray) -> np.ndarray | None:
    """Cost of an upgrade offer per customer, as the policy's first upgrade rule prices it;
    None when no rule makes one."""
    for rule in policy.rules:
        if rule.action.type is ActionType.UPGRADE_OFFER and rule.target is Target.CUSTOMER:
            return policy.costs.of(ActionType.UPGRADE_OFFER, rule.action.params, mrr)
    return None


def upgrade_triggers(truth: Truth, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """(customer, day) of each customer's first upgrade trigger in the window: a usage spike on
    the customer's cell, for customers there at the window's start, contactable, with a plan
    above theirs (whom the shipped policy's upgrade rule may consider)."""
    events = truth.events
    first = datetime.combine(truth.config.start, time(), tzinfo=UTC)
    when = pd.to_datetime(events["occurred_at"], utc=True)
    day = ((when - pd.Timestamp(first)).dt.total_seconds() // 86_400).astype(int).to_numpy()
    spikes = events["event_type"].isin(UPGRADE_TRIGGERS).to_numpy()
    spikes &= (day >= window.start) & (day <= window.end)
    cell_ids = truth.cells.ids[truth.customers.cell]
    upgradable = can_upgrade(truth, window.start)
    trigger = np.full(len(cell_ids), -1)
    for cell, on in sorted(
        zip(events["cell_id"][spikes], day[spikes], strict=True), key=lambda e: e[1]
    ):
        fresh = (cell_ids == cell) & upgradable & (trigger < 0)
        trigger[fresh] = on
    who = np.flatnonzero(trigger >= 0)
    return who, trigger[who]


def account_upsell(name: str, plan: Plan, truth: Truth, value_months: float, budget: float) -> Row:
    """One upsell row: each customer's first upgrade offer answered as the world answers it
    on the offer's day (realised), and at its true chance (expected); MRR gained × value_months
    less the offers' cost."""
    customer, first = np.unique(plan.customer, return_index=True)
    day = plan.day[first]
    latent, gain = upgrade_truth(truth), mrr_gain(truth)[customer]
    took, chance = np.zeros(len(customer)), np.zeros(len(customer))
    for d in np.unique(day):
        on = day == d
        took[on] = accepts(truth, int(d), latent)[customer[on]]
        chance[on] = accept_chance(truth, int(d), latent)[customer[on]]
    revenue = float((took * gain).sum() * value_months)
    expected = float((chance * gain).sum() * value_months)
    cost = float(plan.cost.sum())
    return Row(
        policy=name,
        churn_prevented=0,
        revenue_retained=round(revenue, 2),
        cost=round(cost, 2),
        net_value=round(revenue - cost, 2),
        expected_net_value=round(expected - cost, 2),
        budget_used=round(cost / budget, 4) if budget > 0 else 0.0,
        contacted=len(customer),
        treated=len(customer),
        harmed=0,
    )


def upsell_plans(truth: Truth, policy: Policy, window: Window, shipped: Plan) -> dict[str, Plan]:
    """The upsell rows' offers: the shipped policy's upgrade offers (its rule ranks the
    triggered customers by the upsell model's expected gain less cost), an offer at every
    trigger (no model), and the oracle's (a trigger whose true expected gain exceeds the cost)."""
    cost = upgrade_cost(policy, truth.customers.mrr)
    if cost is None:
        return {}
    who, day = upgrade_triggers(truth, window)
    latent, gain = upgrade_truth(truth), mrr_gain(truth)
    worth = np.zeros(len(who), dtype=bool)
    for d in np.unique(day):
        on = day == d
        chance = accept_chance(truth, int(d), latent)[who[on]]
        worth[on] = chance * gain[who[on]] * policy.value_months > cost[who[on]]

    def offers(keep: np.ndarray) -> Plan:
        action = np.full(int(keep.sum()), ActionType.UPGRADE_OFFER.value, dtype=object)
        return Plan(action, who[keep], day[keep], cost[who[keep]])

    return {
        UPSELL: shipped.where(shipped.action == ActionType.UPGRADE_OFFER.value),
        UPSELL_ALL: offers(np.ones(len(who), dtype=bool)),
        UPSELL_ORACLE: offers(worth),
    }


def oracle_net(
    truth: Truth,
    window: Window,
    costs: Mapping[ActionType, np.ndarray],
    value_months: float,
) -> dict[ActionType, np.ndarray]:
    """Each customer's true expected net gain from each action alone at the window's start:
    the world's daily hazards and the customer's hazard ratio, not the customer's leaving
    threshold (an exponential draw, unknown to anyone), give the chance of leaving within the
    window with and without the action."""
    hazard = truth.hazard[:, window.start : window.end + 1]
    untreated = hazard.sum(axis=1)
    covered = hazard[:, :EFFECT_DAYS].sum(axis=1)
    net = {}
    for kind, cost in costs.items():
        ratio_ = ratio(truth.effects, WORLD_KIND[kind])
        fall = np.exp(-(untreated + (ratio_ - 1) * covered)) - np.exp(-untreated)
        net[kind] = fall * truth.customers.mrr * value_months - cost
    return net


def clairvoyant_net(
    truth: Truth,
    window: Window,
    costs: Mapping[ActionType, np.ndarray],
    eligible: np.ndarray,
    value_months: float,
    untreated: np.ndarray,
) -> dict[ActionType, np.ndarray]:
    """Each customer's realised net gain from each action alone at the window's start."""
    who = np.flatnonzero(eligible)
    net = {}
    for kind, cost in costs.items():
        churn = resimulate(truth, Treatments.of(who, window.start, WORLD_KIND[kind]))
        kept = untreated.astype(float) - left_within(churn, window.start, window.end)
        net[kind] = kept * truth.customers.mrr * value_months - cost
    return net


def backtest(
    truth: Truth,
    policy: Policy,
    window: Window,
    estimates: Estimates,
    budget: float | None = None,
) -> Backtest:
    """Every baseline over the window at one budget (the shipped policy's spend unless given)."""
    c, months = truth.customers, policy.value_months
    if len(estimates.churn) != len(c):
        raise BacktestError(f"{len(estimates.churn)} churn scores for {len(c)} customers")
    costs = unit_costs(policy, c.mrr)
    if not costs:
        raise BacktestError("the policy has no customer rule with a credit, message or offer")
    present = truth.churn.active(truth.config.days)[:, window.start]
    eligible = present & ~c.do_not_contact
    untreated = left_within(truth.churn, window.start, window.end)
    replayed = shipped_plan(truth, policy, window, estimates)
    upsell = upsell_plans(truth, policy, window, replayed)
    shipped = replayed.where(replayed.action != ActionType.UPGRADE_OFFER.value)
    if budget is None:
        budget = float(shipped.cost.sum())
    elif budget < 0:
        raise BacktestError(f"budget must not be negative, got {budget}")
    plans = {NO_ACTION: Plan.empty(), SHIPPED: shipped.within(budget)}
    if SCORE_ONLY_ACTION in costs:
        plans[SCORE_ONLY] = top_by_score(
            estimates.churn, costs[SCORE_ONLY_ACTION], eligible, budget, window.start
        )
    if estimates.uplift is not None:
        expected = {
            kind: np.where(up > 0, up * c.mrr * months - costs[kind], -np.inf)
            for name, up in estimates.uplift.items()
            if (kind := ACTION_OF[name]) in costs
        }
        plans[UPLIFT] = best_within_budget(expected, costs, eligible, budget, window.start)
    oracle = oracle_net(truth, window, costs, months)
    plans[ORACLE] = best_within_budget(oracle, costs, eligible, budget, window.start)
    clairvoyant = clairvoyant_net(truth, window, costs, eligible, months, untreated)
    plans[CLAIRVOYANT] = best_within_budget(clairvoyant, costs, eligible, budget, window.start)
    first = truth.config.start
    return Backtest(
        window=f"{first + timedelta(days=window.start)}..{first + timedelta(days=window.end)}",
        customers=int(present.sum()),
        budget=round(budget, 2),
        untreated_churn=int(untreated[present].sum()),
        rows=[
            account(name, plan, truth, window, months, budget, untreated, present)
            for name, plan in plans.items()
        ],
        upsell=[account_upsell(name, plan, truth, months, budget) for name, plan in upsell.items()],
    )
