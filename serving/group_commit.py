"""Group commit: the event requests a worker holds at once are decided and committed together,
one transaction per sender instead of one per request, and each request is answered with its
own events' outcomes.

The first request to arrive while nothing is being committed commits every request waiting
then (its own among them); the requests that arrive meanwhile wait for the next round, led by
one of them. A transaction's cost that does not grow with its events (taking the ledger's
write lock, the audit chain's head, the commit and its checkpoint) is paid once per round.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

RecordT = TypeVar("RecordT")  # a record
OutcomeT = TypeVar("OutcomeT")  # its outcome

Take = Callable[[list[RecordT], str, str | None], list[OutcomeT]]
"""Decides and commits records of one sender (``sender``, ``by``) in one transaction: one
outcome per record, in order."""


class NotTakenError(Exception):
    """No round took the request within the patience given: nothing was done."""


@dataclass
class Request(Generic[RecordT, OutcomeT]):
    records: list[RecordT]
    sender: str
    by: str | None
    outcomes: list[OutcomeT] | None = None
    error: BaseException | None = None
    done: bool = False

    def answer(self) -> list[OutcomeT]:
        if self.error is not None:
            raise self.error
        return self.outcomes


class GroupCommit(Generic[RecordT, OutcomeT]):
    """Serialises the worker's commits and groups the requests that wait for one."""

    def __init__(self, take: Take) -> None:
        self._take = take
        self._turn = threading.Condition()
        self._waiting: list[Request[RecordT, OutcomeT]] = []
        self._committing = False
        self.rounds = 0  # rounds committed

    def submit(
        self, records: list[RecordT], sender: str, by: str | None, patience: float
    ) -> list[OutcomeT]:
        """The records' outcomes once committed (with other requests' records of the same
        sender); raises what the commit raised, or :class:`NotTakenError` when no round took
        them within ``patience`` seconds."""
        request: Request[RecordT, OutcomeT] = Request(records, sender, by)
        deadline = time.monotonic() + patience
        with self._turn:
            self._waiting.append(request)
            while self._committing and not request.done:
                queued = request in self._waiting
                left = deadline - time.monotonic()
                if queued and left <= 0:
                    self._waiting.remove(request)
                    raise NotTakenError(f"not taken within {patience:g} s")
                self._turn.wait(left if queued else None)
            if not request.done:
                self._committing = True
                batch, self._waiting = self._waiting, []
        if not request.done:
            try:
                self._commit(batch)
            finally:
                with self._turn:
                    self._committing = False
                    self._turn.notify_all()
        return request.answer()

    def _commit(self, batch: list[Request[RecordT, OutcomeT]]) -> None:
        """One transaction per sender, in the order the senders first arrived; every request
        of the batch ends answered (its outcomes, or the error of its transaction)."""
        self.rounds += 1
        senders: dict[tuple[str, str | None], list[Request[RecordT, OutcomeT]]] = {}
        for request in batch:
            senders.setdefault((request.sender, request.by), []).append(request)
        try:
            for (sender, by), requests in senders.items():
                self._commit_of(requests, sender, by)
        finally:
            for request in batch:
                if not request.done:
                    request.error = NotTakenError("the round was interrupted before its commit")
                    request.done = True

    def _commit_of(
        self, requests: list[Request[RecordT, OutcomeT]], sender: str, by: str | None
    ) -> None:
        try:
            outcomes = self._take([r for q in requests for r in q.records], sender, by)
        except Exception as error:
            for request in requests:
                request.error, request.done = error, True
            return
        start = 0
        for request in requests:
            end = start + len(request.records)
            request.outcomes, request.done = outcomes[start:end], True
            start = end
