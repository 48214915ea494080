"""Named queries of the event path over a ledger transaction, and the typed rows they write.

A row type's fields are its table's columns, in order: the INSERT is built from the fields, so
no caller lines up positional parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, NamedTuple

from actions.ledger import LIVE, QUEUED, TAKEN, Status, Tx, sql_list
from actions.policy import INCIDENT_ACTIONS, ActionType


class EventRow(NamedTuple):
    sender: str
    event_id: str
    event_type: str
    cell_id: str
    alarm_id: str | None
    occurred_at: str
    received_at: str
    outcome: str
    body: str


class RejectedRow(NamedTuple):
    """An event record the intake refused; ``key`` hashes source, line and record, so a
    re-read of the same input adds nothing."""

    key: str
    event_id: str | None
    raw: str
    reason: str
    source: str
    line: int | None
    received_at: str


class DecisionRow(NamedTuple):
    key: str
    incident: str
    event_id: str
    rule_id: str
    action: str
    target: str
    cell_id: str
    customer_id: str | None
    priority: int
    probability: float
    value_at_risk: float
    amount: float | None
    impact: float
    runbook: str
    params: str  # JSON
    policy_version: str
    model_version: str | None
    status: Status
    guard: str | None
    reason: str | None
    decided_at: str
    created_at: str
    expires_at: str | None
    requested_by: str | None = None  # the principal who sent the event
    team: str | None = None  # the team that answers for the action
    cost: float | None = None  # USD, as the policy prices the action
    expected_gain: float | None = None  # uplift × value × MRR − cost, USD
    uplift_version: str | None = None  # the uplift model behind expected_gain


class UpdateRow(NamedTuple):
    """A status update sent after a decision (a ticket resolved)."""

    key: str
    decision_key: str
    action: str
    event_id: str
    cell_id: str
    customer_id: str | None
    status: Status
    payload: str  # JSON
    created_at: str


@cache
def _insert(table: str, columns: tuple[str, ...], keep_existing: bool) -> str:
    marks = ", ".join("?" for _ in columns)
    keep = " ON CONFLICT DO NOTHING" if keep_existing else ""
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}){keep}"


def insert(tx: Tx, table: str, rows: Sequence[NamedTuple], keep_existing: bool = False) -> None:
    """Insert typed rows into ``table``; ``keep_existing``: a row whose key exists already is
    left as it is (else an error)."""
    if rows:
        tx.many(_insert(table, rows[0]._fields, keep_existing), list(rows))


# events, alarms and outages


def known_event(tx: Tx, sender: str, event_id: str) -> bool:
    """Whether ``sender`` sent an event with this id before."""
    found = tx.value("SELECT 1 FROM events WHERE sender = ? AND event_id = ?", (sender, event_id))
    return bool(found)


def active_alarms(tx: Tx, cell_id: str) -> int:
    return int(
        tx.value("SELECT COUNT(*) FROM alarms WHERE cell_id = ? AND cleared_at IS NULL", (cell_id,))
    )


class Alarm(NamedTuple):
    outage_id: str
    cell_id: str
    sender: str
    cleared: bool


def alarm(tx: Tx, alarm_id: str) -> Alarm | None:
    """The alarm raised under this id (its outage, cell, sender and whether it cleared)."""
    found = tx.rows(
        "SELECT outage_id, cell_id, COALESCE(sender, '') AS sender, cleared_at FROM alarms"
        " WHERE alarm_id = ?",
        (alarm_id,),
    )
    if not found:
        return None
    row = found[0]
    return Alarm(row["outage_id"], row["cell_id"], row["sender"], row["cleared_at"] is not None)


def open_outage(tx: Tx, cell_id: str) -> str | None:
    return tx.value(
        "SELECT outage_id FROM outages WHERE cell_id = ? AND resolved_at IS NULL", (cell_id,)
    )


def add_alarm(tx: Tx, alarm_id: str, outage_id: str, cell_id: str, sender: str, at: str) -> None:
    tx.run(
        "INSERT INTO alarms (alarm_id, outage_id, cell_id, sender, opened_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (alarm_id, outage_id, cell_id, sender, at),
    )


def add_outage(tx: Tx, outage_id: str, cell_id: str, at: str) -> None:
    tx.run(
        "INSERT INTO outages (outage_id, cell_id, opened_at) VALUES (?, ?, ?)",
        (outage_id, cell_id, at),
    )


def clear_alarm(tx: Tx, alarm_id: str, outage_id: str, at: str) -> int:
    """Clear an alarm; returns how many alarms of its outage are still active."""
    tx.run("UPDATE alarms SET cleared_at = ? WHERE alarm_id = ?", (at, alarm_id))
    return int(
        tx.value(
            "SELECT COUNT(*) FROM alarms WHERE outage_id = ? AND cleared_at IS NULL", (outage_id,)
        )
    )


def resolve_outage(tx: Tx, outage_id: str, at: str, reason: str) -> list[str]:
    """Mark the outage and its incidents resolved, cancel its decisions still waiting for
    approval (with ``reason``); returns the keys cancelled."""
    tx.run("UPDATE outages SET resolved_at = ? WHERE outage_id = ?", (at, outage_id))
    tx.run(
        "UPDATE decisions SET resolved_at = ? WHERE incident = ? AND resolved_at IS NULL"
        f" AND action IN ({sql_list(INCIDENT_ACTIONS)})",
        (at, outage_id),
    )
    waiting = (outage_id, Status.AWAITING_APPROVAL)
    cancelled = tx.rows("SELECT key FROM decisions WHERE incident = ? AND status = ?", waiting)
    tx.run(
        "UPDATE decisions SET status = ?, reason = ? WHERE incident = ? AND status = ?",
        (Status.CANCELLED, reason, *waiting),
    )
    return [row["key"] for row in cancelled]


def tickets_of(tx: Tx, outage_id: str) -> list[dict[str, Any]]:
    """The outage's trouble tickets that were or will be delivered."""
    statuses = sorted(QUEUED | {Status.DISPATCHED})
    marks = ", ".join("?" for _ in statuses)
    return tx.rows(
        "SELECT key, incident, cell_id, customer_id FROM decisions WHERE incident = ?"
        f" AND action = ? AND status IN ({marks}) ORDER BY key",
        (outage_id, ActionType.TROUBLE_TICKET, *statuses),
    )


