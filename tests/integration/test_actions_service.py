"""POST /events on the real BentoML service: events in, actions in the ledger and at a real
receiver; a repeated post creates nothing; bad input is a 4xx; a bad policy is a health problem."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd
import pytest

from actions.policy import ActionType
from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from serving.process import start_service
from training.config import LightGBMParams

CONFIG = WorldConfig(customers=1_200, days=50, seed=9, customers_per_cell=40)
END = datetime(2026, 2, 20, tzinfo=UTC)
FAST = LightGBMParams(num_boost_round=60, early_stopping_rounds=10)


@pytest.fixture(scope="module")
def home(tmp_path_factory, prepare_serving) -> Settings:
    return prepare_serving(tmp_path_factory.mktemp("actions-service"), CONFIG, END, FAST)


def service_settings(home: Settings, port: int, **update) -> Settings:
    values = {**home.model_dump(), "serve_port": port, "clock_start": END, **update}
    return Settings.model_validate(values)


def outage(cell: str) -> list[dict]:
    at = END - timedelta(hours=1)
    onset = {
        "event_id": f"svc-{cell}", "event_type": "alarm_onset", "occurred_at": at.isoformat(),
        "cell_id": cell, "severity": "critical", "alarm_id": f"alm-{cell}",
        "description": "cell down",
    }  # fmt: skip
    flap = {
        **onset,
        "event_id": f"svc-{cell}-2",
        "occurred_at": (at + timedelta(minutes=2)).isoformat(),
    }
    return [onset, flap]


def test_events_posted_to_the_service_become_actions_once(home, free_port, receiver):
    customers = pd.read_parquet(home.world_dir / "inventory/customers.parquet")
    cell = customers.cell_id.value_counts().index[0]
    on_cell = set(customers[customers.cell_id == cell].customer_id)
    endpoints = {a.value: f"{receiver.url}/{a.value}" for a in ActionType}
    service = start_service(service_settings(home, free_port(), action_endpoints=endpoints))
    try:
        url = service.url
        answer = httpx.post(f"{url}/events", json={"events": outage(cell)}, timeout=60)
        assert answer.status_code == 200, answer.text
        first, flap = answer.json()["outcomes"]
        assert first["outcome"] == "new" and flap["outcome"] == "repeated_alarm"
        assert first["affected_customers"] == len(on_cell)
        decided = {d["key"]: d for d in first["decisions"]}
        assert {d["action"] for d in decided.values()} >= {"trouble_ticket", "customer_message"}
        assert {d["target"] for d in decided.values()} <= on_cell | {cell}

        again = httpx.post(f"{url}/events", json={"events": outage(cell)}, timeout=60).json()
        assert [o["outcome"] for o in again["outcomes"]] == ["duplicate", "duplicate"]
        assert again["dispatched"] == {}

        bad = httpx.post(f"{url}/events", json={"events": [{"event_id": "x"}]}, timeout=30)
        assert 400 <= bad.status_code < 500 and "event_type" in bad.text
        empty = httpx.post(f"{url}/events", json={"events": []}, timeout=30)
        assert 400 <= empty.status_code < 500
        health = httpx.get(f"{url}/status/health", timeout=30).json()
    finally:
        service.stop()
    assert not [p for p in health["problems"] if p.startswith("actions")]
    with sqlite3.connect(home.home / "ledger.db") as db:
        rows = db.execute("SELECT key, status, model_version FROM decisions").fetchall()
        trail = db.execute("SELECT payload FROM audit WHERE kind = 'decision'").fetchall()
    assert {key for key, _, _ in rows} == set(decided)
    sent = {key for key, status, _ in rows if status == "dispatched"}
    assert sent and sorted(receiver.keys()) == sorted(sent)
    scored = [json.loads(p)["score"] for (p,) in trail]
    assert {s["model"] for s in scored} == {"churn", "fault"}
    assert all(s["model_version"] == "1" and s["features"] for s in scored)


def test_a_bad_policy_is_a_health_problem_and_events_answer_503(home, free_port, tmp_path):
    policy = tmp_path / "bad.yaml"
    policy.write_text("version: x\nrules: []\n")
    service = start_service(service_settings(home, free_port(), action_policy=policy))
    try:
        health = httpx.get(f"{service.url}/status/health", timeout=30).json()
        answer = httpx.post(f"{service.url}/events", json={"events": outage("c")}, timeout=30)
    finally:
        service.stop()
    assert any(p.startswith("actions:") and "rules" in p for p in health["problems"])
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "actions_unavailable"
