"""Live telemetry from events into the online store: a degradation event's KPI and an alarm's
active-alarm count land in the cell's ``cell_live`` features (read back through Feast) before
the event is scored; an older reading never overwrites a newer one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from actions.runtime import open_runtime
from closedloop.events import EventType, NetworkEvent, Severity
from closedloop.scores import Score
from closedloop.world.config import WorldConfig
from features.online import (
    LIVE_FEATURES,
    LIVE_VIEW,
    OnlineReader,
    ServiceLayout,
    ViewLayout,
    view_table,
)
from features.store import open_store

CONFIG = WorldConfig(customers=300, days=10, seed=5, customers_per_cell=30)
END = datetime(2026, 1, 11, tzinfo=UTC)


@pytest.fixture(scope="module")
def home(tmp_path_factory, prepare):
    return prepare(tmp_path_factory.mktemp("actions-telemetry"), CONFIG)


def live_reader(settings) -> OnlineReader:
    view = ViewLayout(LIVE_VIEW, view_table(LIVE_VIEW), 3600, LIVE_FEATURES, LIVE_FEATURES)
    return OnlineReader(settings.paths.online_db, ServiceLayout("live", "cell_id", (view,)))


class SeeingScores:
    """Fault scores that record the cell's live latency in the online store when asked."""

    def __init__(self, reader: OnlineReader) -> None:
        self.reader, self.seen = reader, []

    def churn(self, customer_ids: list[str]) -> dict[str, Score]:
        return {}

    def fault(self, cell_id: str) -> Score | None:
        self.seen.append(self.reader.read(cell_id, END).values["latency_ms"])
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


def test_events_push_live_features_before_scoring(home):
    cell = pd.read_parquet(home.world_dir / "inventory/customers.parquet").cell_id.iloc[0]
    reader = live_reader(home)
    scores = SeeingScores(reader)
    runtime = open_runtime(home, scores, lambda: END)
    at = END - timedelta(minutes=10)
    try:
        runtime.handle([kpi(1, cell, at, 321.5)])
        assert scores.seen == [321.5], "the event's score came after its telemetry"
        row = reader.read(cell, END)
        assert row.values["latency_ms"] == 321.5
        assert row.event_times[LIVE_VIEW] == at.replace(microsecond=0)

        runtime.handle([kpi(2, cell, at - timedelta(minutes=5), 99.0)])  # late, older reading
        assert reader.read(cell, END).values["latency_ms"] == 321.5

        runtime.handle(
            [
                alarm(3, EventType.ALARM_ONSET, cell, "a", at + timedelta(minutes=1)),
                alarm(4, EventType.ALARM_ONSET, cell, "b", at + timedelta(minutes=2)),
                alarm(5, EventType.ALARM_ONSET, cell, "b", at + timedelta(minutes=3)),  # repeat
                alarm(6, EventType.ALARM_CLEAR, cell, "a", at + timedelta(minutes=4)),
            ]
        )
        assert reader.read(cell, END).values["alarm_count"] == 1.0
    finally:
        runtime.close()
        reader.close()

    store = open_store(home)
    live = store.get_online_features(
        features=[f"{LIVE_VIEW}:latency_ms", f"{LIVE_VIEW}:alarm_count"],
        entity_rows=[{"cell_id": cell}],
    ).to_dict()
    assert live["latency_ms"] == [321.5] and live["alarm_count"] == [1.0]


def test_the_inventory_is_the_worlds_cells_and_a_non_finite_reading_is_refused(home):
    from features.online import Reading

    cells = set(pd.read_parquet(home.world_dir / "inventory/cells.parquet").cell_id)
    runtime = open_runtime(home, SeeingScores(live_reader(home)), lambda: END)
    try:
        assert runtime.processor.directory.cells == cells
        cell = sorted(cells)[0]
        runtime.telemetry.write([Reading(cell, {"latency_ms": 12.5}, END)])
        for bad in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match="not a finite number"):
                runtime.telemetry.write(
                    [Reading(cell, {"packet_loss_pct": 1.0, "latency_ms": bad}, END)]
                )
        row = live_reader(home).read(cell, END).values
        assert row["latency_ms"] == 12.5 and row["packet_loss_pct"] != 1.0
    finally:
        runtime.close()
