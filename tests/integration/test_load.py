"""The real service under load, on loopback with real models: a bounded intake refuses the
excess at once (503 with Retry-After) and loses nothing it took; liveness answers while the
worker scores large batches; a soak at a fixed event rate loses and doubles nothing, keeps its
memory flat and accounts for every event against the ledger (``bench.load``'s soak, shortened).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from access_kit import bearer
from actionkit import wait_delivered

from actions.policy import ActionType
from bench.load import Events, inventory, open_loop, soak
from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from serving.process import descendants, start_service
from training.config import LightGBMParams

CONFIG = WorldConfig(customers=1_200, days=50, seed=9, customers_per_cell=40)
END = datetime(2026, 2, 20, tzinfo=UTC)
FAST = LightGBMParams(num_boost_round=60, early_stopping_rounds=10)
SOAK_SECONDS, SOAK_RATE = 20, 2  # requests per second, about five events each
RSS_GROWTH_MB = 150  # generous: a leak of a few KB per event would pass 1,000 events


@pytest.fixture(scope="module")
def home(tmp_path_factory, prepare_serving) -> Settings:
    return prepare_serving(tmp_path_factory.mktemp("load"), CONFIG, END, FAST)


def served(home: Settings, port: int, **update) -> Settings:
    values = {**home.model_dump(), "serve_port": port, "clock_start": END,
              "events_per_second": 1e6, "events_burst": 10**6, **update}  # fmt: skip
    return Settings.model_validate(values)


def events(home: Settings, prefix: str) -> Events:
    return inventory(home, END - timedelta(minutes=1), prefix)


def test_beyond_its_bound_the_service_refuses_at_once_and_loses_nothing_it_took(home, free_port):
    reader, source = bearer(home, "viewer"), bearer(home, "event_source", "nms-load")
    customers = [c for c, _ in events(home, "x").customers][:1_000]
    service = start_service(served(home, free_port(), serve_max_pending=1))
    url = service.url
    scores: list[httpx.Response] = []
    live: list[int] = []
    try:
        body = {"customer_ids": customers, "explain": 3}

        def score() -> None:
            scores.append(httpx.post(f"{url}/churn/score", json=body, headers=reader, timeout=60))

        senders = [threading.Thread(target=score) for _ in range(8)]
        for sender in senders:
            sender.start()
        while any(s.is_alive() for s in senders):  # liveness while the worker scores
            live.append(httpx.get(f"{url}/livez", timeout=10).status_code)
        for sender in senders:
            sender.join()

        made = events(home, "shed")
        batches = [[made.kpi()] for _ in range(24)]
        answers, _ = asyncio.run(open_loop(url, source, batches, rate=200))
    finally:
        service.stop()
    assert live and set(live) == {200}
    statuses = Counter(a.status_code for a in scores)
    assert statuses[200] >= 1 and statuses[503] >= 1 and set(statuses) == {200, 503}, statuses
    for refused in (a for a in scores if a.status_code == 503):
        assert refused.json()["error"]["code"] == "overloaded"
        assert int(refused.headers["Retry-After"]) >= 1
    assert len(next(a for a in scores if a.status_code == 200).json()["scores"]) == 1_000

    taken = {a.ids[0] for a in answers if a.status == 200}
    refused = {a.ids[0] for a in answers if a.status == 503}
    assert taken and refused and len(taken) + len(refused) == len(batches), Counter(
        a.status for a in answers
    )
    assert all(a.retry_after for a in answers if a.status == 503)
    with sqlite3.connect(home.home / "ledger.db") as db:
        rows = db.execute("SELECT event_id FROM events WHERE event_id LIKE 'shed-%'").fetchall()
    held = {i for (i,) in rows}
    assert held == taken  # every event answered 200 committed, none refused was taken


def test_a_soak_at_a_fixed_rate_loses_nothing_doubles_nothing_and_keeps_memory_flat(
    home, free_port, receiver
):
    endpoints = {a.value: f"{receiver.url}/{a.value}" for a in ActionType}
    settings = served(home, free_port(), action_endpoints=endpoints)
    source = bearer(home, "event_source", "nms-soak")
    service = start_service(settings)
    pids = lambda: [service.process.pid, *descendants(service.process.pid)]  # noqa: E731
    try:
        warm = events(home, "warm")
        asyncio.run(open_loop(service.url, source, [[warm.kpi()] for _ in range(8)], 4))
        made = events(home, "soak")
        soaked = soak(service.url, source, home.home, made, SOAK_RATE, SOAK_SECONDS, pids)
        wait_delivered(home)
    finally:
        service.stop()
    print(f"soak {SOAK_SECONDS} s at {SOAK_RATE} requests/s: {soaked}")
    assert soaked.sent >= SOAK_RATE * SOAK_SECONDS * 2
    assert soaked.lost == 0 and soaked.doubled_events == 0 and soaked.failed == 0
    assert soaked.accounted == soaked.sent and soaked.rejected == len(made.invalid) > 0
    assert soaked.actioned > 0 and soaked.no_action > 0 and soaked.resent_duplicates > 0
    assert soaked.rss_end_mb - soaked.rss_start_mb < RSS_GROWTH_MB
    delivered = Counter(receiver.keys())
    with sqlite3.connect(home.home / "ledger.db") as db:
        dispatched = {
            k for (k,) in db.execute("SELECT key FROM decisions WHERE status = 'dispatched'")
        }
    assert delivered and set(delivered.values()) == {1}  # no action delivered twice
    assert set(delivered) <= dispatched | {f"{k}:resolved" for k in dispatched}