# what the guards count


def existing_keys(tx: Tx, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        found |= {
            r["key"] for r in tx.rows(f"SELECT key FROM decisions WHERE key IN ({marks})", chunk)
        }
    return found


_TAKEN = sorted(TAKEN)
_TAKEN_MARKS = ", ".join("?" for _ in _TAKEN)


def taken_by(
    tx: Tx, targets: Sequence[str], actions: Sequence[str], since: str
) -> list[dict[str, Any]]:
    """Actions of these types taken on these targets (customers, cells), on any cell and for
    any event, decided since ``since`` by the processing clock (target, action, time, amount)."""
    kinds = sql_list(actions)
    found: list[dict[str, Any]] = []
    for start in range(0, len(targets), 500):
        chunk = list(targets[start : start + 500])
        marks = ", ".join("?" for _ in chunk)
        found += tx.rows(
            f"SELECT target, action, created_at, amount FROM decisions WHERE target IN ({marks})"
            f" AND action IN ({kinds}) AND created_at >= ? AND status IN ({_TAKEN_MARKS})",
            (*chunk, since, *_TAKEN),
        )
    return found


def credits_between(tx: Tx, start: str, end: str) -> float:
    """Credits decided in ``[start, end)`` by the processing clock, over every customer."""
    return float(
        tx.value(
            "SELECT COALESCE(SUM(amount), 0) FROM decisions"
            f" WHERE action = '{ActionType.BILL_CREDIT}' AND created_at >= ? AND created_at < ?"
            f" AND status IN ({_TAKEN_MARKS})",
            (start, end, *_TAKEN),
        )
    )


def open_incidents(tx: Tx, cap: int) -> int:
    """Open tickets, escalations and dispatches, counted up to ``cap`` (all a guard needs)."""
    live = sorted(LIVE)
    marks = ", ".join("?" for _ in live)
    return int(
        tx.value(
            "SELECT COUNT(*) FROM (SELECT 1 FROM decisions WHERE resolved_at IS NULL"
            f" AND action IN ({sql_list(INCIDENT_ACTIONS)}) AND status IN ({marks}) LIMIT ?)"
            " AS counted",
            (*live, cap),
        )
    )
