"""Guards (in the spirit of ONAP guard policies): pure checks of a decision against what the
ledger says was already done. A decision a guard stops is recorded as suppressed, never dropped.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from actions.decide import Decision
from actions.policy import CONTACT_ACTIONS, INCIDENT_ACTIONS, ActionType, Guards

CREDIT_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class GuardResult:
    guard: str
    passed: bool
    reason: str = ""


@dataclass(frozen=True)
class Taken:
    """An action already decided (dispatched, pending or waiting approval)."""

    target: str
    action: ActionType
    at: datetime
    amount: float | None = None


@dataclass
class GuardBook:
    """Counts the guards need, loaded from the ledger once per event and kept up to date."""

    guards: Guards
    taken: dict[tuple[str, ActionType], list[datetime]] = field(
        default_factory=lambda: defaultdict(list)
    )
    credits_by_customer: dict[str, list[tuple[datetime, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    credits_by_day: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    open_incidents: int = 0
    opted_out: frozenset[str] = frozenset()

    @classmethod
    def load(
        cls,
        guards: Guards,
        taken: list[Taken],
        credits_by_day: dict[str, float],
        open_incidents: int,
        opted_out: frozenset[str],
    ) -> GuardBook:
        book = cls(guards, open_incidents=open_incidents, opted_out=opted_out)
        book.credits_by_day.update(credits_by_day)
        for item in taken:
            book.taken[item.target, item.action].append(item.at)
            if item.action is ActionType.BILL_CREDIT and item.amount:
                book.credits_by_customer[item.target].append((item.at, item.amount))
        return book

    def check(self, decision: Decision, at: datetime) -> list[GuardResult]:
        """Every guard that concerns the decision, passed or not, in a fixed order."""
        g = self.guards
        results = []
        target, action = decision.target, decision.action
        blocked = target in g.block or decision.customer_id in g.block
        results.append(GuardResult("block_list", not blocked, "target is on the block list"))
        if action in CONTACT_ACTIONS and decision.customer_id is not None:
            refused = decision.customer_id in g.do_not_contact or decision.customer_id in (
                self.opted_out
            )
            results.append(GuardResult("do_not_contact", not refused, "customer is do-not-contact"))
        history = self.taken.get((target, action), [])
        for limit in g.frequency:
            if limit.action is action:
                since = at - timedelta(hours=limit.window_hours)
                count = sum(1 for t in history if since <= t <= at)
                results.append(
                    GuardResult(
                        "frequency",
                        count < limit.max,
                        f"{count} {action.value} for {target} within {limit.window_hours:g} h "
                        f"(max {limit.max})",
                    )
                )
        if action in g.cooldown_hours:
            hours = g.cooldown_hours[action]
            last = max((t for t in history if t <= at), default=None)
            cooling = last is not None and at - last < timedelta(hours=hours)
            results.append(
                GuardResult(
                    "cooldown",
                    not cooling,
                    f"last {action.value} for {target} at {last:%Y-%m-%d %H:%M} "
                    f"(cooldown {hours:g} h)"
                    if last is not None
                    else "",
                )
            )
        if action in g.amount and decision.amount is not None:
            limits = g.amount[action]
            inside = limits.min <= decision.amount <= limits.max
            results.append(
                GuardResult(
                    "amount",
                    inside,
                    f"amount {decision.amount:g} outside [{limits.min:g}, {limits.max:g}]",
                )
            )
        if action is ActionType.BILL_CREDIT and g.credit_budget and decision.amount is not None:
            budget = g.credit_budget
            day = self.credits_by_day.get(at.date().isoformat(), 0.0)
            results.append(
                GuardResult(
                    "credit_budget_day",
                    day + decision.amount <= budget.per_day,
                    f"credits today {day:g} + {decision.amount:g} > {budget.per_day:g}",
                )
            )
            customer = sum(
                amount
                for when, amount in self.credits_by_customer.get(target, [])
                if at - CREDIT_WINDOW <= when <= at
            )
            results.append(
                GuardResult(
                    "credit_budget_customer",
                    customer + decision.amount <= budget.per_customer,
                    f"credits to {target} in 30 days {customer:g} + {decision.amount:g} "
                    f"> {budget.per_customer:g}",
                )
            )
        if action in INCIDENT_ACTIONS and g.max_open_incidents is not None:
            results.append(
                GuardResult(
                    "max_open_incidents",
                    self.open_incidents < g.max_open_incidents,
                    f"{self.open_incidents} incidents open (max {g.max_open_incidents})",
                )
            )
        return [r if not r.passed else GuardResult(r.guard, True) for r in results]

    def record(self, decision: Decision, at: datetime) -> None:
        """Count a decision that passed, so the next ones in the same batch see it."""
        self.taken[decision.target, decision.action].append(at)
        if decision.action is ActionType.BILL_CREDIT and decision.amount is not None:
            self.credits_by_customer[decision.target].append((at, decision.amount))
            self.credits_by_day[at.date().isoformat()] += decision.amount
        if decision.action in INCIDENT_ACTIONS:
            self.open_incidents += 1


def first_failed(results: list[GuardResult]) -> GuardResult | None:
    return next((r for r in results if not r.passed), None)
