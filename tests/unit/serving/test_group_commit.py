"""Group commit: requests waiting for the worker's commit are committed together, one
transaction per sender, and each is answered with its own records' outcomes."""

from __future__ import annotations

import threading
import time

import pytest

from serving.group_commit import GroupCommit, NotTakenError


class Ledger:
    """A take that records each transaction; the first one holds until released."""

    def __init__(self) -> None:
        self.transactions: list[tuple[str, list[str]]] = []
        self.first = threading.Event()
        self.release = threading.Event()

    def take(self, records: list[str], sender: str, by: str | None) -> list[str]:
        if not self.first.is_set():
            self.first.set()
            self.release.wait(10)
        if "bad" in records:
            raise ValueError("the ledger refused it")
        self.transactions.append((sender, list(records)))
        return [f"{sender}:{r}" for r in records]


def submit_in_thread(commits, answers, records, sender, patience=10.0) -> threading.Thread:
    def run() -> None:
        try:
            answers[records[0]] = commits.submit(records, sender, None, patience)
        except Exception as error:
            answers[records[0]] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_for_waiting(commits: GroupCommit, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(commits._waiting) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(commits._waiting) == count


def test_requests_waiting_for_a_commit_are_committed_together_each_answered_its_own():
    ledger = Ledger()
    commits = GroupCommit(ledger.take)
    answers: dict[str, object] = {}
    threads = [submit_in_thread(commits, answers, ["a1"], "nms")]
    assert ledger.first.wait(10)
    threads += [
        submit_in_thread(commits, answers, ["b1", "b2"], "nms"),
        submit_in_thread(commits, answers, ["c1"], "other"),
        submit_in_thread(commits, answers, ["d1"], "nms"),
        submit_in_thread(commits, answers, ["bad", "e1"], "probe"),
    ]
    wait_for_waiting(commits, 4)
    ledger.release.set()
    for thread in threads:
        thread.join(10)
    assert answers["a1"] == ["nms:a1"]
    assert answers["b1"] == ["nms:b1", "nms:b2"] and answers["d1"] == ["nms:d1"]
    assert answers["c1"] == ["other:c1"]
    assert isinstance(answers["bad"], ValueError), "a failed transaction fails its requests only"
    assert commits.rounds == 2
    assert ledger.transactions == [
        ("nms", ["a1"]),
        ("nms", ["b1", "b2", "d1"]),  # one transaction for the sender's waiting requests
        ("other", ["c1"]),
    ]


def test_a_request_no_round_takes_within_its_patience_is_refused_and_never_taken():
    ledger = Ledger()
    commits = GroupCommit(ledger.take)
    answers: dict[str, object] = {}
    first = submit_in_thread(commits, answers, ["a1"], "nms")
    assert ledger.first.wait(10)
    with pytest.raises(NotTakenError):
        commits.submit(["late"], "nms", None, patience=0.05)
    ledger.release.set()
    first.join(10)
    assert commits.submit(["next"], "nms", None, patience=1) == ["nms:next"]
    assert [records for _, records in ledger.transactions] == [["a1"], ["next"]]
