"""Delivery of what the ledger holds as pending, by the one dispatcher that holds its lease.

Any number of dispatchers (service workers, ``replay``, ``closedloop actions dispatch``) may run
on one ledger. Each tries to take the row ``dispatcher`` of the ``leases`` table in a write
transaction; only its holder claims rows (``pending`` → ``delivering``, with its name) and
delivers them. The holder renews the lease while it works and releases it when it stops; one
that dies keeps it until it expires, and whoever takes it next puts every row still
``delivering`` back to ``pending``. A delivery is therefore made once, unless its holder died
after the receiver accepted it and before the ledger recorded it: then it is made again, with
the same ``Idempotency-Key``.

The lease must outlive one delivery: it is renewed before a delivery once half of it has run,
so keep it at least twice a delivery's worst case (timeout × (retries + 1) plus the backoffs).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from actions import audit
from actions.adapters import Adapter, Circuit, HttpAdapter, deliver_with_retries, payload_for
from actions.audit import Entry
from actions.ledger import QUEUED, Ledger, Status, Tx
from actions.policy import ActionType

LEASE = "dispatcher"
log = logging.getLogger("closedloop.actions")

_CLAIMABLE = {
    "decisions": (
        f"SELECT key FROM decisions WHERE status = '{Status.PENDING}'"
        " ORDER BY priority, created_at, key LIMIT ?"
    ),
    "updates": (  # a status update goes out once its decision was delivered
        "SELECT u.key FROM updates u JOIN decisions d ON d.key = u.decision_key"
        f" WHERE u.status = '{Status.PENDING}' AND d.status = '{Status.DISPATCHED}'"
        " ORDER BY u.created_at, u.key LIMIT ?"
    ),
}
_ORDER = {"decisions": "priority, created_at, key", "updates": "created_at, key"}


def _wall() -> datetime:
    return datetime.now(UTC)


def holder_name() -> str:
    """A name no other dispatcher has: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseHeldError(Exception):
    """Another dispatcher holds the ledger's lease."""

    def __init__(self, holder: str, until: datetime) -> None:
        super().__init__(f"another dispatcher holds the lease ({holder}, until {until:%H:%M:%S})")
        self.holder, self.until = holder, until


@dataclass(frozen=True)
class Lease:
    holder: str
    expires_at: datetime


def current_lease(ledger: Ledger) -> Lease | None:
    rows = ledger.read().rows("SELECT holder, expires_at FROM leases WHERE name = ?", (LEASE,))
    if not rows:
        return None
    return Lease(rows[0]["holder"], datetime.fromisoformat(rows[0]["expires_at"]))


def queued(ledger: Ledger) -> int:
    """Decisions and status updates committed but not delivered yet."""
    marks = ", ".join("?" for _ in QUEUED)
    counts = (
        ledger.read().value(f"SELECT COUNT(*) FROM {table} WHERE status IN ({marks})", [*QUEUED])
        for table in ("decisions", "updates")
    )
    return sum(int(n) for n in counts)


