"""Builders for the action layer's tests: events, customers, fixed scores, a clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

from actions.anchor import Anchor
from actions.decide import Customer
from closedloop.events import EventType, NetworkEvent, Severity
from closedloop.scores import Score

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
AUDIT_KEY = "test-audit-key-0123456789"


def anchor(folder: Path) -> Anchor:
    """An audit anchor with the tests' key, its head checkpoint and witness log in ``folder``."""
    return Anchor.of(AUDIT_KEY, folder / "audit-head.json", folder / "audit-witness.log")


_ids = count()


def event(
    kind: EventType = EventType.ALARM_ONSET,
    cell: str = "cell_00001",
    minutes: float = 0,
    severity: Severity = Severity.CRITICAL,
    **fields,
) -> NetworkEvent:
    values = {"event_id": f"ev-{next(_ids)}", "alarm_id": f"alm-{cell}"} | fields
    if kind not in (EventType.ALARM_ONSET, EventType.ALARM_CLEAR) and "alarm_id" not in fields:
        values["alarm_id"] = None
    return NetworkEvent(
        event_type=kind,
        occurred_at=T0 + timedelta(minutes=minutes),
        cell_id=cell,
        severity=severity,
        **values,
    )


def customer(n: int, cell: str = "cell_00001", **fields) -> Customer:
    values = {
        "segment": "consumer",
        "sla_tier": "bronze",
        "contract_type": "month_to_month",
        "mrr": 50.0,
    } | fields
    return Customer(customer_id=f"cus_{n:07d}", cell_id=cell, **values)


def score(entity: str, probability: float, model: str = "churn") -> Score:
    return Score(
        entity_id=entity,
        model=model,
        model_version="3",
        feature_service=f"{model}_v1",
        probability=probability,
        features={"outage_minutes_7d": 42.0},
    )


class FixedScores:
    """Scores set by the test: churn by customer, fault by cell."""

    def __init__(self, churn: dict[str, float] | None = None, fault: float | None = 0.5) -> None:
        self.churn_by_id = churn or {}
        self.default_churn = 0.2
        self.fault_probability = fault

    def churn(self, customer_ids: list[str]) -> dict[str, Score]:
        return {c: score(c, self.churn_by_id.get(c, self.default_churn)) for c in customer_ids}

    def fault(self, cell_id: str) -> Score | None:
        if self.fault_probability is None:
            return None
        return score(cell_id, self.fault_probability, "fault")

    def explain(self, scores: list[Score]) -> list[Score]:
        return scores


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def wait_delivered(settings, timeout: float = 60) -> None:
    """Until the home's SQLite ledger holds nothing pending or being delivered."""
    import sqlite3
    import time

    import pytest

    deadline = time.monotonic() + timeout
    left = None
    while time.monotonic() < deadline:
        with sqlite3.connect(settings.paths.ledger_db) as db:
            (left,) = db.execute(
                "SELECT COUNT(*) FROM decisions WHERE status IN ('pending', 'delivering')"
            ).fetchone()
        if not left:
            return
        time.sleep(0.2)
    pytest.fail(f"{left} decisions still waiting for delivery")
