"""Which action policy is in force, as the ledger records it: each policy put in force gets the
next number, its content digest and who put it in force, in the ``policies`` table and as a
``policy`` row of the hash-chained audit trail.

A ledger's first policy is recorded by whoever opens it first; changing it takes a principal
allowed to (the admin): ``closedloop serve``, ``replay``, ``consume`` and ``monitor``'s owner
tickets put a changed policy in force as their principal, a service worker only runs the policy
in force. A version label names
one content only, so the ``policy_version`` every decision carries names exactly what decided it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from actions import audit
from actions.audit import Entry
from actions.ledger import Ledger, Tx
from actions.policy import Policy, PolicyError, canonical, policy_digest
from closedloop.access import AccessDeniedError, Permission, Principal


@dataclass(frozen=True)
class InForce:
    """A policy as recorded when it was put in force."""

    number: int
    version: str
    digest: str
    in_force_at: str
    put_by: str | None

    def describe(self) -> str:
        return f"policy #{self.number} {self.version!r} (sha256 {self.digest[:12]})"


def _row(row: dict[str, Any]) -> InForce:
    return InForce(row["number"], row["version"], row["digest"], row["in_force_at"], row["put_by"])


def _latest(tx: Tx) -> InForce | None:
    rows = tx.rows(
        "SELECT number, version, digest, in_force_at, put_by FROM policies "
        "ORDER BY number DESC LIMIT 1"
    )
    return _row(rows[0]) if rows else None


def in_force(ledger: Ledger) -> InForce | None:
    """The policy in force, None before any was recorded."""
    return _latest(ledger.read())


def policy_in_force(ledger: Ledger) -> Policy | None:
    """The content of the policy in force (what approvals' limits come from, whatever the
    approver's own settings name), None before any was recorded."""
    body = ledger.read().value("SELECT body FROM policies ORDER BY number DESC LIMIT 1")
    return None if body is None else Policy.model_validate_json(body)


def history(ledger: Ledger) -> list[InForce]:
    """Every policy put in force, first first."""
    rows = ledger.read().rows(
        "SELECT number, version, digest, in_force_at, put_by FROM policies ORDER BY number"
    )
    return [_row(row) for row in rows]


def put_in_force(
    ledger: Ledger,
    policy: Policy,
    at: datetime,
    who: Callable[[], Principal] | None = None,
) -> InForce:
    """The record of ``policy``: the one in force when it has the same content, else a new one
    (audited) if this is the ledger's first policy or ``who`` (asked only then) may change it.
    Raises :class:`AccessDeniedError` for a change nobody allowed may make, and
    :class:`PolicyError` for a version label already used by another content."""
    digest = policy_digest(policy)
    with ledger.write() as tx:
        current = _latest(tx)
        if current is not None and current.digest == digest:
            return current
        used = tx.value(
            "SELECT number FROM policies WHERE version = ? AND digest <> ?",
            (policy.version, digest),
        )
        if used is not None:
            raise PolicyError("policy", [
                f"version: {policy.version!r} was policy #{used} with another content; give "
                "the changed policy a new version"])  # fmt: skip
        by: Principal | None = None
        if current is not None:
            if who is None:
                raise AccessDeniedError(
                    f"policy {policy.version!r} (sha256 {digest[:12]}) is not the one in force, "
                    f"{current.describe()}: an admin puts it in force ('closedloop serve', "
                    "'replay' or 'consume' with an admin's key)"
                )
            by = who().require(Permission.SET_POLICY)
        record = InForce(
            (current.number if current else 0) + 1, policy.version, digest, at.isoformat(),
            None if by is None else by.label,
        )  # fmt: skip
        tx.run(
            "INSERT INTO policies (number, version, digest, body, in_force_at, put_by) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (record.number, record.version, digest, canonical(policy), record.in_force_at,
             record.put_by),
        )  # fmt: skip
        previous = None
        if current is not None:
            previous = {"number": current.number, "version": current.version,
                        "digest": current.digest}  # fmt: skip
        payload = {"number": record.number, "version": record.version, "digest": digest,
                   "previous": previous, "by": record.put_by}  # fmt: skip
        audit.append(tx, [Entry("policy", at, payload, key=f"policy:{record.number}")])
    return record
