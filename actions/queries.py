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


class AlarmRow(NamedTuple):
    alarm_id: str
    outage_id: str
    cell_id: str
    sender: str
    opened_at: str


class OutageRow(NamedTuple):
    outage_id: str
    cell_id: str
    opened_at: str


@cache
def _insert(table: str, columns: tuple[str, ...]) -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT DO NOTHING"


def insert(tx: Tx, table: str, rows: Sequence[NamedTuple], keep_existing: bool = False) -> None:
    """Insert typed rows into ``table`` (in one statement on either database when no row may
    exist already); ``keep_existing``: a row whose key exists already is left as it is (else
    an error)."""
    if not rows:
        return
    if keep_existing:
        tx.many(_insert(table, rows[0]._fields), list(rows))
    else:
        tx.load(table, rows[0]._fields, list(rows))


# events, alarms and outages


def known_events(tx: Tx, sender: str, event_ids: Sequence[str]) -> set[str]:
    """Which of these event ids ``sender`` sent before."""
    found: set[str] = set()
    for among, params in tx.among("event_id", sorted(set(event_ids))):
        sql = f"SELECT event_id FROM events WHERE sender = ? AND {among}"
        rows = tx.run(sql, [sender, *params])
        found |= {row[0] for row in rows.fetchall()}
    return found


def active_alarms(tx: Tx, cells: Sequence[str]) -> dict[str, int]:
    """Active alarms of each of these cells (0 for a cell without any)."""
    counts = dict.fromkeys(cells, 0)
    for among, params in tx.among("cell_id", sorted(set(cells))):
        rows = tx.run(
            f"SELECT cell_id, COUNT(*) FROM alarms WHERE {among} AND cleared_at IS NULL"
            " GROUP BY cell_id",
            params,
        )
        counts |= {cell: int(n) for cell, n in rows.fetchall()}
    return counts


class Alarm(NamedTuple):
    outage_id: str
    cell_id: str
    sender: str
    cleared: bool


def alarms(tx: Tx, alarm_ids: Sequence[str]) -> dict[str, Alarm]:
    """The alarms raised under these ids (each one's outage, cell, sender and whether it
    cleared); an id never raised is absent."""
    found: dict[str, Alarm] = {}
    for among, params in tx.among("alarm_id", sorted(set(alarm_ids))):
        for row in tx.rows(
            "SELECT alarm_id, outage_id, cell_id, COALESCE(sender, '') AS sender, cleared_at"
            f" FROM alarms WHERE {among}",
            params,
        ):
            found[row["alarm_id"]] = Alarm(
                row["outage_id"], row["cell_id"], row["sender"], row["cleared_at"] is not None
            )
    return found


def open_outages(tx: Tx, cells: Sequence[str]) -> dict[str, str | None]:
    """The open outage of each of these cells (None for a cell without one)."""
    found: dict[str, str | None] = dict.fromkeys(cells)
    for among, params in tx.among("cell_id", sorted(set(cells))):
        rows = tx.run(
            f"SELECT cell_id, outage_id FROM outages WHERE {among} AND resolved_at IS NULL"
            " ORDER BY outage_id DESC",
            params,
        )
        found |= dict(rows.fetchall())
    return found


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


def incidents_keys(tx: Tx, incidents: Sequence[str]) -> set[str]:
    """The keys of the decisions taken for these incidents (an idempotency key is made from
    its incident: a key taken before is among its incident's; a new incident has none)."""
    found: set[str] = set()
    for among, params in tx.among("incident", sorted(set(incidents))):
        found |= {row[0] for row in tx.run(f"SELECT key FROM decisions WHERE {among}", params)}
    return found


def existing_keys(tx: Tx, keys: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for among, params in tx.among("key", sorted(set(keys))):
        found |= {row[0] for row in tx.run(f"SELECT key FROM decisions WHERE {among}", params)}
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
    for among, params in tx.among("target", targets):
        found += tx.rows(
            f"SELECT target, action, created_at, amount FROM decisions WHERE {among}"
            f" AND action IN ({kinds}) AND created_at >= ? AND status IN ({_TAKEN_MARKS})",
            (*params, since, *_TAKEN),
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
