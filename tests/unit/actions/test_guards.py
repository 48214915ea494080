"""Guards: each stops what it should, says why, and counts what passes in the same batch."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from actionkit import T0, event, score

from actions.decide import Decision
from actions.guards import GuardBook, Taken, first_failed
from actions.policy import ActionType, AmountLimits, CreditBudget, Frequency, Guards


def decision(action: ActionType, target: str = "cus_1", amount: float | None = None) -> Decision:
    customer = target if target.startswith("cus") else None
    return Decision(
        key=f"k-{action.value}-{target}", incident="outage:x", event_id=event().event_id,
        rule_id="r", action=action, target=target, cell_id="cell_1", customer_id=customer,
        probability=0.5, value_at_risk=100, priority=3, amount=amount, impact=amount or 100,
        needs_approval=False, runbook="trouble_ticket", params={}, score=score(target, 0.5),
    )  # fmt: skip


def stopped_by(book: GuardBook, d: Decision, minutes: float = 0) -> str | None:
    failed = first_failed(book.check(d, T0 + timedelta(minutes=minutes)))
    return failed.guard if failed else None


def test_frequency_limit_per_target_and_window():
    guards = Guards(frequency=[Frequency(action="customer_message", max=2, window_hours=24)])
    earlier = [
        Taken("cus_1", ActionType.CUSTOMER_MESSAGE, T0 - timedelta(hours=h)) for h in (1, 30)
    ]
    book = GuardBook.load(guards, earlier, {}, 0, frozenset())
    message = decision(ActionType.CUSTOMER_MESSAGE)
    assert stopped_by(book, message) is None  # one inside the window
    book.record(message, T0)
    assert stopped_by(book, message) == "frequency"
    assert stopped_by(book, replace(message, target="cus_2", customer_id="cus_2")) is None


def test_cooldown_after_the_last_action():
    guards = Guards(cooldown_hours={ActionType.RETENTION_OFFER: 48})
    taken = [Taken("cus_1", ActionType.RETENTION_OFFER, T0 - timedelta(hours=47))]
    book = GuardBook.load(guards, taken, {}, 0, frozenset())
    offer = decision(ActionType.RETENTION_OFFER)
    results = book.check(offer, T0)
    assert first_failed(results).guard == "cooldown"
    assert "cooldown 48 h" in first_failed(results).reason
    assert stopped_by(book, offer, minutes=61) is None


def test_do_not_contact_from_the_customer_table_and_the_policy():
    book = GuardBook.load(Guards(do_not_contact=["cus_2"]), [], {}, 0, frozenset({"cus_1"}))
    for target in ("cus_1", "cus_2"):
        assert stopped_by(book, decision(ActionType.CUSTOMER_MESSAGE, target)) == "do_not_contact"
    assert stopped_by(book, decision(ActionType.CUSTOMER_MESSAGE, "cus_3")) is None
    assert stopped_by(book, decision(ActionType.TROUBLE_TICKET, "cus_1")) is None  # not contact


def test_block_list_stops_every_action_on_the_target():
    book = GuardBook.load(Guards(block=["cell_1"]), [], {}, 0, frozenset())
    assert stopped_by(book, decision(ActionType.FIELD_DISPATCH, "cell_1")) == "block_list"


def test_amount_min_and_max():
    guards = Guards(amount={ActionType.BILL_CREDIT: AmountLimits(min=1, max=50)})
    book = GuardBook.load(guards, [], {}, 0, frozenset())
    assert stopped_by(book, decision(ActionType.BILL_CREDIT, amount=0.5)) == "amount"
    assert stopped_by(book, decision(ActionType.BILL_CREDIT, amount=60)) == "amount"
    assert stopped_by(book, decision(ActionType.BILL_CREDIT, amount=20)) is None


def test_credit_budgets_per_day_and_per_customer():
    guards = Guards(credit_budget=CreditBudget(per_day=100, per_customer=30))
    taken = [Taken("cus_1", ActionType.BILL_CREDIT, T0 - timedelta(days=3), 25)]
    book = GuardBook.load(guards, taken, {T0.date().isoformat(): 70}, 0, frozenset())
    assert stopped_by(book, decision(ActionType.BILL_CREDIT, "cus_1", 10)) == (
        "credit_budget_customer"
    )
    second = decision(ActionType.BILL_CREDIT, "cus_2", 25)
    assert stopped_by(book, second) is None
    book.record(second, T0)
    assert stopped_by(book, decision(ActionType.BILL_CREDIT, "cus_3", 10)) == "credit_budget_day"


def test_cap_on_open_incidents_counts_what_passes():
    book = GuardBook.load(Guards(max_open_incidents=2), [], {}, 1, frozenset())
    first = decision(ActionType.TROUBLE_TICKET, "cell_1")
    assert stopped_by(book, first) is None
    book.record(first, T0)
    assert stopped_by(book, decision(ActionType.ESCALATE_INCIDENT, "cell_2")) == (
        "max_open_incidents"
    )
    assert stopped_by(book, decision(ActionType.CUSTOMER_MESSAGE)) is None


def test_every_guard_result_is_reported_with_a_reason_when_it_fails():
    guards = Guards(block=["cus_1"], do_not_contact=["cus_1"])
    results = GuardBook.load(guards, [], {}, 0, frozenset()).check(
        decision(ActionType.CUSTOMER_MESSAGE), T0
    )
    assert [(r.guard, r.passed) for r in results] == [
        ("block_list", False),
        ("do_not_contact", False),
    ]
    assert all(r.reason for r in results)
