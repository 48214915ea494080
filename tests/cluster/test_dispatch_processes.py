"""Several ``closedloop actions dispatch --follow`` processes on one PostgreSQL ledger: each
action reaches the receiver exactly once, and the holder killed (SIGKILL) in the middle of a
delivery leaves its claims to another dispatcher once its lease runs out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter

import psycopg
import pytest
from actionkit import Clock, FixedScores, customer, event

from actions.backends import open_ledger
from actions.policy import ActionType
from actions.processor import Directory, Processor
from closedloop.settings import Settings

DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
CELLS = [f"cell_{n:05d}" for n in range(1, 31)]
LEASE_SECONDS = 4.0


@pytest.fixture
def ledger_settings(tmp_path):
    schema = f"test_dispatchers_{uuid.uuid4().hex[:10]}"
    yield Settings(home=tmp_path, profile="cluster", postgres_dsn=DSN, ledger_schema=schema)
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def rows(settings: Settings, sql: str) -> list[tuple]:
    with psycopg.connect(DSN) as db:
        db.execute(f'SET search_path TO "{settings.ledger_schema}"')
        return db.execute(sql).fetchall()


def dispatcher(settings: Settings, receiver) -> subprocess.Popen:
    endpoints = {a.value: f"{receiver.url}/{a.value}" for a in ActionType}
    env = {
        **os.environ, **settings.environment(),
        "CLOSEDLOOP_ACTION_ENDPOINTS": json.dumps(endpoints),
        "CLOSEDLOOP_ACTION_TIMEOUT_SECONDS": "120",
        "CLOSEDLOOP_ACTION_LEASE_SECONDS": str(LEASE_SECONDS),
    }  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "closedloop", "actions", "dispatch", "--follow"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_dispatchers_on_postgresql_deliver_once_and_take_over_a_killed_holder(
    ledger_settings, policy, receiver
):
    ledger = open_ledger(ledger_settings)
    people = [customer(n, cell=CELLS[n % len(CELLS)]) for n in range(1, 91)]
    processor = Processor(ledger, policy, Directory.of(people), FixedScores(), Clock())
    processor.process_many(
        [event(cell=c, minutes=-n, alarm_id=f"d-{c}") for n, c in enumerate(CELLS)]
    )
    ledger.close()
    pending = {
        k for (k,) in rows(ledger_settings, "SELECT key FROM decisions WHERE status = 'pending'")
    }
    assert len(pending) > 30

    receiver.stalled = True  # the first delivery hangs: the holder is killed in it
    running = [dispatcher(ledger_settings, receiver) for _ in range(3)]
    try:
        deadline = time.monotonic() + 120
        while not receiver.stalls:
            for process in running:
                assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "no dispatcher started delivering"
            time.sleep(0.05)
        ((holder,),) = rows(ledger_settings, "SELECT holder FROM leases")
        pid = int(holder.split(":")[1])
        (killed,) = [p for p in running if p.pid == pid]
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        receiver.stalled = False
        claimed = rows(ledger_settings, "SELECT key FROM decisions WHERE status = 'delivering'")
        assert claimed, "the killed holder had claims"
        survivors = [p for p in running if p is not killed]
        deadline = time.monotonic() + 180  # a loaded machine: the lease, then 150 deliveries
        while not pending <= set(receiver.keys()):
            for process in survivors:
                assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "the claims were never taken over"
            time.sleep(0.2)
        ((new_holder,),) = rows(ledger_settings, "SELECT holder FROM leases")
        assert new_holder != holder
    finally:
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in running:
            process.wait(60)
    delivered = Counter(receiver.keys())
    assert set(delivered) == pending and set(delivered.values()) == {1}, "each action once"
    statuses = dict(rows(ledger_settings, "SELECT status, COUNT(*) FROM decisions GROUP BY 1"))
    assert statuses.get("dispatched") == len(pending) and "delivering" not in statuses
    assert rows(ledger_settings, "SELECT holder FROM leases") == [], "released at stop"
    print(
        f"dispatchers: 3 on one PostgreSQL ledger, holder SIGKILLed mid-delivery with "
        f"{len(claimed)} claim(s); {len(pending)} actions, {len(delivered)} delivered, "
        f"{sum(n > 1 for n in delivered.values())} twice"
    )
