"""The console's read models over a real SQLite ledger: the inbox with its context, one action
with everything around it, history, the feed and dead letters; the demo's closing summary."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from access_kit import principal
from actionkit import FixedScores, customer, event

from actions.approvals import settle
from actions.ledger import Status
from actions.policy import Holdout
from actions.views import DELIVERED, action_view, dead_letters, feed, history, inbox, loop_summary
from closedloop.events import EventType

PEOPLE = [
    customer(1, sla_tier="gold", mrr=900, contract_type="one_year"),
    customer(2, mrr=40),
    customer(3, mrr=2_000, sla_tier="platinum", contract_type="one_year"),
]
CHURN = {"cus_0000001": 0.8, "cus_0000002": 0.3, "cus_0000003": 0.9}


def test_the_inbox_lists_what_waits_most_urgent_first_with_its_score(make_processor, policy):
    processor, _, clock = make_processor(PEOPLE, FixedScores(CHURN))
    outcome = processor.process(event())
    waiting = [d for d in outcome.decisions if d["status"] == Status.AWAITING_APPROVAL]
    assert waiting, "the test world must put something in front of a person"
    found = inbox(processor.ledger, policy, clock())
    assert found.total == len(waiting) == len(found.items)
    assert {i.decision["key"] for i in found.items} == {d["key"] for d in waiting}
    priorities = [i.decision["priority"] for i in found.items]
    assert priorities == sorted(priorities)
    first = found.items[0]
    assert first.score is not None and first.score.model == "churn"
    assert first.incident_size == len(outcome.decisions)
    assert first.expires_in(clock()) > timedelta(0)
    assert found.budget.per_day == policy.guards.credit_budget.per_day
    assert 0 <= found.budget.left <= found.budget.per_day


def test_the_inbox_pages_through_what_waits_in_order(make_processor, policy):
    processor, _, clock = make_processor(PEOPLE, FixedScores(CHURN))
    processor.process(event())
    whole = [i.decision["key"] for i in inbox(processor.ledger, policy, clock()).items]
    pages = [inbox(processor.ledger, policy, clock(), 1, n) for n in range(len(whole))]
    assert [p.items[0].decision["key"] for p in pages] == whole
    assert [p.offset for p in pages] == list(range(len(whole)))
    assert all(p.total == len(whole) for p in pages)
    assert inbox(processor.ledger, policy, clock(), 1, len(whole)).items == []


def test_an_expired_approval_leaves_the_inbox(make_processor, policy):
    processor, _, clock = make_processor(PEOPLE, FixedScores(CHURN))
    processor.process(event())
    later = clock() + timedelta(minutes=policy.approval_ttl_minutes + 1)
    assert inbox(processor.ledger, policy, later).total == 0


def test_one_action_comes_with_its_event_incident_trail_and_runbook(make_processor):
    processor, _, clock = make_processor(PEOPLE, FixedScores(CHURN))
    onset = event()
    outcome = processor.process(onset)
    key = next(d["key"] for d in outcome.decisions if d["status"] == Status.AWAITING_APPROVAL)
    ops = principal("approver", "ops")
    settle(processor.ledger, key, True, ops, "customer called twice", clock())
    view = action_view(processor.ledger, key)
    assert view is not None and not view.waiting
    assert view.decision["decided_by"] == ops.label
    assert view.event["event_id"] == onset.event_id
    assert len(view.incident) == len(outcome.decisions) - 1
    assert key not in {row["key"] for row in view.incident}
    assert [row["kind"] for row in view.trail] == ["decision", "approval"]
    assert view.guards and all(len(g) == 3 for g in view.guards)
    assert view.runbook.strip()
    assert view.score.probability == CHURN[view.decision["customer_id"]]  # as audited
    assert action_view(processor.ledger, "no-such-key") is None


def test_history_feed_and_dead_letters(make_processor):
    processor, _, _ = make_processor(PEOPLE, FixedScores(CHURN))
    onset = event()
    outcome = processor.process(onset)
    mine = history(processor.ledger, customer="cus_0000002")
    assert mine and {row["customer_id"] for row in mine} == {"cus_0000002"}
    assert len(history(processor.ledger, incident=outcome.incident)) == len(outcome.decisions)
    assert history(processor.ledger) == []
    [entry] = feed(processor.ledger)
    assert entry.event["event_id"] == onset.event_id
    assert sum(entry.statuses.values()) == len(outcome.decisions)
    assert dead_letters(processor.ledger) == []
    processor.ledger.connection.execute(
        "UPDATE decisions SET status = ?, last_error = 'HTTP 503' WHERE key = ?",
        (Status.DEAD_LETTER, outcome.decisions[0]["key"]),
    )
    [dead] = dead_letters(processor.ledger)
    assert (dead["key"], dead["kind"], dead["last_error"]) == (
        outcome.decisions[0]["key"], "decision", "HTTP 503",
    )  # fmt: skip


def test_the_loop_summary_counts_what_the_ledger_holds(make_processor, policy):
    people = [*PEOPLE, customer(4, mrr=300, do_not_contact=True)]
    people += [customer(n, mrr=60) for n in range(5, 45)]  # enough for a control group
    churn = {c.customer_id: CHURN.get(c.customer_id, 0.9) for c in people}
    held = policy.model_copy(update={"holdout": Holdout(share=0.5)})
    processor, dispatcher, _ = make_processor(people, FixedScores(churn), rules=held)
    processor.process(event())
    processor.process(event(EventType.KPI_DEGRADATION, minutes=5))
    dispatcher.drain()
    rows = processor.ledger.decisions(limit=10_000)
    summary = loop_summary(processor.ledger)

    assert summary.events == {"new": 2}
    taken = [r for r in rows if r["status"] not in (Status.SUPPRESSED, Status.HELD_OUT)]
    assert summary.actions == dict(Counter(r["action"] for r in taken))
    assert summary.held_out == sum(r["status"] == Status.HELD_OUT for r in rows) >= 1
    held = Counter(r["guard"] for r in rows if r["status"] == Status.SUPPRESSED)
    assert summary.suppressed == dict(held) and held["do_not_contact"] >= 1
    waiting = [r for r in rows if r["status"] == Status.AWAITING_APPROVAL]
    assert summary.waiting == len(waiting) >= 1
    assert summary.waiting_value == pytest.approx(sum(r["value_at_risk"] for r in waiting))
    reached: dict[str, float] = {}
    for r in rows:
        if r["customer_id"] and r["status"] in DELIVERED:
            reached[r["customer_id"]] = max(reached.get(r["customer_id"], 0), r["value_at_risk"])
    assert summary.reached == len(reached) >= 1
    assert summary.addressed_value == pytest.approx(sum(reached.values()))
