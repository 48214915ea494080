"""The audit trail: append-only rows, each MACing its content and the previous row's MAC with
the audit key (:mod:`actions.anchor`), so editing or deleting any row breaks the chain from
there on, a chain recomputed without the key does not verify, and the head checkpoint kept
apart from the database shows rows deleted from its end (``closedloop audit verify``). Every
decision's fields — amounts, value at risk, impact, target — are in its audit row, and verify
checks the decisions table against them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from actions.anchor import AnchorError, Head
from actions.ledger import Ledger, Tx, dumps

GENESIS = "0" * 64
COLUMNS = ("seq", "at", "kind", "event_id", "customer_id", "cell_id", "action", "key", "payload")
DECISION_FIELDS = (
    "action", "target", "priority", "probability", "value_at_risk", "amount", "impact", "params",
    "runbook", "team", "cost", "expected_gain", "uplift_version",
)  # fmt: skip
"""A decision's fields as its audit row's ``decision`` records them (``params`` as a mapping)."""
DECISION_LINKS = {"event_id": "event_id", "incident": "incident", "rule_id": "rule",
                  "policy_version": "policy_version"}  # fmt: skip
"""Decisions table column → key of the audit row's payload."""


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


def _head_holds(tx: Tx, last_seq: int) -> bool:
    """Whether the latest head checkpointed (the file's or the witness's) is one this trail
    reaches (its row there has its MAC): only then may a writer move it on, so that a gap or a
    forgery stays visible to verify."""
    try:
        head = tx.anchor.latest()
    except AnchorError:
        return False
    if head is None:
        return True
    if head.seq > last_seq:
        return False
    return tx.value("SELECT hash FROM audit WHERE seq = ?", (head.seq,)) == head.mac


