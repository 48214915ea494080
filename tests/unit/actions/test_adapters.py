"""Adapters against a real local HTTP receiver: retries with backoff, dead letter, the
idempotency key header, and tickets shaped like TMF621."""

from __future__ import annotations

import httpx
import pytest
from actionkit import FixedScores, customer, event

from actions import audit
from actions.adapters import Circuit, HttpAdapter, deliver_with_retries
from actions.ledger import Status
from actions.policy import ActionType
from closedloop.events import EventType

PEOPLE = [customer(1, sla_tier="gold", mrr=300), customer(2)]


@pytest.fixture
def client():
    with httpx.Client() as opened:
        yield opened


def adapters(receiver, client) -> dict:
    return {
        action: HttpAdapter(f"{receiver.url}/{action.value}", 5, client) for action in ActionType
    }


def test_transient_failures_are_retried_with_exponential_backoff(receiver, client):
    receiver.failures["/t"] = 2
    waits: list[float] = []
    attempt = deliver_with_retries(
        HttpAdapter(f"{receiver.url}/t", 5, client), ActionType.BILL_CREDIT, "key-1", {"a": 1},
        retries=3, backoff=0.1, sleep=waits.append,
    )  # fmt: skip
    assert attempt.delivered and attempt.attempts == 3
    assert waits == [0.1, 0.2]
    assert receiver.keys("/t") == ["key-1"] and receiver.attempts["/t"] == 3


def test_receiver_failing_n_times_then_succeeding_gets_each_action_once(
    receiver, client, make_processor
):
    receiver.failures["/trouble_ticket"] = 2
    processor, dispatcher, _ = make_processor(
        PEOPLE, FixedScores({"cus_0000001": 0.2}), adapters=adapters(receiver, client), retries=3
    )
    processor.process(event())
    results = dispatcher.drain()
    assert results == {Status.DISPATCHED: results.total()}
    ticket = processor.ledger.decisions(action="trouble_ticket")[0]
    assert ticket["status"] == Status.DISPATCHED and ticket["attempts"] == 3
    assert receiver.keys("/trouble_ticket") == [ticket["key"]]
    sent = {key for _, key, _ in receiver.received}
    assert sent == {r["key"] for r in processor.ledger.decisions(status=Status.DISPATCHED)}


def test_receiver_that_always_fails_puts_the_action_on_the_dead_letter_list(
    receiver, client, make_processor
):
    receiver.failures["/customer_message"] = -1
    processor, dispatcher, _ = make_processor(
        PEOPLE, FixedScores(), adapters=adapters(receiver, client), retries=2
    )
    processor.process(event())
    dispatcher.drain()
    dead = processor.ledger.decisions(status=Status.DEAD_LETTER)
    assert {d["action"] for d in dead} == {"customer_message"} and len(dead) == 2
    assert all(d["attempts"] == 3 and "HTTP 503" in d["last_error"] for d in dead)
    assert receiver.attempts["/customer_message"] == 6
    assert dispatcher.drain() == {}  # a dead letter is not retried behind the operator's back
    trail = audit.query(processor.ledger, action=dead[0]["key"])
    assert trail[-1]["kind"] == "dispatch" and "dead_letter" in trail[-1]["payload"]


def test_ticket_is_a_tmf621_trouble_ticket_with_its_runbook(receiver, client, make_processor):
    processor, dispatcher, _ = make_processor(
        PEOPLE, FixedScores(), adapters=adapters(receiver, client)
    )
    processor.process(event())
    dispatcher.drain()
    ((_, key, ticket),) = [r for r in receiver.received if r[0] == "/trouble_ticket"]
    assert ticket["@type"] == "TroubleTicket" and ticket["id"] == key
    assert ticket["ticketType"] == "networkOutage" and ticket["status"] == "acknowledged"
    assert ticket["severity"] in {"Critical", "Major", "Minor", "Warning"}
    assert {"id": "cell_00001", "role": "affectedCell", "@referredType": "Cell"} in (
        ticket["relatedEntity"]
    )
    assert ticket["relatedParty"][0]["role"] == "originator"
    assert "## Escalation path" in ticket["note"][0]["text"]
    ((_, _, credit),) = [r for r in receiver.received if r[0] == "/bill_credit"]
    assert credit["amount"] == 30.0 and credit["runbook"]["id"] == "bill_credit"


