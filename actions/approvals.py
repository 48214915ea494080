"""Human approval of actions above the policy's limits (like StackStorm inquiries): a decision
waits with a time-to-live; approving makes it pending for dispatch, rejecting or expiry ends it.
"""

from __future__ import annotations

from datetime import datetime

from actions import audit
from actions.audit import Entry
from actions.ledger import Ledger, Status


class ApprovalError(Exception):
    """The decision cannot be approved or rejected (unknown, not waiting, or expired)."""


def expire(ledger: Ledger, now: datetime) -> int:
    """Mark every approval whose time ran out as expired (never to be executed)."""
    stamp = now.isoformat()
    with ledger.write() as tx:
        late = tx.rows(
            "SELECT * FROM decisions WHERE status = 'awaiting_approval' AND expires_at < ?",
            (stamp,),
        )
        tx.run(
            "UPDATE decisions SET status = ?, reason = ?"
            " WHERE status = 'awaiting_approval' AND expires_at < ?",
            (Status.EXPIRED, "approval time ran out", stamp),
        )
        audit.append(
            tx, [_entry(row, "expired", None, "approval time ran out", now) for row in late]
        )
    return len(late)


def settle(ledger: Ledger, key: str, approve: bool, who: str, why: str, now: datetime) -> str:
    """Approve (→ pending) or reject one waiting decision, recording who and why."""
    if not who.strip():
        raise ApprovalError("say who decides (--by)")
    expire(ledger, now)
    with ledger.write() as tx:
        found = tx.rows("SELECT * FROM decisions WHERE key = ?", (key,))
        if not found:
            raise ApprovalError(f"no decision {key!r}")
        row = found[0]
        if row["status"] != Status.AWAITING_APPROVAL:
            raise ApprovalError(f"decision {key} is {row['status']}, not waiting for approval")
        status = Status.PENDING if approve else Status.REJECTED
        tx.run(
            "UPDATE decisions SET status = ?, decided_by = ?, decision_note = ? WHERE key = ?",
            (status, who, why, key),
        )
        audit.append(tx, [_entry(row, "approved" if approve else "rejected", who, why, now)])
    return status


def _entry(row: dict, verdict: str, who: str | None, why: str, now: datetime) -> Entry:
    return Entry(
        "approval", now, {"verdict": verdict, "by": who, "note": why},
        row["event_id"], row["customer_id"], row["cell_id"], row["action"], row["key"],
    )  # fmt: skip
