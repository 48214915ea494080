"""Dispatchers on one ledger: only the lease holder delivers, two of them draining the same
pending actions deliver each exactly once at a real HTTP receiver (SQLite, and PostgreSQL for
the cluster profile), and a holder that hangs loses the lease to another, which delivers what it
had claimed."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest
from actionkit import Clock, FixedScores, anchor, customer, event

from actions.adapters import HttpAdapter
from actions.dispatch import Dispatcher, LeaseHeldError, current_lease, queued
from actions.ledger import Ledger, Status
from actions.policy import ActionType
from actions.processor import Directory, Processor

DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
CELLS = [f"cell_{n:05d}" for n in range(6)]
PEOPLE = [customer(n, cell=CELLS[n % len(CELLS)]) for n in range(1, 121)]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.cluster)])
def connect(request, tmp_path):
    """``connect() -> Ledger``: a new connection to one ledger, SQLite or PostgreSQL."""
    opened: list[Ledger] = []
    if request.param == "sqlite":

        def make() -> Ledger:
            opened.append(Ledger.sqlite(tmp_path / "ledger.db", anchor(tmp_path)))
            return opened[-1]

        yield make
    else:
        psycopg = pytest.importorskip("psycopg")
        schema = f"test_dispatch_{uuid.uuid4().hex[:10]}"

        def make() -> Ledger:
            opened.append(Ledger.postgresql(DSN, schema, anchor(tmp_path)))
            return opened[-1]

        yield make
        with psycopg.connect(DSN, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    for ledger in opened:
        ledger.close()


@pytest.fixture
def client():
    with httpx.Client() as opened:
        yield opened


def commit_outages(ledger: Ledger, policy) -> set[str]:
    """An outage on every cell, decided and committed; the keys to deliver."""
    processor = Processor(ledger, policy, Directory.of(PEOPLE), FixedScores(), Clock())
    processor.process_many([event(cell=cell, alarm_id=f"alm-{cell}") for cell in CELLS])
    return {r["key"] for r in ledger.decisions(status=Status.PENDING, limit=10_000)}


def dispatcher(ledger: Ledger, receiver, client, **fields) -> Dispatcher:
    adapters = {a: HttpAdapter(f"{receiver.url}/{a.value}", 5, client) for a in ActionType}
    return Dispatcher(ledger, adapters, 1, 0.01, **fields)


def test_two_dispatchers_deliver_each_action_exactly_once(connect, policy, receiver, client):
    """The lease changes hands between rounds (each drain releases it); it is long enough that
    a thread starved on a loaded machine keeps it (a holder that dies: test_dispatch_processes)."""
    keys = commit_outages(connect(), policy)
    assert len(keys) > 100
    stop = threading.Event()
    dispatchers = [
        dispatcher(connect(), receiver, client, batch=7, lease_seconds=5) for _ in range(2)
    ]
    refused: Counter[str] = Counter()

    def run(d: Dispatcher) -> None:
        while not stop.is_set():
            try:
                d.drain(limit=20)  # release between rounds: the lease changes hands
            except LeaseHeldError:
                refused[d.holder] += 1

    threads = [threading.Thread(target=run, args=(d,)) for d in dispatchers]
    for thread in threads:
        thread.start()
    watcher = connect()
    deadline = time.monotonic() + 60
    while queued(watcher) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(30)

    delivered = Counter(receiver.keys())
    assert set(delivered) == keys and set(delivered.values()) == {1}
    assert {r["status"] for r in watcher.decisions(limit=10_000)} == {Status.DISPATCHED}
    assert sum(refused.values()) > 0  # they did compete for the lease
    trail = watcher.read().rows("SELECT key FROM audit WHERE kind = 'dispatch'")
    assert Counter(r["key"] for r in trail) == Counter(keys)  # one dispatch row per action


def test_only_the_holder_delivers_and_a_hung_holder_loses_the_lease(
    connect, policy, receiver, client
):
    keys = commit_outages(connect(), policy)
    hung = threading.Event()

    class Hangs:
        def deliver(self, action, key, payload) -> str:
            hung.set()
            threading.Event().wait()  # never answers
            return ""

    first = Dispatcher(connect(), dict.fromkeys(ActionType, Hangs()), 0, 0, lease_seconds=1)
    threading.Thread(target=first.drain, daemon=True).start()
    assert hung.wait(10)
    second = dispatcher(connect(), receiver, client, lease_seconds=1)
    with pytest.raises(LeaseHeldError) as held:
        second.drain()
    assert held.value.holder == first.holder and receiver.received == []
    stuck = second.ledger.decisions(status=Status.DELIVERING, limit=10_000)
    assert stuck and all(r["claimed_by"] == first.holder for r in stuck)

    lease = current_lease(second.ledger)
    assert lease is not None and lease.holder == first.holder
    time.sleep(max(0.0, (lease.expires_at - datetime.now(UTC)).total_seconds()) + 0.05)
    results = second.drain()
    assert results == {Status.DISPATCHED: len(keys)}
    delivered = Counter(receiver.keys())
    assert set(delivered) == keys and set(delivered.values()) == {1}
    assert current_lease(second.ledger) is None  # released when done
    assert queued(second.ledger) == 0


def test_a_failing_drain_gives_the_lease_up_and_its_claims_are_delivered_next(connect, policy):
    keys = commit_outages(connect(), policy)
    sent: list[str] = []

    class DiskFillsOnce:
        def deliver(self, action, key, payload) -> str:
            if len(sent) == 2 and "full" not in sent:
                sent.append("full")
                raise OSError("no space left on device")
            sent.append(key)
            return "ok"

    d = Dispatcher(connect(), dict.fromkeys(ActionType, DiskFillsOnce()), 0, 0)
    with pytest.raises(OSError):
        d.drain(keep=True)
    assert current_lease(d.ledger) is None  # given up despite keep
    assert d.ledger.decisions(status=Status.DELIVERING)  # claimed, not delivered
    assert d.drain() == {Status.DISPATCHED: len(keys) - 2}
    delivered = [key for key in sent if key != "full"]
    assert sorted(delivered) == sorted(keys)
    assert queued(d.ledger) == 0
