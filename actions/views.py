"""What people see of the ledger: the read models of the ops console, built from its rows.

Each view gathers, in a few indexed queries, what a person needs to decide without looking
elsewhere: the decision, the score and its reasons as audited, the triggering event, the other
actions of the same incident, the runbook and the budget left.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from actions import audit
from actions.ledger import QUEUED, Ledger, Status, Tx, sql_list
from actions.policy import Policy, runbook_text
from actions.queries import credits_between

CHUNK = 500  # keys per IN (...) list
DELIVERED = QUEUED | {Status.DISPATCHED}  # sent, or on its way


@dataclass(frozen=True)
class Budget:
    """Bill credits committed today against the policy's daily budget."""

    used: float
    per_day: float

    @property
    def left(self) -> float:
        return max(0.0, self.per_day - self.used)


@dataclass(frozen=True)
class Score:
    """The score a decision was made on, as the audit trail recorded it."""

    model: str
    model_version: str
    probability: float
    reasons: list[str]
    stale_features: list[str]

    @classmethod
    def of(cls, payload: dict[str, Any] | None) -> Score | None:
        if not payload:
            return None
        return cls(
            model=payload["model"],
            model_version=str(payload["model_version"]),
            probability=float(payload["probability"]),
            reasons=list(payload.get("reasons") or []),
            stale_features=list(payload.get("stale_features") or []),
        )


@dataclass(frozen=True)
class Waiting:
    """One action in the inbox: the decision row, its score, and how many others share its
    incident."""

    decision: dict[str, Any]
    score: Score | None
    incident_size: int

    def expires_in(self, now: datetime) -> timedelta | None:
        expires = self.decision["expires_at"]
        return datetime.fromisoformat(expires) - now if expires else None


@dataclass(frozen=True)
class Inbox:
    """One page of the actions waiting, ``offset`` of them before it, ``total`` in all."""

    items: list[Waiting]
    total: int
    budget: Budget
    offset: int = 0


@dataclass(frozen=True)
class ActionView:
    """One action with everything around it."""

    decision: dict[str, Any]
    score: Score | None
    guards: list[tuple[str, bool, str]]
    event: dict[str, Any] | None
    incident: list[dict[str, Any]]
    trail: list[dict[str, Any]]
    runbook: str
    features: dict[str, Any] = field(default_factory=dict)

    @property
    def waiting(self) -> bool:
        return self.decision["status"] == Status.AWAITING_APPROVAL


@dataclass(frozen=True)
class FeedEntry:
    """An event and what it led to: decisions by status, and the guards that held some back."""

    event: dict[str, Any]
    statuses: dict[str, int]
    guards: dict[str, int]


def budget_today(tx: Tx, policy: Policy, now: datetime) -> Budget:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    used = credits_between(tx, day.isoformat(), (day + timedelta(days=1)).isoformat())
    return Budget(used=used, per_day=policy.guards.credit_budget.per_day)


def _chunks(keys: list[str]):
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        yield chunk, ", ".join("?" for _ in chunk)


def _decision_payloads(tx: Tx, keys: list[str]) -> dict[str, dict[str, Any]]:
    """The audited decision entry of each key."""
    found: dict[str, dict[str, Any]] = {}
    for chunk, marks in _chunks(keys):
        rows = tx.rows(
            f"SELECT key, payload FROM audit WHERE kind = 'decision' AND key IN ({marks})", chunk
        )
        found |= {row["key"]: json.loads(row["payload"]) for row in rows}
    return found


def inbox(
    ledger: Ledger, policy: Policy, now: datetime, limit: int = 1_000, offset: int = 0
) -> Inbox:
    """Actions waiting for approval, most urgent first (priority, then the soonest to expire):
    ``limit`` of them after the ``offset`` most urgent."""
    tx = ledger.read()
    waiting = (Status.AWAITING_APPROVAL, now.isoformat())
    total = int(
        tx.value("SELECT COUNT(*) FROM decisions WHERE status = ? AND expires_at >= ?", waiting)
    )
    rows = tx.rows(
        "SELECT * FROM decisions WHERE status = ? AND expires_at >= ?"
        f" ORDER BY priority, expires_at, key LIMIT {int(limit)} OFFSET {int(offset)}",
        waiting,
    )
    payloads = _decision_payloads(tx, [row["key"] for row in rows])
    sizes: dict[str, int] = {}
    incidents = sorted({row["incident"] for row in rows})
    for chunk, marks in _chunks(incidents):
        counted = tx.rows(
            f"SELECT incident, COUNT(*) AS n FROM decisions WHERE incident IN ({marks})"
            " GROUP BY incident",
            chunk,
        )
        sizes |= {row["incident"]: int(row["n"]) for row in counted}
    items = [
        Waiting(row, Score.of(payloads.get(row["key"], {}).get("score")), sizes[row["incident"]])
        for row in rows
    ]
    return Inbox(items, total, budget_today(tx, policy, now), offset)


