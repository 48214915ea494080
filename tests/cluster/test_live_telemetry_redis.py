"""Live telemetry on the cluster profile: the KPIs events carry are pushed through Feast into the
Redis online store before the event is scored, read back by Feast and by the action layer's
scores; one KPI does not blank another, and an older reading does not overwrite a newer one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import redis
from pydantic import SecretStr

from actions.runtime import open_runtime
from closedloop.events import EventType, NetworkEvent, Severity
from closedloop.scores import Score
from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from features.backends import online_store
from features.online import LIVE_VIEW
from features.pipeline import apply_repository
from features.store import FeastLiveWriter, open_store

CONFIG = WorldConfig(customers=300, days=10, seed=5, customers_per_cell=30)
END = datetime(2026, 1, 11, tzinfo=UTC)


def live(store, cell: str) -> dict[str, object]:
    found = store.get_online_features(
        features=[f"{LIVE_VIEW}:latency_ms", f"{LIVE_VIEW}:alarm_count"],
        entity_rows=[{"cell_id": cell}],
    ).to_dict()
    return {"latency_ms": found["latency_ms"][0], "alarm_count": found["alarm_count"][0]}


class SeeingScores:
    """Fault scores that record the cell's live latency, read through Feast, when asked."""

    def __init__(self, store) -> None:
        self.store, self.seen = store, []

    def churn(self, customer_ids: list[str]) -> dict[str, Score]:
        return {}

    def fault(self, cell_id: str) -> Score | None:
        self.seen.append(live(self.store, cell_id)["latency_ms"])
        return None

    def explain(self, scores: list[Score]) -> list[Score]:
        return scores


def kpi(n: int, cell: str, at: datetime, value: float) -> NetworkEvent:
    return NetworkEvent(
        event_id=f"kpi-{n}", event_type=EventType.KPI_DEGRADATION, occurred_at=at, cell_id=cell,
        severity=Severity.MAJOR, metric="latency_ms", value=value, threshold=90.0,
    )  # fmt: skip


def alarm(n: int, kind: EventType, cell: str, alarm_id: str, at: datetime) -> NetworkEvent:
    return NetworkEvent(
        event_id=f"alm-{n}", event_type=kind, occurred_at=at, cell_id=cell,
        severity=Severity.CRITICAL, alarm_id=alarm_id,
    )  # fmt: skip


def test_events_push_live_features_into_redis_before_scoring(tmp_path, prepare, database, redis_db):
    prepare(tmp_path, CONFIG)
    cluster = Settings(
        home=tmp_path, profile="cluster", postgres_dsn=SecretStr(database), redis_url=redis_db
    )
    apply_repository(cluster)
    assert isinstance(online_store(cluster).live_writer(), FeastLiveWriter)
    cell = pd.read_parquet(tmp_path / "offline/customers").cell_id.iloc[0]
    store = open_store(cluster)
    scores = SeeingScores(store)
    runtime = open_runtime(cluster, scores, lambda: END)
    at = END - timedelta(minutes=10)
    try:
        runtime.handle([kpi(1, cell, at, 321.5)])
        assert scores.seen == [321.5], "the event's score came after its telemetry"
        assert redis.Redis.from_url(redis_db).dbsize() > 0, "the push reached Redis"
        assert live(store, cell) == {"latency_ms": 321.5, "alarm_count": None}

        runtime.handle([kpi(2, cell, at - timedelta(minutes=5), 99.0)])  # late, older reading
        assert live(store, cell)["latency_ms"] == 321.5

        runtime.handle(
            [
                alarm(3, EventType.ALARM_ONSET, cell, "a", at + timedelta(minutes=1)),
                alarm(4, EventType.ALARM_ONSET, cell, "b", at + timedelta(minutes=2)),
                alarm(5, EventType.ALARM_ONSET, cell, "b", at + timedelta(minutes=3)),  # repeat
                alarm(6, EventType.ALARM_CLEAR, cell, "a", at + timedelta(minutes=4)),
            ]
        )
        assert live(store, cell) == {"latency_ms": 321.5, "alarm_count": 1.0}, "merged, kept"
    finally:
        runtime.close()
    table = (
        open_store(cluster)
        .get_online_features(features=[f"{LIVE_VIEW}:latency_ms"], entity_rows=[{"cell_id": cell}])
        .to_dict(include_event_timestamps=True)
    )
    assert datetime.fromtimestamp(table["latency_ms__ts"][0], UTC) == at + timedelta(minutes=4)