def test_unreachable_receiver_is_retried_then_reported(client, free_port):
    attempt = deliver_with_retries(
        HttpAdapter(f"http://127.0.0.1:{free_port()}/x", 5, client),
        ActionType.BILL_CREDIT, "k", {}, retries=2, backoff=0, sleep=lambda _: None,
    )  # fmt: skip
    assert not attempt.delivered and attempt.attempts == 3
    assert "ConnectError" in attempt.error


def test_clear_sends_each_ticket_of_the_outage_a_resolved_update_once(
    receiver, client, make_processor
):
    processor, dispatcher, _ = make_processor(
        PEOPLE, FixedScores(), adapters=adapters(receiver, client)
    )
    processor.process(event())
    dispatcher.drain()
    ((ticket,),) = [receiver.keys("/trouble_ticket")]
    clear = event(EventType.ALARM_CLEAR, minutes=40)
    assert processor.process(clear).outcome == "resolved"
    assert dispatcher.drain() == {Status.DISPATCHED: 1}
    assert receiver.keys("/trouble_ticket") == [ticket, f"{ticket}:resolved"]
    (_, _, update) = receiver.received[-1]
    assert update["@type"] == "TroubleTicket" and update["id"] == ticket
    assert (
        update["status"] == "resolved" and update["resolutionDate"] == clear.occurred_at.isoformat()
    )
    assert clear.event_id in update["note"][0]["text"]

    assert processor.process(clear).outcome == "duplicate"  # replayed: nothing is sent again
    assert dispatcher.drain() == {}
    assert receiver.keys("/trouble_ticket") == [ticket, f"{ticket}:resolved"]
    trail = audit.query(processor.ledger, action=f"{ticket}:resolved")
    assert [r["kind"] for r in trail] == ["dispatch"] and "dispatched" in trail[0]["payload"]


def test_a_resolved_update_waits_for_its_ticket_to_be_delivered(receiver, client, make_processor):
    receiver.failures["/trouble_ticket"] = -1
    processor, dispatcher, _ = make_processor(
        PEOPLE, FixedScores(), adapters=adapters(receiver, client), retries=0
    )
    processor.process_many([event(), event(EventType.ALARM_CLEAR, minutes=40)])
    dispatcher.drain()
    (ticket,) = processor.ledger.decisions(action="trouble_ticket")
    assert ticket["status"] == Status.DEAD_LETTER
    assert receiver.attempts["/trouble_ticket"] == 1  # the update was not sent before its ticket


class Ticks:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_dead_endpoint_opens_its_circuit_and_a_probe_after_the_cool_down_closes_it(
    receiver, client
):
    ticks = Ticks()
    circuit = Circuit(f"{receiver.url}/t", threshold=3, cool_down=30, clock=ticks)
    adapter = HttpAdapter(f"{receiver.url}/t", 5, client, circuit)
    receiver.failures["/t"] = -1

    def deliver(key: str):
        return deliver_with_retries(
            adapter, ActionType.BILL_CREDIT, key, {}, retries=1, backoff=0, sleep=lambda _: None
        )

    assert deliver("a").attempts == 2 and circuit.state == "closed"
    refused = deliver("b")  # the third failed call opens it; the retry is refused
    assert (refused.delivered, refused.attempts, circuit.state) == (False, 1, "open")
    assert "circuit open" in refused.error and "next probe in 30 s" in refused.error
    later = deliver("c")
    assert (later.attempts, receiver.attempts["/t"]) == (0, 3), "no call while open"
    ticks.now = 30
    assert circuit.state == "half-open"
    assert deliver("d").attempts == 1 and circuit.state == "open", "a failed probe reopens it"
    ticks.now = 60
    receiver.failures["/t"] = 0
    assert deliver("e").delivered and circuit.state == "closed" and circuit.failures == 0
    assert receiver.keys("/t") == ["e"] and receiver.attempts["/t"] == 5
