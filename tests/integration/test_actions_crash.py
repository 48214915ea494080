"""``closedloop replay`` as a real process: killed after committing its decisions, while its
first delivery hangs at a receiver too slow to answer, then restarted once its dispatcher's
lease ran out — every action reaches the receiver exactly once; and a replay beside a running
``closedloop actions dispatch --follow`` leaves the delivery to it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from actions.policy import ActionType
from closedloop.events import EventType, NetworkEvent, Severity
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate
from closedloop.world.store import write_world
from features.ingest import ingest_world
from features.offline import OfflineStore

WORLD = WorldConfig(customers=400, days=10, seed=11, customers_per_cell=40)
AT = datetime(2026, 1, 11, 9, 0, tzinfo=UTC)
LEASE_SECONDS = 2.0


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crash")
    write_world(simulate(WORLD), folder / "world")
    ingest_world(folder / "world", folder, AT)
    return folder


def outage_events(cells: list[str]) -> list[NetworkEvent]:
    events = []
    for n, cell in enumerate(cells):
        onset = AT + timedelta(minutes=10 * n)
        events += [
            NetworkEvent(
                event_id=f"on-{cell}", event_type=EventType.ALARM_ONSET, occurred_at=onset,
                cell_id=cell, severity=Severity.CRITICAL, alarm_id=f"alm-{cell}",
            ),
            NetworkEvent(
                event_id=f"again-{cell}", event_type=EventType.ALARM_ONSET,
                occurred_at=onset + timedelta(minutes=2), cell_id=cell,
                severity=Severity.CRITICAL, alarm_id=f"alm-{cell}",
            ),
        ]  # fmt: skip
    return events


def replay(home, events_file, receiver) -> subprocess.Popen:
    endpoints = {a.value: f"{receiver.url}/{a.value}" for a in ActionType}
    env = {
        **os.environ,
        "CLOSEDLOOP_HOME": str(home),
        "CLOSEDLOOP_ACTION_ENDPOINTS": json.dumps(endpoints),
        "CLOSEDLOOP_ACTION_TIMEOUT_SECONDS": "120",
        "CLOSEDLOOP_ACTION_LEASE_SECONDS": str(LEASE_SECONDS),
        "CLOSEDLOOP_ACTION_BACKOFF_SECONDS": "0.05",
    }
    command = [sys.executable, "-m", "closedloop", "replay", "--no-models", str(events_file)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def ledger_rows(home, sql: str) -> list[tuple]:
    with sqlite3.connect(home / "ledger.db") as db:
        return db.execute(sql).fetchall()


def test_kill_between_decide_and_dispatch_loses_nothing_and_duplicates_nothing(home, receiver):
    cells = OfflineStore(home).read("customers").cell_id.unique()[:3]
    events = outage_events(list(cells))
    path = home / "events.jsonl"
    path.write_text("".join(e.model_dump_json() + "\n" for e in events))

    receiver.stalled = True  # the first delivery hangs: a window to kill the process in
    first = replay(home, path, receiver)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert first.poll() is None, first.stderr.read().decode()
        if receiver.stalls:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the replay never started delivering")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    receiver.stalled = False
    assert ledger_rows(home, "SELECT COUNT(*) FROM events")[0][0] == len(events)
    waiting = ledger_rows(
        home, "SELECT key FROM decisions WHERE status IN ('pending', 'delivering')"
    )
    pending = {key for (key,) in waiting}
    assert pending and receiver.received == []  # committed, not yet delivered

    (expires,) = ledger_rows(home, "SELECT expires_at FROM leases")[0]  # the dead one's lease
    time.sleep(max(0.0, (datetime.fromisoformat(expires) - datetime.now(UTC)).total_seconds()))

    second = replay(home, path, receiver)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()
    assert f"{len(events)} duplicate" in out.decode()
    delivered = Counter(receiver.keys())
    assert set(delivered) == pending and set(delivered.values()) == {1}
    statuses = ledger_rows(home, "SELECT status, COUNT(*) FROM decisions GROUP BY status")
    assert "pending" not in dict(statuses)

    third = replay(home, path, receiver)
    third.communicate(timeout=120)
    assert third.returncode == 0 and Counter(receiver.keys()) == delivered


def test_replay_leaves_delivery_to_a_following_dispatcher(home, receiver):
    endpoints = {a.value: f"{receiver.url}/{a.value}" for a in ActionType}
    env = {
        **os.environ,
        "CLOSEDLOOP_HOME": str(home),
        "CLOSEDLOOP_ACTION_ENDPOINTS": json.dumps(endpoints),
    }
    follower = subprocess.Popen(
        [sys.executable, "-m", "closedloop", "actions", "dispatch", "--follow"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ledger_rows(home, "SELECT holder FROM leases"):
            assert follower.poll() is None, follower.stderr.read().decode()
            assert time.monotonic() < deadline, "the follower never took the lease"
            time.sleep(0.2)
        cells = OfflineStore(home).read("customers").cell_id.unique()[3:5]
        events = [
            NetworkEvent(
                event_id=f"follow-{cell}", event_type=EventType.ALARM_ONSET, occurred_at=AT,
                cell_id=cell, severity=Severity.CRITICAL, alarm_id=f"follow-{cell}",
            )
            for cell in cells
        ]  # fmt: skip
        path = home / "follow.jsonl"
        path.write_text("".join(e.model_dump_json() + "\n" for e in events))
        replayed = replay(home, path, receiver)
        out, err = replayed.communicate(timeout=120)
        assert replayed.returncode == 0, err.decode()
        assert "another dispatcher holds the lease" in out.decode()
        keys = {
            key
            for (key,) in ledger_rows(
                home, "SELECT key FROM decisions WHERE event_id LIKE 'follow-%'"
                " AND status IN ('pending', 'delivering', 'dispatched')"
            )
        }  # fmt: skip
        while not keys <= set(receiver.keys()):
            assert time.monotonic() < deadline, "the follower never delivered"
            time.sleep(0.2)
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(30)
    delivered = Counter(receiver.keys())
    assert keys and set(delivered) == keys and set(delivered.values()) == {1}
    assert follower.returncode == 0 and ledger_rows(home, "SELECT holder FROM leases") == []
