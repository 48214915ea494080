"""Fixtures for the action layer's unit tests: the default policy and a processor factory."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from actionkit import Clock, FixedScores, anchor

from actions.dispatch import Dispatcher
from actions.ledger import Ledger
from actions.policy import Policy, load_policy
from actions.processor import Directory, Processor


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(None)


@pytest.fixture
def make_processor(tmp_path, policy) -> Callable[..., tuple[Processor, Dispatcher, Clock]]:
    """``make_processor(customers, scores=..., policy=..., adapters=..., cells=...)`` on a fresh
    SQLite ledger under tmp_path; adapters default to the local outbox; the inventory's cells
    are ``cells`` and the customers' cells."""
    from actions.adapters import OutboxAdapter
    from actions.policy import ActionType

    ledgers = []

    def make(customers, scores=None, rules=policy, adapters=None, retries=2, cells=()):
        ledger = Ledger.sqlite(tmp_path / "ledger.db", anchor(tmp_path))
        ledgers.append(ledger)
        clock = Clock()
        outbox = OutboxAdapter(tmp_path / "outbox")
        processor = Processor(
            ledger, rules, Directory.of(customers, cells), scores or FixedScores(), clock
        )
        dispatcher = Dispatcher(
            ledger, adapters or dict.fromkeys(ActionType, outbox), retries, 0.01, clock
        )
        return processor, dispatcher, clock

    yield make
    for ledger in ledgers:
        ledger.close()
