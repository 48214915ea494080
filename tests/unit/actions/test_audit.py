"""The audit trail against what an attacker with write access to the ledger's database (but not
the audit key) would do: delete the last rows, edit a row and recompute the chain, inflate a
decision's amount, forge or drop the head checkpoint. Each fails ``audit verify`` saying what
is wrong."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from actionkit import AUDIT_KEY, T0, FixedScores, customer, event

from actions import audit
from actions.anchor import Anchor, AnchorError
from actions.ledger import Ledger

PEOPLE = [customer(1, sla_tier="gold", mrr=750.0), customer(2), customer(3, sla_tier="silver")]
CHURN = {"cus_0000001": 0.8, "cus_0000003": 0.9}


@pytest.fixture
def ledger(make_processor) -> Ledger:
    processor, dispatcher, _ = make_processor(PEOPLE, FixedScores(CHURN))
    processor.process(event(alarm_id="a"))
    processor.process(event(alarm_id="b", cell="cell_00002"))
    dispatcher.drain()
    assert audit.verify(processor.ledger).intact
    return processor.ledger


def rows(ledger: Ledger) -> list[dict]:
    return ledger.read().rows("SELECT * FROM audit ORDER BY seq")


def rewrite_from(ledger: Ledger, seq: int, mac, edit=lambda row: row) -> None:
    """Recompute the chain from ``seq`` on with ``mac(prev, values)``, after ``edit``."""
    trail = rows(ledger)
    prev = trail[seq - 2]["hash"] if seq > 1 else audit.GENESIS
    with ledger.write() as tx:
        for row in trail[seq - 1 :]:
            row = edit(row) if row["seq"] == seq else row
            digest = mac(prev, tuple(row[c] for c in audit.COLUMNS))
            tx.run(
                "UPDATE audit SET payload = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (row["payload"], prev, digest, row["seq"]),
            )
            prev = digest


def test_deleting_the_last_rows_fails_verify(ledger):
    total = len(rows(ledger))
    with ledger.write() as tx:
        tx.run("DELETE FROM audit WHERE seq > ?", (total - 3,))
    verdict = audit.verify(ledger)
    assert not verdict.intact and verdict.broken_at == total - 2
    assert f"rows {total - 2}–{total} are missing" in verdict.problem
    assert f"says {total}" in verdict.problem
    # the next write does not paper over it: the checkpoint stays where the trail was cut
    with ledger.write() as tx:
        audit.append(tx, [audit.Entry("retry", T0, {"x": 1})])
    assert "are missing" in audit.verify(ledger).problem


def sha256_chain(prev: str, values: tuple) -> str:
    """The chain's hash as it was before anchoring: anyone can recompute it."""
    return hashlib.sha256(f"{prev}{values!r}".encode()).hexdigest()


@pytest.mark.parametrize(
    "mac",
    [sha256_chain, Anchor.of("an-attackers-own-key-000", Path("unused")).mac],
    ids=["plain-sha256", "another-key"],
)
def test_editing_a_row_and_recomputing_the_chain_fails_verify(ledger, mac):
    victim = next(r for r in rows(ledger) if r["kind"] == "decision")

    def edit(row):
        payload = json.loads(row["payload"])
        payload["status"] = "suppressed"
        return {**row, "payload": json.dumps(payload)}

    rewrite_from(ledger, victim["seq"], mac, edit)
    verdict = audit.verify(ledger)
    assert verdict.broken_at == victim["seq"]
    assert "content does not match its MAC" in verdict.problem


def test_recomputing_with_the_key_but_not_the_head_is_seen(ledger):
    """Even with the key, a rewritten last row no longer matches the sealed checkpoint."""
    last = rows(ledger)[-1]
    key = Anchor.of(AUDIT_KEY, ledger.anchor.head_path)
    rewrite_from(ledger, last["seq"], key.mac, lambda r: {**r, "payload": '{"x":1}'})
    assert "not the one the head checkpoint" in audit.verify(ledger).problem


