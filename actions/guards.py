"""Guards (in the spirit of ONAP guard policies): pure checks of a decision against what the
ledger says was already done. A decision a guard stops is recorded as suppressed, never dropped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from actions.decide import Decision
from actions.policy import CONTACT_ACTIONS, INCIDENT_ACTIONS, ActionType, Guards

CREDIT_WINDOW = timedelta(days=30)


class GuardResult(NamedTuple):
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
    """Counts the guards need, loaded from the ledger as a transaction's decisions need them
    and kept up to date with the decisions it records."""

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
        book.add(taken)
        return book

    def add(self, taken: Iterable[Taken]) -> None:
        """Count actions already decided, read from the ledger."""
        for item in taken:
            self.taken[item.target, item.action].append(item.at)
            if item.action is ActionType.BILL_CREDIT and item.amount:
                self.credits_by_customer[item.target].append((item.at, item.amount))

    def check(self, decision: Decision, at: datetime) -> list[GuardResult]:
        """Every guard that concerns the decision, passed or not, in a fixed order; a failed
        guard says why."""
        g = self.guards
        target, action, customer = decision.target, decision.action, decision.customer_id
        blocked = target in g.block or customer in g.block
        results = [GuardResult("block_list", not blocked, "on the block list" if blocked else "")]
        if action in CONTACT_ACTIONS and customer is not None:
            refused = customer in g.do_not_contact or customer in self.opted_out
            results.append(
                GuardResult("do_not_contact", not refused, "do-not-contact" if refused else "")
            )
        history = self.taken.get((target, action), ())
        for limit in g.frequency:
            if limit.action is action:
                since = at - timedelta(hours=limit.window_hours)
                count = sum(1 for t in history if since <= t <= at)
                passed = count < limit.max
                results.append(
                    GuardResult(
                        "frequency",
                        passed,
                        ""
                        if passed
                        else f"{count} {action.value} for {target} within "
                        f"{limit.window_hours:g} h (max {limit.max})",
                    )
                )
        hours = g.cooldown_hours.get(action)
        if hours is not None:
            last = max((t for t in history if t <= at), default=None) if history else None
            passed = last is None or at - last >= timedelta(hours=hours)
            results.append(
                GuardResult(
                    "cooldown",
                    passed,
                    ""
                    if passed
                    else f"last {action.value} for {target} at "
                    f"{last:%Y-%m-%d %H:%M} (cooldown {hours:g} h)",
                )
            )
        amount = decision.amount
        if amount is None:
            return self._incidents(results, action)
        limits = g.amount.get(action)
        if limits is not None:
            passed = limits.min <= amount <= limits.max
            results.append(
                GuardResult(
                    "amount",
                    passed,
                    "" if passed else f"amount {amount:g} outside [{limits.min:g}, {limits.max:g}]",
                )
            )
        budget = g.credit_budget
        if action is ActionType.BILL_CREDIT and budget is not None:
            day = self.credits_by_day.get(at.date().isoformat(), 0.0)
            passed = day + amount <= budget.per_day
            results.append(
                GuardResult(
                    "credit_budget_day",
                    passed,
                    "" if passed else f"credits today {day:g} + {amount:g} > {budget.per_day:g}",
                )
            )
            given = sum(
                value
                for when, value in self.credits_by_customer.get(target, ())
                if at - CREDIT_WINDOW <= when <= at
            )
            passed = given + amount <= budget.per_customer
            results.append(
                GuardResult(
                    "credit_budget_customer",
                    passed,
                    ""
                    if passed
                    else f"credits to {target} in 30 days {given:g} + {amount:g} "
                    f"> {budget.per_customer:g}",
                )
            )
        return self._incidents(results, action)

    def _incidents(self, results: list[GuardResult], action: ActionType) -> list[GuardResult]:
        cap = self.guards.max_open_incidents
        if action in INCIDENT_ACTIONS and cap is not None:
            passed = self.open_incidents < cap
            results.append(
                GuardResult(
                    "max_open_incidents",
                    passed,
                    "" if passed else f"{self.open_incidents} incidents open (max {cap})",
                )
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
