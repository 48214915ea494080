"""Writers contending for one SQLite ledger, as real processes: two ``closedloop replay`` of
overlapping files at once, and the service taking ``POST /events`` while a replay runs. Each
event is committed once, each action delivered once, the budgets hold, and nobody crashes with
``database is locked`` or answers a 504: a writer that cannot get the ledger in time is told so
(503 with Retry-After) and its event is committed when it sends it again."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from access_kit import bearer

import actions
from actions.policy import ActionType
from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from features.offline import OfflineStore
from serving.process import start_service
from training.config import LightGBMParams

CONFIG = WorldConfig(customers=1_200, days=50, seed=9, customers_per_cell=40)
END = datetime(2026, 2, 20, tzinfo=UTC)
FAST = LightGBMParams(num_boost_round=60, early_stopping_rounds=10)
CREDITS_PER_DAY = 40.0
MESSAGES_PER_DAY = 3
BUSY = "1"  # seconds a writer waits for the ledger: short, so the waits really run out


@pytest.fixture(scope="module")
def home(tmp_path_factory, prepare_serving) -> Settings:
    settings = prepare_serving(tmp_path_factory.mktemp("contention"), CONFIG, END, FAST)
    policy = yaml.safe_load((Path(actions.__file__).parent / "policies/default.yaml").read_text())
    policy["guards"]["credit_budget"] = {"per_day": CREDITS_PER_DAY, "per_customer": 300}
    policy["guards"]["frequency"][0]["max"] = MESSAGES_PER_DAY
    for rule in policy["rules"]:  # credits go out without approval: the budget is what stops them
        rule.pop("approval_above", None)
    path = settings.home / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return Settings.model_validate({**settings.model_dump(), "action_policy": path})


@pytest.fixture(autouse=True)
def fresh_ledger(home):
    """Each test on an empty ledger (the world, features and models stay)."""
    for path in home.paths.ledger_db.parent.glob(home.paths.ledger_db.name + "*"):
        path.unlink()


def events_for(cells: list[str]) -> list[dict]:
    """An outage and two KPI degradations per cell; ids shared between files for shared cells."""
    events = []
    for n, cell in enumerate(cells):
        at = END - timedelta(hours=2) + timedelta(minutes=n)
        events.append({
            "event_id": f"on-{cell}", "event_type": "alarm_onset", "occurred_at": at.isoformat(),
            "cell_id": cell, "severity": "critical", "alarm_id": f"alm-{cell}",
        })  # fmt: skip
        for k in (1, 2):
            events.append({
                "event_id": f"kpi-{cell}-{k}", "event_type": "kpi_degradation",
                "occurred_at": (at + timedelta(minutes=20 * k)).isoformat(), "cell_id": cell,
                "severity": "major", "metric": "drop_rate", "value": 0.08, "threshold": 0.03,
            })  # fmt: skip
    return events


def environment(home: Settings, receiver) -> dict[str, str]:
    endpoints = {a.value: f"{receiver.url}/{a.value}" for a in ActionType}
    return {
        **os.environ,
        **home.environment(),
        "CLOSEDLOOP_ACTION_ENDPOINTS": json.dumps(endpoints),
        "CLOSEDLOOP_LEDGER_BUSY_SECONDS": BUSY,
        "CLOSEDLOOP_ACTION_LEASE_SECONDS": "10",
        "CLOSEDLOOP_ACTION_BACKOFF_SECONDS": "0.05",
    }


def replay(env: dict[str, str], path: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "closedloop", "replay", str(path)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def rows(home: Settings, sql: str) -> list[tuple]:
    with sqlite3.connect(home.paths.ledger_db) as db:
        return db.execute(sql).fetchall()


def wait_delivered(home: Settings, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while rows(home, "SELECT key FROM decisions WHERE status IN ('pending', 'delivering')"):
        assert time.monotonic() < deadline, "actions left undelivered"
        time.sleep(0.2)


def assert_once_and_within_budgets(
    home: Settings, receiver, event_ids: set[str], scoped: int | None = None
) -> None:
    """``scoped``: the events expected once per sender (ids are scoped to their sender), when
    two senders sent the same ids."""
    assert {e for (e,) in rows(home, "SELECT event_id FROM events")} == event_ids
    assert rows(home, "SELECT COUNT(*) FROM events")[0][0] == (scoped or len(event_ids))
    sent = {k for (k,) in rows(home, "SELECT key FROM decisions WHERE status = 'dispatched'")}
    delivered = Counter(receiver.keys())
    assert sent and set(delivered) == sent, "every dispatched action reached the receiver"
    assert max(delivered.values()) == 1, "no action delivered twice"
    taken = "status IN ('pending', 'delivering', 'dispatched', 'awaiting_approval')"
    credits = rows(
        home,
        "SELECT substr(decided_at, 1, 10), SUM(amount) FROM decisions"
        f" WHERE action = 'bill_credit' AND {taken} GROUP BY 1",
    )
    assert credits and all(total <= CREDITS_PER_DAY for _, total in credits), credits
    messages = rows(
        home,
        "SELECT target, COUNT(*) FROM decisions"
        f" WHERE action = 'customer_message' AND {taken} GROUP BY target",
    )
    assert messages and max(n for _, n in messages) <= MESSAGES_PER_DAY
    suppressed = rows(home, "SELECT DISTINCT guard FROM decisions WHERE status = 'suppressed'")
    assert ("credit_budget_day",) in suppressed  # the budget was reached, and held


def test_two_replays_at_once_commit_each_event_once_and_deliver_each_action_once(home, receiver):
    cells = list(OfflineStore(home.home).read("customers").cell_id.value_counts().index[:16])
    first, second = events_for(cells[:10]), events_for(cells[6:])
    paths = []
    for name, events in (("a", first), ("b", second)):
        path = home.home / f"replay-{name}.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
        paths.append(path)
    env = environment(home, receiver)
    running = [replay(env, path) for path in paths]
    answers = [process.communicate(timeout=300) for process in running]
    for process, (out, err) in zip(running, answers, strict=True):
        assert process.returncode == 0, err.decode() + out.decode()
        assert b"database is locked" not in err + out
    wait_delivered(home)  # whichever replay held the lease last delivered
    assert_once_and_within_budgets(home, receiver, {e["event_id"] for e in first + second})


def post_until_committed(url: str, events: list[dict], answers: Counter, auth: dict) -> None:
    """Each event posted alone, sent again after a 503 (as its Retry-After says)."""
    for event in events:
        while True:
            answer = httpx.post(f"{url}/events", json={"events": [event]}, timeout=60, headers=auth)
            answers[answer.status_code] += 1
            if answer.status_code != 503:
                break
            assert answer.headers["Retry-After"].isdigit()
            time.sleep(0.2)


def test_the_service_beside_a_replay_loses_no_event_and_sends_nothing_twice(
    home, receiver, free_port
):
    cells = list(OfflineStore(home.home).read("customers").cell_id.value_counts().index[16:30])
    by_http, by_file = events_for(cells[:8]), events_for(cells[5:])
    path = home.home / "replay-service.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in by_file))
    env = environment(home, receiver)
    values = {k.removeprefix("CLOSEDLOOP_").lower(): v for k, v in env.items()}
    settings = Settings.model_validate(
        {
            **home.model_dump(),
            "serve_port": free_port(),
            "clock_start": END,
            "action_endpoints": json.loads(values["action_endpoints"]),
            "ledger_busy_seconds": float(BUSY),
            "action_lease_seconds": 10.0,
        }
    )
    auth = bearer(home, "event_source")
    service = start_service(settings)
    answers: Counter[int] = Counter()
    try:
        poster = threading.Thread(
            target=post_until_committed, args=(service.url, by_http, answers, auth)
        )
        replayed = replay(env | {"CLOSEDLOOP_CLOCK_START": END.isoformat()}, path)
        poster.start()
        out, err = replayed.communicate(timeout=300)
        poster.join(300)
        wait_delivered(home)
    finally:
        service.stop()
    assert replayed.returncode == 0, err.decode() + out.decode()
    assert set(answers) <= {200, 503}, answers  # never a 504 or 500
    once_per_sender = len({e["event_id"] for e in by_http}) + len({e["event_id"] for e in by_file})
    assert_once_and_within_budgets(
        home, receiver, {e["event_id"] for e in by_http + by_file}, once_per_sender
    )