def test_multiplying_a_credit_by_100_fails_verify(ledger):
    credit = ledger.decisions(action="bill_credit")[0]
    with ledger.write() as tx:
        tx.run("UPDATE decisions SET amount = amount * 100 WHERE key = ?", (credit["key"],))
    verdict = audit.verify(ledger)
    assert not verdict.intact and verdict.broken_at is None  # the chain holds, the table not
    assert verdict.problem.startswith(
        f"decision {credit['key']}: amount is {credit['amount'] * 100!r} in the decisions "
        f"table, {credit['amount']!r} in its audit row"
    )
    with ledger.write() as tx:
        tx.run("UPDATE decisions SET amount = ?, value_at_risk = 1 WHERE key = ?",
               (credit["amount"], credit["key"]))  # fmt: skip
    assert "value_at_risk is 1.0" in audit.verify(ledger).problem
    with ledger.write() as tx:
        tx.run("UPDATE decisions SET value_at_risk = ?, target = 'cus_0000002' WHERE key = ?",
               (credit["value_at_risk"], credit["key"]))  # fmt: skip
    assert "target is 'cus_0000002'" in audit.verify(ledger).problem


def test_every_decision_carries_its_cost_and_a_changed_cost_fails_verify(ledger):
    decisions = ledger.decisions(limit=1000)
    assert all(d["cost"] is not None for d in decisions)
    credit = next(d for d in decisions if d["action"] == "bill_credit")
    assert credit["cost"] == pytest.approx(credit["amount"] + 0.5)  # the amount and a contact
    with ledger.write() as tx:
        tx.run("UPDATE decisions SET cost = 0 WHERE key = ?", (credit["key"],))
    assert f"decision {credit['key']}: cost is 0.0" in audit.verify(ledger).problem


def test_a_decision_without_its_audit_row_fails_verify(ledger):
    key = ledger.decisions(limit=1)[0]["key"]
    with ledger.write() as tx:
        tx.run("UPDATE decisions SET key = 'forged' WHERE key = ?", (key,))
    assert "decision forged has no audit row" in audit.verify(ledger).problem


def test_a_missing_or_forged_head_checkpoint_fails_verify(ledger):
    head, witness = ledger.anchor.head_path, ledger.anchor.witness_path
    saved = head.read_text()
    head.unlink()
    assert audit.verify(ledger).intact  # the witness still shows where the trail ends
    witness.rename(witness.with_suffix(".away"))
    assert "no head checkpoint at" in audit.verify(ledger).problem
    witness.with_suffix(".away").rename(witness)
    forged = json.loads(saved) | {"seq": 1}
    head.write_text(json.dumps(forged))
    assert "is not sealed by the audit key" in audit.verify(ledger).problem
    head.write_text(saved)
    assert audit.verify(ledger).intact


def add_rows(ledger: Ledger, n: int, by: str = "ana") -> None:
    """``n`` more audit rows, committed (the checkpoint and the witness follow)."""
    with ledger.write() as tx:
        audit.append(tx, [audit.Entry("retry", T0, {"by": by, "n": i}) for i in range(n)])


def test_an_older_checkpoint_put_back_after_cutting_the_rows_fails_verify(ledger):
    """The attacker saved the checkpoint file (a backup), rows were added, then cut the trail
    back to that point and put the old file back: the witness log still names the later row,
    and keeps doing so after new rows are written."""
    head = ledger.anchor.head_path
    saved, before = head.read_text(), len(rows(ledger))
    add_rows(ledger, 3)
    assert audit.verify(ledger).intact and ledger.anchor.witnessed().seq == before + 3
    with ledger.write() as tx:
        tx.run("DELETE FROM audit WHERE seq > ?", (before,))
    head.write_text(saved)
    verdict = audit.verify(ledger)
    assert verdict.broken_at == before + 1
    assert f"names row {before}, but the witness saw row {before + 3} sealed: an older " \
        "checkpoint was put back" in verdict.problem  # fmt: skip
    assert f"rows {before + 1}–{before + 3} are missing" in verdict.problem
    add_rows(ledger, 5, "bob")  # the trail goes on past the cut: the witness is not moved on
    assert ledger.anchor.witnessed().seq == before + 3
    assert f"row {before + 3} is not the one the witness" in audit.verify(ledger).problem


