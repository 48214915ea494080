"""Guards (in the spirit of ONAP guard policies): pure checks of a decision against what the
ledger says was already done. A decision a guard stops is recorded as suppressed, never dropped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
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
        """Every guard that concerns the decision, passed or not, in a fixed order; a failed
        guard says why."""
        g = self.guards
        results: list[GuardResult] = []

        def guard(name: str, passed: bool, reason: Callable[[], str]) -> None:
            results.append(GuardResult(name, passed, "" if passed else reason()))

        target, action, customer = decision.target, decision.action, decision.customer_id
        blocked = target in g.block or customer in g.block
        guard("block_list", not blocked, lambda: "target is on the block list")
        if action in CONTACT_ACTIONS and customer is not None:
            refused = customer in g.do_not_contact or customer in self.opted_out
            guard("do_not_contact", not refused, lambda: "customer is do-not-contact")
        history = self.taken.get((target, action), [])
        for limit in g.frequency:
            if limit.action is action:
                since = at - timedelta(hours=limit.window_hours)
                count = sum(1 for t in history if since <= t <= at)
                guard(
                    "frequency",
                    count < limit.max,
                    lambda count=count, limit=limit: (
                        f"{count} {action.value} for {target} within "
                        f"{limit.window_hours:g} h (max {limit.max})"
                    ),
                )
        if action in g.cooldown_hours:
            hours = g.cooldown_hours[action]
            last = max((t for t in history if t <= at), default=None)
            guard(
                "cooldown",
                last is None or at - last >= timedelta(hours=hours),
                lambda: (
                    f"last {action.value} for {target} at {last:%Y-%m-%d %H:%M} "
                    f"(cooldown {hours:g} h)"
                ),
            )
        amount = decision.amount
        if action in g.amount and amount is not None:
            limits = g.amount[action]
            guard(
                "amount",
                limits.min <= amount <= limits.max,
                lambda: f"amount {amount:g} outside [{limits.min:g}, {limits.max:g}]",
            )
        if action is ActionType.BILL_CREDIT and g.credit_budget and amount is not None:
            budget = g.credit_budget
            day = self.credits_by_day.get(at.date().isoformat(), 0.0)
            guard(
                "credit_budget_day",
                day + amount <= budget.per_day,
                lambda: f"credits today {day:g} + {amount:g} > {budget.per_day:g}",
            )
            given = sum(
                value
                for when, value in self.credits_by_customer.get(target, [])
                if at - CREDIT_WINDOW <= when <= at
            )
            guard(
                "credit_budget_customer",
                given + amount <= budget.per_customer,
                lambda: (
                    f"credits to {target} in 30 days {given:g} + {amount:g} "
                    f"> {budget.per_customer:g}"
                ),
            )
        if action in INCIDENT_ACTIONS and g.max_open_incidents is not None:
            guard(
                "max_open_incidents",
                self.open_incidents < g.max_open_incidents,
                lambda: f"{self.open_incidents} incidents open (max {g.max_open_incidents})",
            )
        return results

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
