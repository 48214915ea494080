"""The written world: schemas, determinism, label bands, causal direction and event stream."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from closedloop.events import EventType, NetworkEvent
from closedloop.world import schemas
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate
from closedloop.world.store import read_summary, write_world


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_every_table_is_written_with_its_documented_schema(small_world_dir):
    for spec in schemas.TABLES:
        path = small_world_dir / spec.path
        files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        assert files, f"{spec.name} was not written"
        for file in files[:3]:
            schema = pq.read_schema(file)
            assert schema.equals(spec.schema, check_metadata=False), (spec.name, schema)
            for field in schema:
                assert field.metadata[b"description"], f"{spec.name}.{field.name} undocumented"


def test_manifest_counts_match_the_files(small_world_dir):
    summary = read_summary(small_world_dir)
    for spec in schemas.TABLES:
        path = small_world_dir / spec.path
        rows = (
            pq.ParquetDataset(path).read().num_rows
            if path.is_dir()
            else pq.read_metadata(path).num_rows
        )
        assert rows == summary.rows[spec.name], spec.name
    events = (small_world_dir / schemas.EVENTS_PATH).read_text().splitlines()
    assert len(events) == summary.rows["events"]


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    config = WorldConfig(customers=300, days=10, seed=123)
    for name in ("a", "b"):
        write_world(simulate(config), tmp_path / name)
    write_world(simulate(config.model_copy(update={"seed": 124})), tmp_path / "c")
    first, second, other = (_digests(tmp_path / n) for n in "abc")
    assert first == second
    assert len(first) > 20
    differing = [name for name in first if first[name] != other.get(name)]
    assert "inventory/customers.parquet" in differing and len(differing) > len(first) / 2


def test_rewriting_replaces_the_previous_world_whole(tmp_path):
    write_world(simulate(WorldConfig(customers=300, days=20, seed=1)), tmp_path / "w")
    write_world(simulate(WorldConfig(customers=300, days=8, seed=1)), tmp_path / "w")
    days = {p.stem for p in (tmp_path / "w" / "telemetry" / "aurora").glob("*.parquet")}
    assert max(days) <= "2026-01-11", "files of the longer, earlier world were left behind"
    assert not (tmp_path / "w.partial").exists()


def test_label_rates_fall_inside_their_configured_bands(small_world):
    summary, config = small_world.summary, small_world.config
    assert summary.churn_rate_30d in config.churn_band
    assert summary.incident_rate_per_cell_day in config.incident_band
    assert len(summary.incidents) >= 3


def test_customers_with_more_outage_minutes_churn_more(small_world):
    """Exposure is the serving cell's outage minutes: it does not shrink when a customer leaves."""
    incidents = small_world.tables["incidents"].to_pandas()
    outages = incidents[incidents.is_outage]
    minutes = (outages.end_at - outages.start_at).dt.total_seconds() / 60
    cell_outage = minutes.groupby(outages.cell_id).sum()
    customers = small_world.tables["customers"].to_pandas().set_index("customer_id")
    churned = small_world.tables["churn"].to_pandas().set_index("customer_id").churned
    exposure = customers.cell_id.map(cell_outage).fillna(0).loc[churned.index]
    exposed = exposure > exposure.median()
    high, low = churned[exposed], churned[~exposed]
    assert len(high) > 500 and len(low) > 500
    pooled = churned.mean()
    stderr = np.sqrt(pooled * (1 - pooled) * (1 / len(high) + 1 / len(low)))
    z = (high.mean() - low.mean()) / stderr
    assert z > 4, f"churn {high.mean():.3f} exposed vs {low.mean():.3f} (z={z:.2f})"


def test_churned_customers_stop_appearing_after_they_leave(small_world):
    churn = small_world.tables["churn"].to_pandas()
    left = churn[churn.churned].set_index("customer_id").churn_date
    usage = small_world.tables["usage"].to_pandas()
    usage = usage[usage.customer_id.isin(left.index)]
    assert (usage.date.to_numpy() < left.loc[usage.customer_id].to_numpy()).all()
    tickets = small_world.tables["tickets"].to_pandas()
    tickets = tickets[tickets.customer_id.isin(left.index)]
    opened = tickets.opened_at.dt.date.to_numpy()
    assert (opened < left.loc[tickets.customer_id].to_numpy()).all()


def test_events_are_valid_ordered_and_uniquely_identified(small_world_dir):
    lines = (small_world_dir / schemas.EVENTS_PATH).read_text().splitlines()
    events = [NetworkEvent.model_validate(json.loads(line)) for line in lines]
    assert {e.event_type for e in events} >= {
        EventType.ALARM_ONSET, EventType.ALARM_CLEAR, EventType.KPI_DEGRADATION,
        EventType.REPEATED_FAILURE,
    }  # fmt: skip
    times = [e.occurred_at for e in events]
    assert times == sorted(times)
    assert len({e.event_id for e in events}) == len(events)
    assert all(e.customer_id for e in events if e.event_type is EventType.REPEATED_FAILURE)


def test_every_alarm_clear_follows_an_onset_of_the_same_alarm(small_world):
    events = small_world.events
    onsets = events[events.event_type == "alarm_onset"].groupby("alarm_id").occurred_at.min()
    clears = events[events.event_type == "alarm_clear"].set_index("alarm_id").occurred_at
    assert clears.index.isin(onsets.index).all()
    assert (clears > onsets.loc[clears.index]).all()


def test_injected_faults_raise_alarms_on_their_cells(small_world):
    incidents = small_world.tables["incidents"].to_pandas()
    alarmed = incidents[incidents.kind.isin(["power_failure", "backhaul_cut", "interference"])]
    onsets = small_world.events[small_world.events.event_type == "alarm_onset"]
    for row in alarmed.itertuples():
        near = onsets[
            (onsets.cell_id == row.cell_id)
            & (onsets.occurred_at >= row.start_at)
            & (onsets.occurred_at <= row.start_at + pd.Timedelta(minutes=15))
        ]
        assert len(near) >= 1, row


@pytest.mark.parametrize("vendor", ["aurora", "zenith"])
def test_late_records_land_in_later_arrival_files(small_world_dir, vendor):
    spec = schemas.TELEMETRY_BY_VENDOR[vendor]
    time_column = {"aurora": "ts_utc", "zenith": "LOCAL_TIME"}[vendor]
    late_somewhere = False
    for file in sorted((small_world_dir / spec.path).glob("*.parquet")):
        frame = pq.read_table(file, columns=[time_column]).to_pandas()
        stamped = (
            frame[time_column].dt.tz_localize(None) if vendor == "aurora" else frame[time_column]
        )
        arrival_day = pd.Timestamp(file.stem)
        late_somewhere |= bool((stamped < arrival_day - pd.Timedelta(hours=12)).any())
    assert late_somewhere