def action_view(ledger: Ledger, key: str) -> ActionView | None:
    """One action with its score, guards, triggering event, incident, trail and runbook."""
    tx = ledger.read()
    found = tx.rows("SELECT * FROM decisions WHERE key = ?", (key,))
    if not found:
        return None
    decision = found[0]
    payload = _decision_payloads(tx, [key]).get(key, {})
    event = tx.rows("SELECT body FROM events WHERE event_id = ?", (decision["event_id"],))
    incident = tx.rows(
        "SELECT key, action, target, status, priority, value_at_risk, amount, guard"
        " FROM decisions WHERE incident = ? AND key <> ? ORDER BY priority, key LIMIT 200",
        (decision["incident"], key),
    )
    score = payload.get("score") or {}
    return ActionView(
        decision=decision,
        score=Score.of(score),
        guards=[tuple(g) for g in payload.get("guards", [])],
        event=json.loads(event[0]["body"]) if event else None,
        incident=incident,
        trail=audit.query(ledger, action=key),
        runbook=runbook_text(decision["runbook"]),
        features=score.get("features") or {},
    )


def history(
    ledger: Ledger,
    customer: str | None = None,
    cell: str | None = None,
    incident: str | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Decisions about a customer, a cell or an incident, newest first."""
    clauses, params = [], []
    for column, value in (("customer_id", customer), ("cell_id", cell), ("incident", incident)):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    if not clauses:
        return []
    return ledger.read().rows(
        f"SELECT * FROM decisions WHERE {' AND '.join(clauses)}"
        f" ORDER BY decided_at DESC, key LIMIT {int(limit)}",
        params,
    )


def feed(ledger: Ledger, limit: int = 100) -> list[FeedEntry]:
    """The latest events received, newest first, each with what it led to."""
    tx = ledger.read()
    events = tx.rows(
        "SELECT event_id, event_type, cell_id, occurred_at, received_at, outcome FROM events"
        f" ORDER BY received_at DESC, event_id LIMIT {int(limit)}"
    )
    statuses: dict[str, dict[str, int]] = {}
    guards: dict[str, dict[str, int]] = {}
    for chunk, marks in _chunks([e["event_id"] for e in events]):
        for row in tx.rows(
            "SELECT event_id, status, guard, COUNT(*) AS n FROM decisions"
            f" WHERE event_id IN ({marks}) GROUP BY event_id, status, guard",
            chunk,
        ):
            by_status = statuses.setdefault(row["event_id"], {})
            by_status[row["status"]] = by_status.get(row["status"], 0) + int(row["n"])
            if row["guard"]:
                by_guard = guards.setdefault(row["event_id"], {})
                by_guard[row["guard"]] = int(row["n"])
    return [
        FeedEntry(e, statuses.get(e["event_id"], {}), guards.get(e["event_id"], {})) for e in events
    ]


def dead_letters(ledger: Ledger, limit: int = 500) -> list[dict[str, Any]]:
    """Decisions and status updates whose delivery gave up, oldest first."""
    tx = ledger.read()
    columns = "key, action, cell_id, customer_id, attempts, last_error, created_at"
    return tx.rows(
        f"SELECT {columns}, 'decision' AS kind FROM decisions WHERE status = ?"
        f" UNION ALL SELECT {columns}, 'update' AS kind FROM updates WHERE status = ?"
        f" ORDER BY created_at, key LIMIT {int(limit)}",
        (Status.DEAD_LETTER, Status.DEAD_LETTER),
    )


@dataclass(frozen=True)
class LoopSummary:
    """What the loop did, as the ledger holds it: the closing lines of ``closedloop demo``."""

    events: dict[str, int]  # events recorded, by outcome
    actions: dict[str, int]  # decisions neither suppressed nor held out, by action type
    suppressed: dict[str, int]  # by guard
    held_out: int  # the policy's random control group: recorded, never sent
    waiting: int  # awaiting approval
    waiting_value: float  # their value at risk, USD
    reached: int  # customers sent an action (delivered or queued)
    addressed_value: float  # those customers' value at risk, each counted once, USD


def loop_summary(ledger: Ledger) -> LoopSummary:
    """The ledger's events, actions and value at risk, summed in a few queries."""
    tx = ledger.read()
    events = tx.rows("SELECT outcome, COUNT(*) AS n FROM events GROUP BY outcome")
    actions = tx.rows(
        "SELECT action, COUNT(*) AS n FROM decisions WHERE status NOT IN (?, ?) GROUP BY action",
        (Status.SUPPRESSED, Status.HELD_OUT),
    )
    held_out = tx.value("SELECT COUNT(*) FROM decisions WHERE status = ?", (Status.HELD_OUT,))
    waiting = tx.rows(
        "SELECT COUNT(*) AS n, COALESCE(SUM(value_at_risk), 0) AS v FROM decisions "
        "WHERE status = ?",
        (Status.AWAITING_APPROVAL,),
    )[0]
    reached = tx.rows(
        "SELECT COUNT(*) AS n, COALESCE(SUM(v), 0) AS v FROM (SELECT customer_id, "
        "MAX(value_at_risk) AS v FROM decisions WHERE customer_id IS NOT NULL AND status IN "
        f"({sql_list(DELIVERED)}) GROUP BY customer_id) AS reached"
    )[0]
    return LoopSummary(
        events={r["outcome"]: int(r["n"]) for r in events},
        actions={r["action"]: int(r["n"]) for r in actions},
        suppressed=ledger.suppressed_by_guard(),
        held_out=int(held_out),
        waiting=int(waiting["n"]),
        waiting_value=float(waiting["v"]),
        reached=int(reached["n"]),
        addressed_value=float(reached["v"]),
    )
