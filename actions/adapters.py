"""Adapters deliver actions: an HTTP endpoint per action type (retries, exponential backoff,
dead letter after the last attempt) or, by default, a local outbox of JSON lines under HOME.

Every delivery carries the decision's idempotency key (header ``Idempotency-Key``) so a receiver
can drop the rare repeat of a delivery whose acknowledgement was lost. Each endpoint has a
circuit breaker: after a run of failed calls it refuses deliveries at once (they are
dead-lettered with the reason, without a call) until a cool-down has passed and one probe
answers, so a dead endpoint costs each delivery nothing rather than its timeout and retries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from actions.policy import ActionType, runbook_text

SEVERITY_BY_PRIORITY = {1: "Critical", 2: "Major", 3: "Minor", 4: "Warning"}


class DeliveryError(Exception):
    """The receiver refused the action or could not be reached; ``retry`` says if worth it."""

    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class CircuitOpenError(DeliveryError):
    """The endpoint's circuit is open: the delivery was refused without a call."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry=False)


@dataclass
class Circuit:
    """A circuit breaker for one endpoint. ``threshold`` consecutive failed calls open it; while
    open every call is refused at once; ``cool_down`` seconds after it opened it is half-open:
    the next call is a probe, whose success closes it and whose failure opens it again."""

    url: str
    threshold: int
    cool_down: float
    clock: Callable[[], float] = time.monotonic
    failures: int = 0  # consecutive failed calls
    opened_at: float | None = None

    @property
    def state(self) -> str:
        """closed, open or half-open."""
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.cool_down else "open"

    def __str__(self) -> str:
        return f"circuit {self.state} for {self.url} after {self.failures} consecutive failures"

    def check(self) -> None:
        """Raise :class:`CircuitOpenError` while the circuit is open."""
        if self.state == "open":
            wait = self.cool_down - (self.clock() - self.opened_at)
            raise CircuitOpenError(f"{self}; next probe in {wait:.0f} s")

    def record(self, answered: bool) -> None:
        """Count a call: ``answered`` when the endpoint gave an answer that is not a failure."""
        if answered:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = self.clock()  # opened, or opened again by a failed probe


class Adapter(Protocol):
    def deliver(self, action: ActionType, key: str, payload: dict[str, Any]) -> str:
        """Deliver once; return the receiver's reference or raise :class:`DeliveryError`."""
        ...


@dataclass
class OutboxAdapter:
    """The embedded default: one JSON line per delivery in ``<folder>/<action>.jsonl``."""

    folder: Path

    def deliver(self, action: ActionType, key: str, payload: dict[str, Any]) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{action.value}.jsonl"
        with path.open("a") as out:
            out.write(json.dumps({"idempotency_key": key, "payload": payload}) + "\n")
        return f"outbox:{path.name}"


@dataclass
class HttpAdapter:
    """POSTs the payload as JSON to ``url``, through the endpoint's circuit (None: no breaker)."""

    url: str
    timeout: float
    client: httpx.Client
    circuit: Circuit | None = None

    def deliver(self, action: ActionType, key: str, payload: dict[str, Any]) -> str:
        if self.circuit is not None:
            self.circuit.check()
        try:
            answer = self.client.post(
                self.url,
                json=payload,
                headers={"Idempotency-Key": key, "X-Closedloop-Action": action.value},
                timeout=self.timeout,
            )
        except httpx.HTTPError as error:
            self._count(answered=False)
            raise DeliveryError(f"{type(error).__name__}: {error}", retry=True) from None
        transient = answer.status_code >= 500 or answer.status_code in (408, 429)
        self._count(answered=not transient)
        if answer.status_code >= 300:
            raise DeliveryError(f"HTTP {answer.status_code}: {answer.text[:200]}", transient)
        return answer.headers.get("Location") or f"http {answer.status_code}"

    def _count(self, answered: bool) -> None:
        if self.circuit is not None:
            self.circuit.record(answered)


@dataclass(frozen=True)
class Attempted:
    delivered: bool
    attempts: int
    reference: str = ""
    error: str = ""


