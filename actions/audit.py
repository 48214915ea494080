"""The audit trail: append-only rows, each hashing its content and the previous row's hash, so
editing or deleting any row breaks the chain from there on (``closedloop audit verify``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from actions.ledger import Ledger, Tx, dumps

GENESIS = "0" * 64
COLUMNS = ("seq", "at", "kind", "event_id", "customer_id", "cell_id", "action", "key", "payload")


@dataclass(frozen=True)
class Entry:
    """One fact for the trail: what happened (kind) and the links that find it again."""

    kind: str  # event, decision, approval, dispatch, resolution, retry
    at: datetime
    payload: dict[str, Any]
    event_id: str | None = None
    customer_id: str | None = None
    cell_id: str | None = None
    action: str | None = None
    key: str | None = None


def row_hash(prev_hash: str, values: tuple) -> str:
    """SHA-256 of the previous hash and this row's ``COLUMNS`` values (``repr`` tells None
    from "" and 1 from "1")."""
    return hashlib.sha256(f"{prev_hash}{values!r}".encode()).hexdigest()


def append(tx: Tx, entries: list[Entry]) -> None:
    """Chain ``entries`` after the last row; call inside the ledger's write transaction."""
    if not entries:
        return
    last = tx.rows("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
    seq, prev = (last[0]["seq"], last[0]["hash"]) if last else (0, GENESIS)
    rows = []
    for entry in entries:
        seq += 1
        values = (
            seq, entry.at.isoformat(), entry.kind, entry.event_id, entry.customer_id,
            entry.cell_id, entry.action, entry.key, dumps(entry.payload),
        )  # fmt: skip
        digest = row_hash(prev, values)
        rows.append((*values, prev, digest))
        prev = digest
    tx.many(
        "INSERT INTO audit (seq, at, kind, event_id, customer_id, cell_id, action, key, payload,"
        " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


@dataclass(frozen=True)
class Verdict:
    rows: int
    broken_at: int | None  # seq of the first row whose hash or link does not hold
    problem: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify(ledger: Ledger, batch: int = 10_000) -> Verdict:
    """Walk the chain from the first row; report the first row that does not hold."""
    prev, expected_seq, count = GENESIS, 1, 0
    cursor = ledger.read()
    while True:
        rows = cursor.rows(
            "SELECT * FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?", (expected_seq, batch)
        )
        if not rows:
            return Verdict(count, None)
        for row in rows:
            if row["seq"] != expected_seq:
                return Verdict(count, expected_seq, f"row {expected_seq} is missing")
            if row["prev_hash"] != prev:
                return Verdict(count, row["seq"], "link to the previous row is broken")
            if row_hash(prev, tuple(row[c] for c in COLUMNS)) != row["hash"]:
                return Verdict(count, row["seq"], "content does not match its hash")
            prev, expected_seq, count = row["hash"], expected_seq + 1, count + 1


def query(
    ledger: Ledger,
    customer: str | None = None,
    cell: str | None = None,
    action: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Trail rows about a customer, a cell and/or an action (a key or an action type)."""
    clauses, params = [], []
    if customer:
        clauses.append("customer_id = ?")
        params.append(customer)
    if cell:
        clauses.append("cell_id = ?")
        params.append(cell)
    if action:
        clauses.append("(key = ? OR action = ?)")
        params += [action, action]
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return ledger.read().rows(
        f"SELECT * FROM audit {where} ORDER BY seq LIMIT {int(limit)}", params
    )
