"""Two writers on one SQLite ledger: the one that waits gives up after its busy timeout with
:class:`LedgerBusyError` and nothing written; a patient ``take`` tries again and commits, in
transactions short enough for the other writer to get in between."""

from __future__ import annotations

import threading
import time

import pytest
from actionkit import FixedScores, anchor, customer, event

from actions.intake import Record
from actions.ledger import Ledger, LedgerBusyError

PEOPLE = [customer(1), customer(2)]


def test_a_writer_waits_its_busy_timeout_then_is_told_the_ledger_is_busy(tmp_path):
    holder = Ledger.sqlite(tmp_path / "l.db", anchor(tmp_path))
    waiter = Ledger.sqlite(tmp_path / "l.db", anchor(tmp_path), 0.3)
    try:
        with holder.write():
            began = time.monotonic()
            with pytest.raises(LedgerBusyError, match=r"more than 0\.3 s"), waiter.write() as tx:
                tx.run("DELETE FROM leases")
            assert 0.25 <= time.monotonic() - began < 3
        with waiter.write() as tx:  # free again: the same connection writes
            tx.run("DELETE FROM leases")
    finally:
        holder.close()
        waiter.close()


def test_a_patient_take_retries_a_busy_ledger_and_commits_each_event_once(make_processor, tmp_path):
    processor, _, _ = make_processor(PEOPLE, FixedScores({}))
    processor.ledger.busy_seconds = 0.1
    processor.ledger.connection.execute("PRAGMA busy_timeout=100")
    other = Ledger.sqlite(tmp_path / "ledger.db", anchor(tmp_path))
    records = [
        Record(event(cell="cell_00001", minutes=n, alarm_id=f"a{n}", event_id=f"e{n}")
               .model_dump(mode="json"), "test", n)
        for n in range(1, 4)
    ]  # fmt: skip
    released = threading.Event()

    def hold_then_release() -> None:
        with other.write():
            time.sleep(0.5)  # longer than the processor waits: its first tries fail
        released.set()

    holding = threading.Thread(target=hold_then_release)
    holding.start()
    time.sleep(0.05)
    with pytest.raises(LedgerBusyError):
        processor.take(records)  # not patient: told at once
    outcomes = processor.take(records, hold=0.0, patience=5)
    holding.join()
    other.close()
    assert released.is_set()
    assert len(outcomes) == 3 and "duplicate" not in {o.outcome for o in outcomes}
    assert processor.ledger.read().value("SELECT COUNT(*) FROM events") == 3
    again = processor.take(records, hold=0.0)
    assert [o.outcome for o in again] == ["duplicate"] * 3
