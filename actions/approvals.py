"""Human verdicts on actions. Approval of actions above the policy's limits (like StackStorm
inquiries): a decision waits with a time-to-live; approving makes it pending for dispatch,
rejecting or expiry ends it. Retry: dead letters (decisions or status updates) go back to
pending, to be dispatched again.
"""

from __future__ import annotations

from datetime import datetime

from actions import audit
from actions.audit import Entry
from actions.ledger import Ledger, Status


class ApprovalError(Exception):
    """The verdict cannot apply: no such action, or not in a state that allows it."""


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


def retry(ledger: Ledger, key: str | None, who: str, why: str, now: datetime) -> list[str]:
    """Move one dead letter (``key``), or every one (None), back to pending, recording who and
    why; returns the keys moved."""
    if not who.strip():
        raise ApprovalError("say who retries (--by)")
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