def deliver_with_retries(
    adapter: Adapter,
    action: ActionType,
    key: str,
    payload: dict[str, Any],
    retries: int,
    backoff: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Attempted:
    """Up to ``1 + retries`` attempts, waiting ``backoff × 2^n`` between them; a refusal by an
    open circuit ends them (and is no attempt: nothing was sent)."""
    error = ""
    for attempt in range(1, retries + 2):
        try:
            return Attempted(True, attempt, adapter.deliver(action, key, payload))
        except CircuitOpenError as refused:
            return Attempted(False, attempt - 1, error=str(refused))
        except DeliveryError as failed:
            error = str(failed)
            if not failed.retry or attempt > retries:
                return Attempted(False, attempt, error=error)
            sleep(backoff * 2 ** (attempt - 1))
    return Attempted(False, retries + 1, error=error)


def payload_for(decision: dict[str, Any]) -> dict[str, Any]:
    """What the receiver of an action gets; tickets are shaped like TMF621 troubleTicket."""
    action = ActionType(decision["action"])
    params = json.loads(decision["params"])
    runbook = runbook_text(decision["runbook"])
    if action is ActionType.TROUBLE_TICKET:
        return trouble_ticket(decision, params, runbook)
    return {
        "id": decision["key"],
        "action": action.value,
        "target": decision["target"],
        "cellId": decision["cell_id"],
        "customerId": decision["customer_id"],
        "incident": decision["incident"],
        "priority": decision["priority"],
        "valueAtRisk": decision["value_at_risk"],
        "amount": decision["amount"],
        "parameters": params,
        "rule": decision["rule_id"],
        "runbook": {"id": decision["runbook"], "text": runbook},
    }


def trouble_ticket(decision: dict[str, Any], params: dict[str, Any], runbook: str) -> dict:
    """A TM Forum TMF621 troubleTicket: of a cell or customer, or of a model for its owner."""
    target = decision["customer_id"] or decision["cell_id"] or decision["target"]
    related_party = [{"id": "closedloop", "role": "originator", "@referredType": "Organization"}]
    if decision["customer_id"]:
        related_party.append(
            {"id": decision["customer_id"], "role": "customer", "@referredType": "Customer"}
        )
    if decision.get("team"):
        related_party.append({"id": decision["team"], "role": "owner", "@referredType": "Team"})
    entities = [{"id": decision["event_id"], "role": "triggeringEvent", "@referredType": "Event"}]
    if decision["cell_id"]:
        entities.insert(
            0, {"id": decision["cell_id"], "role": "affectedCell", "@referredType": "Cell"}
        )
    if "model" in params:
        entities.insert(0, {
            "id": f"{params['model']}/{params['version']}", "role": "affectedModel",
            "@referredType": "Model", "href": params.get("report"),
        })  # fmt: skip
    description = (
        params["summary"] + "".join(f"; {reason}" for reason in params.get("reasons", []))
        if "summary" in params
        else f"Opened by rule {decision['rule_id']}: probability {decision['probability']:.2f}, "
        f"value at risk {decision['value_at_risk']:,.0f} USD"
    )
    return {
        "@type": "TroubleTicket",
        "id": decision["key"],
        "externalId": decision["incident"],
        "name": f"{params.get('ticketType', 'trouble')} on {target}",
        "description": description,
        "severity": SEVERITY_BY_PRIORITY[int(decision["priority"])],
        "priority": str(decision["priority"]),
        "ticketType": params.get("ticketType", "trouble"),
        "status": "acknowledged",
        "creationDate": decision["created_at"],
        "relatedEntity": entities,
        "relatedParty": related_party,
        "note": [
            {"author": "closedloop", "date": decision["created_at"], "text": runbook},
        ],
    }


def ticket_resolution(ticket: dict[str, Any], at: str, note: str) -> dict[str, Any]:
    """A TMF621 troubleTicket status update: the ticket ``ticket`` opened is resolved."""
    return {
        "@type": "TroubleTicket",
        "id": ticket["key"],
        "externalId": ticket["incident"],
        "status": "resolved",
        "statusChangeDate": at,
        "statusChangeReason": "alarms cleared",
        "resolutionDate": at,
        "note": [{"author": "closedloop", "date": at, "text": note}],
    }