@dataclass
class Dispatcher:
    """Delivers pending decisions through their adapters and records each result, while it
    holds the ledger's lease; one instance per ledger connection."""

    ledger: Ledger
    adapters: dict[ActionType, Adapter]
    retries: int
    backoff: float
    clock: Callable[[], datetime] = _wall  # when results are recorded (the run's clock)
    lease_seconds: float = 60.0
    holder: str = field(default_factory=holder_name)
    batch: int = 100
    _until: datetime | None = None  # when the lease this dispatcher holds runs out

    def drain(
        self,
        limit: int = 100_000,
        keep: bool = False,
        progress: Callable[[Counter[str]], None] = lambda results: None,
    ) -> Counter[str]:
        """Take the lease, deliver every pending decision, most urgent first, then every
        pending status update whose decision was delivered, and release the lease (unless
        ``keep``); returns counts by result, also given to ``progress`` after each delivery.
        Raises :class:`LeaseHeldError`."""
        self.acquire()
        results: Counter[str] = Counter()
        try:
            for table in ("decisions", "updates"):
                while (left := limit - results.total()) > 0 and self._renew():
                    claimed = self._claim(table, min(self.batch, left))
                    if not claimed:
                        break
                    for row in claimed:
                        if not self._renew():  # lost: the next holder delivers the rest
                            return results
                        results[self._send(table, row)] += 1
                        progress(results)
        except BaseException:
            keep = False  # give the lease up: its next holder re-queues what this one claimed
            raise
        finally:
            if not keep:
                self.release()
        return results

    def follow(self, stop: threading.Event, wake: threading.Event, poll: float = 0.5) -> None:
        """Drain whenever woken or every ``poll`` seconds while holding (or waiting for) the
        lease, until ``stop``; then release it."""
        try:
            while not stop.is_set():
                try:
                    self.drain(keep=True)
                except LeaseHeldError:
                    pass
                except Exception:  # a database hiccup must not end delivery for good
                    log.exception("dispatch failed; trying again")
                wake.wait(poll)
                wake.clear()
        finally:
            self.release()

    def circuits(self) -> list[Circuit]:
        """The circuit breaker of each endpoint delivered to."""
        found = {
            adapter.circuit.url: adapter.circuit
            for adapter in self.adapters.values()
            if isinstance(adapter, HttpAdapter) and adapter.circuit is not None
        }
        return list(found.values())

    def acquire(self) -> None:
        """Hold the lease for ``lease_seconds`` from now, renewing it or taking it over from an
        expired holder (whose claimed rows go back to pending); raises :class:`LeaseHeldError`."""
        now = _wall()
        if self._until is not None and now < self._until - self._half:
            return
        held = current_lease(self.ledger)
        if held is not None and held.holder != self.holder and held.expires_at > now:
            self._until = None
            raise LeaseHeldError(held.holder, held.expires_at)  # seen without taking the write lock
        until = now + timedelta(seconds=self.lease_seconds)
        with self.ledger.write() as tx:
            rows = tx.rows("SELECT holder, expires_at FROM leases WHERE name = ?", (LEASE,))
            if rows and rows[0]["holder"] != self.holder:
                expires = datetime.fromisoformat(rows[0]["expires_at"])
                if expires > now:
                    self._until = None
                    raise LeaseHeldError(rows[0]["holder"], expires)
            if rows:
                tx.run(
                    "UPDATE leases SET holder = ?, expires_at = ? WHERE name = ?",
                    (self.holder, until.isoformat(), LEASE),
                )
            else:
                tx.run(
                    "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)",
                    (LEASE, self.holder, until.isoformat()),
                )
            if self._until is None or not rows or rows[0]["holder"] != self.holder:
                self._requeue(tx)  # taken, not renewed: every earlier claim is stale
        self._until = until

    def release(self) -> None:
        """Give the lease up, so another dispatcher can take it at once (if the ledger cannot
        be reached, it runs out instead)."""
        if self._until is None:
            return
        self._until = None
        try:
            with self.ledger.write() as tx:
                tx.run("DELETE FROM leases WHERE name = ? AND holder = ?", (LEASE, self.holder))
        except Exception:
            log.exception("could not release the dispatcher's lease; it expires instead")

    @property
    def _half(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds / 2)

    def _renew(self) -> bool:
        """Still the holder, for at least half a lease from now."""
        now = _wall()
        if self._until is None:
            return False
        if now < self._until - self._half:
            return True
        until = now + timedelta(seconds=self.lease_seconds)
        with self.ledger.write() as tx:
            renewed = tx.run(
                "UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ?",
                (until.isoformat(), LEASE, self.holder),
            ).rowcount
        self._until = until if renewed else None
        return bool(renewed)

    def _requeue(self, tx: Tx) -> None:
        """Rows a previous holder claimed and never recorded: pending again."""
        for table in ("decisions", "updates"):
            moved = tx.run(
                f"UPDATE {table} SET status = ?, claimed_by = NULL WHERE status = ?",
                (Status.PENDING, Status.DELIVERING),
            ).rowcount
            if moved:
                log.warning("%d %s claimed by an earlier holder: pending again", moved, table)

    def _claim(self, table: str, n: int) -> list[dict[str, Any]]:
        """The next ``n`` deliverable rows of ``table``, marked delivering by this holder."""
        with self.ledger.write() as tx:
            keys = [key for (key,) in tx.run(_CLAIMABLE[table], (n,)).fetchall()]
            if not keys:
                return []
            marks = ", ".join("?" for _ in keys)
            tx.run(
                f"UPDATE {table} SET status = ?, claimed_by = ? WHERE key IN ({marks})",
                (Status.DELIVERING, self.holder, *keys),
            )
            return tx.rows(
                f"SELECT * FROM {table} WHERE key IN ({marks}) ORDER BY {_ORDER[table]}", keys
            )

    def _send(self, table: str, row: dict[str, Any]) -> Status:
        """Deliver a claimed decision or update with retries; record the result and its audit
        row (the result only while the row is still this holder's claim)."""
        action = ActionType(row["action"])
        payload = payload_for(row) if table == "decisions" else json.loads(row["payload"])
        attempt = deliver_with_retries(
            self.adapters[action], action, row["key"], payload, self.retries, self.backoff
        )
        status = Status.DISPATCHED if attempt.delivered else Status.DEAD_LETTER
        now = self.clock()
        with self.ledger.write() as tx:
            tx.run(
                f"UPDATE {table} SET status = ?, attempts = attempts + ?, last_error = ?,"
                " dispatched_at = ?, claimed_by = NULL"
                " WHERE key = ? AND status = ? AND claimed_by = ?",
                (
                    status, attempt.attempts, attempt.error or None,
                    now.astimezone(UTC).isoformat() if attempt.delivered else None, row["key"],
                    Status.DELIVERING, self.holder,
                ),
            )  # fmt: skip
            audit.append(
                tx,
                [
                    Entry(
                        "dispatch", now,
                        {"status": status, "attempts": attempt.attempts,
                         "reference": attempt.reference, "error": attempt.error},
                        row["event_id"], row["customer_id"], row["cell_id"],
                        row["action"], row["key"],
                    )
                ],
            )  # fmt: skip
        return status
