"""Events sent to abuse the action layer (issue 14): each attack is tried as an attacker would,
and must do no harm — nothing acted on twice, nothing resolved that was not raised, no real
event shadowed, unknown cells and customers refused with a reason."""

from __future__ import annotations

from datetime import timedelta

import pytest
from actionkit import T0, FixedScores, customer, event

from actions.intake import Record
from actions.ledger import Status, dumps
from actions.policy import ActionType
from closedloop.events import EventType, Severity

VICTIM = customer(1, cell="cell_00000", sla_tier="gold", mrr=750.0, contract_type="two_year")
CELLS = [f"cell_{n:05d}" for n in range(60)]
CHURN = {VICTIM.customer_id: 0.8}


def credits(ledger, statuses=(Status.PENDING, Status.AWAITING_APPROVAL, Status.DISPATCHED)):
    rows = ledger.decisions(action=ActionType.BILL_CREDIT, limit=10_000)
    return [r for r in rows if r["status"] in statuses]


def forged(n: int, cell: str, minutes: float = 0) -> dict:
    return event(
        cell=cell, customer_id=VICTIM.customer_id, alarm_id=f"forged-{n}", minutes=minutes
    ).model_dump(mode="json")


def test_sixty_forged_alarms_for_one_customer_on_sixty_cells_end_in_one_credit(make_processor):
    # one real customer; every other cell is real but empty (the inventory knows it)
    processor, _, _ = make_processor([VICTIM], FixedScores(CHURN), cells=CELLS)
    records = [Record(forged(n, cell), "POST /events", n) for n, cell in enumerate(CELLS, 1)]
    outcomes = processor.take(records)
    assert {o.outcome for o in outcomes} == {"new"}
    given = credits(processor.ledger)
    assert len(given) == 1 and given[0]["amount"] == 75.0
    stopped = processor.ledger.suppressed_by_guard()
    assert stopped["cooldown"] >= 59  # each later credit: the customer's weekly cooldown


def test_forged_alarms_on_made_up_cells_are_refused_and_the_guards_hold_without_the_intake(
    make_processor,
):
    processor, _, _ = make_processor([VICTIM], FixedScores(CHURN))
    made_up = [Record(forged(n, f"nowhere_{n}"), "POST /events", n) for n in range(1, 61)]
    outcomes = processor.take(made_up)
    assert {o.outcome for o in outcomes} == {"rejected"}
    assert outcomes[0].reason == "cell_id: no cell 'nowhere_1' in the inventory"
    assert len(processor.ledger.rejected_events()) == 60 and not credits(processor.ledger)
    # the guards alone (events that skip the intake) still give the customer one credit
    processor.process_many([event(cell=f"nowhere_{n}", customer_id=VICTIM.customer_id,
                                  alarm_id=f"f-{n}") for n in range(60)])  # fmt: skip
    assert len(credits(processor.ledger)) == 1


def test_forged_alarms_spread_over_the_past_do_not_escape_cooldown_or_budget(make_processor):
    """Event times are the sender's word: guards count in the processing clock."""
    processor, _, _ = make_processor([VICTIM], FixedScores(CHURN), cells=CELLS)
    weeks_back = [
        Record(forged(n, cell, minutes=-n * 8 * 24 * 60), "POST /events", n)
        for n, cell in enumerate(CELLS[:30], 1)
    ]
    assert {o.outcome for o in processor.take(weeks_back)} == {"new"}
    assert len(credits(processor.ledger)) == 1


def test_an_unknown_customer_is_refused_with_its_reason(make_processor):
    processor, _, _ = make_processor([VICTIM], FixedScores(CHURN))
    item = event(EventType.REPEATED_FAILURE, cell="cell_00000", customer_id="cus_9999999")
    (outcome,) = processor.take([Record(item.model_dump(mode="json"), "POST /events", 1)])
    assert outcome.outcome == "rejected"
    assert outcome.reason == "customer_id: no customer 'cus_9999999' in the inventory"
    assert processor.ledger.decisions() == []