def append(tx: Tx, entries: list[Entry]) -> None:
    """Chain ``entries`` after the last row; call inside the ledger's write transaction (which
    checkpoints the new head once it commits)."""
    if not entries:
        return
    last = tx.rows("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
    seq, prev = (last[0]["seq"], last[0]["hash"]) if last else (0, GENESIS)
    advance = _head_holds(tx, seq)
    rows = []
    for entry in entries:
        seq += 1
        values = (
            seq, entry.at.isoformat(), entry.kind, entry.event_id, entry.customer_id,
            entry.cell_id, entry.action, entry.key, dumps(entry.payload),
        )  # fmt: skip
        digest = tx.anchor.mac(prev, values)
        rows.append((*values, prev, digest))
        prev = digest
    tx.load("audit", (*COLUMNS, "prev_hash", "hash"), rows)
    if advance:
        tx.head = Head(seq, prev)


@dataclass(frozen=True)
class Verdict:
    rows: int  # rows of the chain that hold, from the first
    broken_at: int | None = None  # seq of the first row that does not hold, or is missing
    problems: list[str] = field(default_factory=list)  # what is wrong, first found first

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def problem(self) -> str:
        return "; ".join(self.problems)


def verify(ledger: Ledger, batch: int = 10_000) -> Verdict:
    """Walk the chain from the first row (each row's MAC and link), check it reaches the head
    checkpoint, then check every decision against its audit row; report what does not hold."""
    chain = _walk(ledger, batch)
    if not chain.intact:
        return chain
    problems = _against_head(ledger, chain.rows)
    if problems:
        missing = chain.rows + 1 if any(p.startswith("rows ") for p in problems) else None
        return Verdict(chain.rows, missing, problems)
    return Verdict(chain.rows, None, _decisions(ledger, batch))


def verify_shown(
    ledger: Ledger, trail: list[dict[str, Any]], decisions: list[dict[str, Any]]
) -> Verdict:
    """What a page shows, checked at the cost of what it shows (``verify`` walks the whole
    chain): each trail row and each shown decision's audit row against its MAC and its link to
    the row before it as stored, each decision against its audit row, and the head checkpoint
    against the trail's end. ``rows`` counts the audit rows checked."""
    reader = ledger.read()
    shown = {row["seq"]: row for row in trail}
    for chunk in _chunked([d["key"] for d in decisions]):
        marks = ", ".join("?" for _ in chunk)
        found = reader.rows(
            f"SELECT * FROM audit WHERE kind = 'decision' AND key IN ({marks})", chunk
        )
        shown |= {row["seq"]: row for row in found}
    before: dict[int, str] = {0: GENESIS}
    for chunk in _chunked(sorted({seq - 1 for seq in shown} - {0})):
        marks = ", ".join("?" for _ in chunk)
        for row in reader.rows(f"SELECT seq, hash FROM audit WHERE seq IN ({marks})", chunk):
            before[row["seq"]] = row["hash"]
    for seq, row in sorted(shown.items()):
        if row["prev_hash"] != before.get(seq - 1):
            return Verdict(0, seq, [f"row {seq}: link to the previous row is broken"])
        if ledger.anchor.mac(row["prev_hash"], tuple(row[c] for c in COLUMNS)) != row["hash"]:
            return Verdict(0, seq, [f"row {seq}: content does not match its MAC"])
    last = reader.value("SELECT MAX(seq) FROM audit") or 0
    problems = _against_head(ledger, int(last))
    if problems:
        return Verdict(0, None, problems)
    audited = {row["key"]: row for row in shown.values() if row["kind"] == "decision"}
    differ = [p for d in decisions if (p := _differs(d, audited.get(d["key"])))]
    return Verdict(len(shown), None, differ[:10])


def _chunked(values: list, size: int = 500):
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _walk(ledger: Ledger, batch: int) -> Verdict:
    anchor = ledger.anchor
    prev, expected_seq, count = GENESIS, 1, 0
    cursor = ledger.read()
    while True:
        rows = cursor.rows(
            "SELECT * FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?", (expected_seq, batch)
        )
        if not rows:
            return Verdict(count)
        for row in rows:
            if row["seq"] != expected_seq:
                return Verdict(count, expected_seq, [f"row {expected_seq} is missing"])
            if row["prev_hash"] != prev:
                return Verdict(count, row["seq"], [f"row {row['seq']}: link to the previous row"
                                                   " is broken"])  # fmt: skip
            if anchor.mac(prev, tuple(row[c] for c in COLUMNS)) != row["hash"]:
                return Verdict(count, row["seq"], [
                    f"row {row['seq']}: content does not match its MAC (edited, or the chain "
                    "recomputed without the audit key)"])  # fmt: skip
            prev, expected_seq, count = row["hash"], expected_seq + 1, count + 1


def _against_head(ledger: Ledger, last: int) -> list[str]:
    """The trail (``last`` rows that hold) against the latest head sealed: the checkpoint file's,
    or the witness log's when that is later (an older checkpoint file put back)."""
    anchor = ledger.anchor
    where = f"head checkpoint ({anchor.head_path})"
    try:
        head, seen = anchor.head(), anchor.witnessed()
    except AnchorError as error:
        return [str(error)]
    put_back = []  # said only if the trail fails the witness: a file behind it is a race's lag
    if seen is not None and (head is None or seen.seq > head.seq):
        named = "is missing" if head is None else f"names row {head.seq}"
        put_back.append(f"the {where} {named}, but the witness saw row {seen.seq} sealed: an "
                        "older checkpoint was put back")  # fmt: skip
        head, where = seen, f"witness ({anchor.witness_path})"
    if head is None:
        shown = f"no head checkpoint at {anchor.head_path}: the end of the trail cannot be shown"
        return [shown] if last else []
    if head.seq > last:
        return [*put_back, f"rows {last + 1}–{head.seq} are missing: the trail ends at row "
                f"{last}, its {where} says {head.seq}"]  # fmt: skip
    mac = ledger.read().value("SELECT hash FROM audit WHERE seq = ?", (head.seq,))
    if mac != head.mac:
        return [*put_back, f"row {head.seq} is not the one the {where} sealed: the trail was "
                "rewritten from there"]  # fmt: skip
    return []


def _decisions(ledger: Ledger, batch: int) -> list[str]:
    """Each decisions row against its audit row: the first difference of each, up to 10."""
    problems: list[str] = []
    reader = ledger.read()
    after = ""
    while len(problems) < 10:
        rows = reader.rows(
            "SELECT * FROM decisions WHERE key > ? ORDER BY key LIMIT ?", (after, min(batch, 500))
        )
        if not rows:
            return problems
        after = rows[-1]["key"]
        marks = ", ".join("?" for _ in rows)
        audited = {
            r["key"]: r
            for r in reader.rows(
                f"SELECT * FROM audit WHERE kind = 'decision' AND key IN ({marks})",
                [r["key"] for r in rows],
            )
        }
        for row in rows:
            problem = _differs(row, audited.get(row["key"]))
            if problem:
                problems.append(problem)
    return problems


def _differs(row: dict[str, Any], audited: dict[str, Any] | None) -> str | None:
    key = row["key"]
    if audited is None:
        return f"decision {key} has no audit row"
    payload = json.loads(audited["payload"])
    recorded = {**payload["decision"], **{c: payload[p] for c, p in DECISION_LINKS.items()},
                "customer_id": audited["customer_id"], "cell_id": audited["cell_id"]}  # fmt: skip
    stored = {**row, "params": json.loads(row["params"])}
    for name in (*DECISION_FIELDS, *DECISION_LINKS, "customer_id", "cell_id"):
        if stored[name] != recorded.get(name):  # a field newer than the row: None
            return (f"decision {key}: {name} is {stored[name]!r} in the decisions table, "
                    f"{recorded[name]!r} in its audit row {audited['seq']}")  # fmt: skip
    return None


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
