"""Human verdicts on actions. Approval of actions above the policy's limits (like StackStorm
inquiries): a decision waits with a time-to-live; approving makes it pending for dispatch,
rejecting or expiry ends it (an expired approval is recorded as expired, by nobody, and never
executed). Retry: dead letters (decisions or status updates) go back to pending, to be
dispatched again.

Each verdict names its principal: an operator settles up to the policy's ``exception_above``,
an approver above it, and whoever sent the event or last changed the action may not approve it
(four eyes).
"""

from __future__ import annotations

from datetime import datetime

from actions import audit
from actions.audit import Entry
from actions.ledger import Ledger, Status
from closedloop.access import AccessDeniedError, Permission, Principal, four_eyes, settle_permission


class ApprovalError(Exception):
    """The verdict cannot apply: no such action, not in a state that allows it, or the
    principal may not give it."""


def _allowed(principal: Principal, row: dict, exception_above: float | None) -> None:
    needed = settle_permission(row["impact"] or 0.0, exception_above)
    try:
        principal.require(needed)
    except AccessDeniedError as error:
        if exception_above is None or needed is Permission.SETTLE:
            raise ApprovalError(str(error)) from None
        raise ApprovalError(
            f"{error}: {row['key']} has impact {row['impact']:,.2f}, above the policy's "
            f"exception limit {exception_above:,.2f}"
        ) from None


def expire(ledger: Ledger, now: datetime) -> int:
    """Mark every approval whose time ran out as expired (never to be executed)."""
    stamp = now.isoformat()
    with ledger.write() as tx:
        waiting = (Status.AWAITING_APPROVAL, stamp)
        late = tx.rows("SELECT * FROM decisions WHERE status = ? AND expires_at < ?", waiting)
        tx.run(
            "UPDATE decisions SET status = ?, reason = ? WHERE status = ? AND expires_at < ?",
            (Status.EXPIRED, "approval time ran out", *waiting),
        )
        audit.append(
            tx, [_entry(row, "expired", None, "approval time ran out", now) for row in late]
        )
    return len(late)


def settle(
    ledger: Ledger, key: str, approve: bool, principal: Principal, why: str, now: datetime,
    exception_above: float | None = None,
) -> str:  # fmt: skip
    """Approve (→ pending) or reject one waiting decision, recording who and why."""
    who = principal.label
    expire(ledger, now)
    with ledger.write() as tx:
        found = tx.rows("SELECT * FROM decisions WHERE key = ?", (key,))
        if not found:
            raise ApprovalError(f"no decision {key!r}")
        row = found[0]
        if row["status"] != Status.AWAITING_APPROVAL:
            raise ApprovalError(f"decision {key} is {row['status']}, not waiting for approval")
        _allowed(principal, row, exception_above)
        if approve:
            try:
                four_eyes(principal, row["requested_by"], row["decided_by"])
            except AccessDeniedError as error:
                raise ApprovalError(str(error)) from None
        status = Status.PENDING if approve else Status.REJECTED
        tx.run(
            "UPDATE decisions SET status = ?, decided_by = ?, decision_note = ? WHERE key = ?",
            (status, who, why, key),
        )
        audit.append(tx, [_entry(row, "approved" if approve else "rejected", who, why, now)])
    return status


def retry(
    ledger: Ledger, key: str | None, principal: Principal, why: str, now: datetime
) -> list[str]:
    """Move one dead letter (``key``), or every one (None), back to pending, recording who and
    why; returns the keys moved."""
    try:
        principal.require(Permission.SETTLE)
    except AccessDeniedError as error:
        raise ApprovalError(str(error)) from None
    who = principal.label
    which = "status = ?" + (" AND key = ?" if key is not None else "")
    params = (Status.DEAD_LETTER,) + ((key,) if key is not None else ())
    with ledger.write() as tx:
        dead = []
        for table in ("decisions", "updates"):
            dead += tx.rows(f"SELECT * FROM {table} WHERE {which}", params)
            tx.run(f"UPDATE {table} SET status = ? WHERE {which}", (Status.PENDING, *params))
        if key is not None and not dead:
            raise ApprovalError(f"{key!r} is not a dead letter")
        audit.append(
            tx,
            [
                Entry(
                    "retry", now, {"by": who, "note": why, "attempts": row["attempts"],
                    "last_error": row["last_error"]},
                    row["event_id"], row["customer_id"], row["cell_id"], row["action"], row["key"],
                )
                for row in dead
            ],
        )  # fmt: skip
    return [row["key"] for row in dead]


def _entry(row: dict, verdict: str, who: str | None, why: str, now: datetime) -> Entry:
    return Entry(
        "approval", now, {"verdict": verdict, "by": who, "note": why},
        row["event_id"], row["customer_id"], row["cell_id"], row["action"], row["key"],
    )  # fmt: skip