def test_a_forged_clear_resolves_nothing_it_did_not_raise(make_processor):
    people = [VICTIM, customer(2, cell="cell_00001")]
    processor, _, _ = make_processor(people, FixedScores(CHURN), cells=CELLS)
    opened = processor.take([Record(event(cell="cell_00000", alarm_id="power").model_dump(
        mode="json"), "POST /events", 1)], sender="nms-1")[0]  # fmt: skip
    assert opened.outcome == "new"
    waiting_before = processor.ledger.decisions(status=Status.AWAITING_APPROVAL)
    clears = [
        event(EventType.ALARM_CLEAR, cell="nowhere", alarm_id="power", minutes=1),  # made up
        event(EventType.ALARM_CLEAR, cell="cell_00001", alarm_id="power", minutes=1),  # other
    ]
    outcomes = processor.take(
        [Record(c.model_dump(mode="json"), "POST /events", n) for n, c in enumerate(clears, 1)],
        sender="nms-1",
    )
    assert [o.outcome for o in outcomes] == ["rejected", "unmatched_clear"]
    # the right cell and alarm id, from another sender: not its alarm either
    other = event(EventType.ALARM_CLEAR, cell="cell_00000", alarm_id="power", minutes=2)
    (third,) = processor.take([Record(other.model_dump(mode="json"), "x", 1)], sender="intruder")
    assert third.outcome == "unmatched_clear"
    ledger = processor.ledger
    assert ledger.decisions(status=Status.AWAITING_APPROVAL) == waiting_before
    assert ledger.read().value("SELECT COUNT(*) FROM updates") == 0  # no TMF621 "resolved"
    assert ledger.read().value("SELECT COUNT(*) FROM outages WHERE resolved_at IS NULL") == 1
    real = event(EventType.ALARM_CLEAR, cell="cell_00000", alarm_id="power", minutes=3)
    (done,) = processor.take([Record(real.model_dump(mode="json"), "x", 1)], sender="nms-1")
    assert (done.outcome, done.incident) == ("resolved", opened.incident)


def test_an_event_id_reused_by_another_sender_does_not_shadow_the_real_event(make_processor):
    processor, _, _ = make_processor([VICTIM], FixedScores(CHURN), cells=CELLS)
    harmless = event(EventType.USAGE_SPIKE, cell="cell_00005", severity=Severity.WARNING,
                     event_id="nms-1:0042")  # fmt: skip
    real = event(cell="cell_00000", alarm_id="power", event_id="nms-1:0042", minutes=1)
    first = processor.take([Record(harmless.model_dump(mode="json"), "x", 1)], sender="intruder")
    assert first[0].outcome == "new" and not first[0].decisions
    (outcome,) = processor.take([Record(real.model_dump(mode="json"), "x", 1)], sender="nms-1")
    assert outcome.outcome == "new" and outcome.decisions
    # the same sender sending its event again is still a duplicate
    again = processor.take([Record(real.model_dump(mode="json"), "x", 1)], sender="nms-1")
    assert again[0].outcome == "duplicate"


def test_an_event_from_far_in_the_future_is_refused_and_moves_no_live_value(make_processor):
    processor, _, _ = make_processor([VICTIM], FixedScores(CHURN), cells=CELLS)
    writes = []
    processor.telemetry = type("T", (), {"write": lambda self, r: writes.append(r)})()
    kpi = event(EventType.KPI_DEGRADATION, cell="cell_00000", metric="latency_ms", value=999.0)
    frozen = kpi.model_dump(mode="json") | {"occurred_at": "9999-12-31T00:00:00Z"}
    (outcome,) = processor.take([Record(frozen, "x", 1)])
    assert outcome.outcome == "rejected" and "occurred_at" in outcome.reason
    late = (T0 + timedelta(days=1)).isoformat()
    (ahead,) = processor.take([Record(frozen | {"occurred_at": late}, "x", 2)])
    assert ahead.outcome == "rejected" and "after the processing clock" in ahead.reason
    assert writes == []


def test_nan_never_reaches_the_audit_trail(make_processor):
    """A score with a NaN feature (a provider's bug) is refused by the ledger's encoder: the
    event's transaction rolls back, nothing is stored half."""

    class NanScores(FixedScores):
        def churn(self, customer_ids):
            return {
                c: s.model_copy(update={"features": {"x": float("nan")}})
                for c, s in super().churn(customer_ids).items()
            }

    processor, _, _ = make_processor([VICTIM], NanScores(CHURN))
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        processor.process(event(cell="cell_00000"))
    ledger = processor.ledger
    assert ledger.decisions() == [] and ledger.read().value("SELECT COUNT(*) FROM audit") == 0
    with pytest.raises(ValueError):
        dumps({"value": float("inf")})