def test_a_checkpoint_file_behind_the_witness_is_a_race_not_a_cut(ledger):
    """Two writers checkpointing at once may leave the file one head behind the witness: the
    trail still reaches the witness's head, so nothing is reported."""
    head = ledger.anchor.head_path
    saved = head.read_text()
    add_rows(ledger, 2)
    head.write_text(saved)
    assert audit.verify(ledger).intact
    add_rows(ledger, 1)  # writers go on: the trail reaches the later head
    assert ledger.anchor.head().seq == ledger.anchor.witnessed().seq == len(rows(ledger))


def test_a_forged_witness_line_fails_verify(ledger):
    witness = ledger.anchor.witness_path
    with witness.open("a") as log:
        log.write(json.dumps({"seq": 10_000, "mac": "0" * 64, "seal": "0" * 64}) + "\n")
    assert f"audit witness {witness} is not sealed by the audit key" in audit.verify(ledger).problem


def test_the_chain_does_not_verify_under_another_key(ledger):
    other = Ledger(ledger.connection, False, Anchor.of("x" * 16, ledger.anchor.head_path), 1.0)
    assert "content does not match its MAC" in audit.verify(other).problem


def test_a_generated_key_is_private_and_reused(tmp_path):
    key_file = tmp_path / "secrets" / "audit.key"
    first = Anchor.generated(key_file, tmp_path / "head.json")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert Anchor.generated(key_file, tmp_path / "head.json").key == first.key
    assert len(first.key) == 64  # 256 random bits, hex
    key_file.chmod(0o644)
    with pytest.raises(AnchorError, match="may be read by others"):
        Anchor.generated(key_file, tmp_path / "head.json")
    with pytest.raises(AnchorError, match="at least 16 characters"):
        Anchor.of("short", tmp_path / "head.json")


def test_the_head_file_and_the_witness_are_private(ledger):
    assert stat.S_IMODE(ledger.anchor.head_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ledger.anchor.witness_path.stat().st_mode) == 0o600
    assert ledger.anchor.head().seq == len(rows(ledger))


def test_a_page_checks_the_rows_it_shows_at_their_cost(ledger):
    trail = audit.query(ledger, cell="cell_00002")
    decisions = [d for d in ledger.decisions(limit=1_000) if d["cell_id"] == "cell_00002"]
    verdict = audit.verify_shown(ledger, trail, decisions)
    assert verdict.intact and verdict.rows == len(trail) > len(decisions) > 0

    first = decisions[0]
    with ledger.write() as tx:
        tx.run("UPDATE decisions SET value_at_risk = 1 WHERE key = ?", (first["key"],))
    tampered = [{**first, "value_at_risk": 1.0}, *decisions[1:]]
    differs = audit.verify_shown(ledger, [], tampered)
    assert f"decision {first['key']}: value_at_risk is 1.0" in differs.problem

    victim = trail[1]
    with ledger.write() as tx:
        tx.run("UPDATE audit SET payload = '{}' WHERE seq = ?", (victim["seq"],))
    edited = audit.verify_shown(ledger, audit.query(ledger, cell="cell_00002"), [])
    assert edited.broken_at == victim["seq"] and "does not match its MAC" in edited.problem
    with ledger.write() as tx:
        tx.run("DELETE FROM audit WHERE seq = ?", (victim["seq"] - 1,))
    cut = audit.verify_shown(ledger, [victim], [])
    assert cut.broken_at == victim["seq"] and "link to the previous row is broken" in cut.problem


def test_two_threads_of_one_process_checkpoint_at_once_without_a_lost_file(tmp_path):
    """A service worker commits events on one thread while its dispatcher commits deliveries
    on another: their checkpoints never move each other's partial file away."""
    import threading

    from actions.anchor import Head

    anchor = Anchor.of(AUDIT_KEY, tmp_path / "audit-head.json")
    errors: list[BaseException] = []

    def write(start: int) -> None:
        try:
            for seq in range(start, 4_000, 2):
                anchor.checkpoint(Head(seq, f"{seq:064x}"))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert anchor.head() is not None
