"""The feature stage end to end on a small world: ingest, build, Feast apply and materialise."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate
from features.ingest import ingest_world
from features.offline import OfflineStore
from features.online import open_reader
from features.pipeline import materialize
from features.quarantine import decode_record
from features.repo import service_features
from features.store import open_store

CONFIG = WorldConfig(customers=600, days=21, seed=11, customers_per_cell=60)
END = datetime(2026, 1, 22, tzinfo=UTC)


@pytest.fixture(scope="module")
def settings(tmp_path_factory, prepare) -> Settings:
    settings = prepare(tmp_path_factory.mktemp("features"), CONFIG)
    materialize(settings, END - timedelta(days=30), END, stock=False)
    return settings


def _digests(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.parquet"))}


def test_every_row_read_is_ingested_or_quarantined(settings):
    (report,) = OfflineStore(settings.home).reports()
    for name, counts in report.tables.items():
        assert counts.read == counts.ingested + counts.quarantined, name
        assert sum(counts.reasons.values()) >= counts.quarantined, name
    quarantine = OfflineStore(settings.home).read_quarantine("cell_telemetry")
    assert len(quarantine) == sum(
        t.quarantined for n, t in report.tables.items() if n.startswith("cell_telemetry")
    )
    assert quarantine.source.str.startswith("telemetry/").all()
    assert (quarantine.source_row >= 0).all() and quarantine.record.str.startswith("{").all()


def test_injected_dirt_is_quarantined_with_its_reason(settings):
    (report,) = OfflineStore(settings.home).reports()
    summary = simulate(CONFIG).summary
    for vendor in ("aurora", "zenith"):
        reasons = report.tables[f"cell_telemetry ({vendor})"].reasons
        duplicates = reasons.get("duplicate of an earlier record for (cell_id, ts)", 0)
        # a duplicate of a row that was itself quarantined is quarantined for that reason instead
        assert (
            0.8 * summary.dirt[vendor]["duplicates"]
            <= duplicates
            <= summary.dirt[vendor]["duplicates"]
        )
    aurora = report.tables["cell_telemetry (aurora)"].reasons
    assert (
        aurora["latency_ms outside 0.1..5000 ms"] >= summary.dirt["aurora"]["unit_glitches"] * 0.9
    )
    zenith = report.tables["cell_telemetry (zenith)"].reasons
    first = "first sample of the cell: no earlier counter value to difference against"
    zenith_cells = pd.read_parquet(settings.home / "offline/cells").query("vendor == 'zenith'")
    quarantine = OfflineStore(settings.home).read_quarantine("cell_telemetry")
    baselines = quarantine[quarantine.reasons == first].record.map(decode_record)
    assert {r["NE_ID"] for r in baselines} == set(
        zenith_cells.cell_id
    )  # one per cell (and resends)
    assert zenith[first] == len(baselines) >= len(zenith_cells)
    assert zenith["prb_util_pct outside 0..100 %"] >= summary.dirt["zenith"]["unit_glitches"] * 0.9


def test_ingesting_the_same_input_again_changes_nothing(settings):
    before = _digests(settings.home / "offline") | _digests(settings.home / "quarantine")
    ingest_world(settings.home / "world", settings.home, END)
    after = _digests(settings.home / "offline") | _digests(settings.home / "quarantine")
    assert before == after


def test_both_vendors_arrive_in_canonical_units(settings):
    world = simulate(CONFIG.model_copy(update={"dirt": CONFIG.dirt}))
    offline = OfflineStore(settings.home).read("cell_telemetry")
    zenith = offline[offline.vendor == "zenith"]
    aurora = offline[offline.vendor == "aurora"]
    assert zenith.interval_minutes.median() == 15 and aurora.interval_minutes.median() == 15
    assert zenith.latency_ms.between(5, 500).mean() > 0.95  # µs became ms
    assert zenith.prb_util_pct.max() <= 100  # ratio became %
    assert (zenith.ts.dt.minute % 15 == 0).all()  # local interval ends became UTC starts
    assert world.summary.rows["telemetry_zenith"] > len(zenith)


def test_feature_services_fix_the_model_columns(settings):
    store = open_store(settings)
    churn = service_features(store.get_feature_service("churn_v1"))
    assert "do_not_contact" not in churn and "outage_minutes_30d" in churn
    assert len(churn) == len(set(churn)) >= 30
    fault = service_features(store.get_feature_service("fault_v1"))
    assert {"prb_trend_6h", "loss_trend_6h", "availability_24h"} <= set(fault)


def test_point_in_time_join_never_sees_rows_stamped_after_the_label(settings):
    """Labels placed one second before an outage day's row is stamped must not see that outage."""
    daily = pq.read_table(settings.home / "features/customer_daily.parquet").to_pandas()
    daily = daily.sort_values(["customer_id", "event_timestamp"])
    before = daily.groupby("customer_id").outage_minutes_1d.shift(1)
    jumps = daily[(daily.outage_minutes_1d > 0) & (before == 0)].head(40)
    assert len(jumps) >= 10
    entity_df = pd.concat(
        [
            pd.DataFrame(
                {
                    "customer_id": jumps.customer_id,
                    "event_timestamp": jumps.event_timestamp - pd.Timedelta(seconds=1),
                    "at": "before",
                }
            ),
            pd.DataFrame(
                {
                    "customer_id": jumps.customer_id,
                    "event_timestamp": jumps.event_timestamp,
                    "at": "stamp",
                }
            ),
        ],
        ignore_index=True,
    )
    store = open_store(settings)
    joined = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service("churn_v1")
    ).to_df()
    seen_before = joined[joined["at"] == "before"].outage_minutes_1d
    seen_at = joined[joined["at"] == "stamp"].outage_minutes_1d
    assert (seen_before == 0).all(), "a feature stamped after the label time leaked into the join"
    assert (seen_at > 0).all()


def test_direct_reader_matches_feast_online_reads(settings):
    store = open_store(settings)
    service = store.get_feature_service("churn_v1")
    reader = open_reader(settings.home, "churn_v1")
    ids = pd.read_parquet(settings.home / "offline/customers").customer_id.head(25).tolist()
    feast = store.get_online_features(
        features=service, entity_rows=[{"customer_id": i} for i in ids]
    ).to_dict()
    for position, customer in enumerate(ids):
        row = reader.read(customer, END)
        for feature in reader.features:
            expected = feast[feature][position]
            assert row.values[feature] == pytest.approx(expected, nan_ok=True), (customer, feature)
    reader.close()


def test_stale_and_unknown_entities_are_flagged(settings):
    reader = open_reader(settings.home, "churn_v1")
    labels = pd.read_parquet(settings.home / "offline/churn_labels")
    stayer = labels[~labels.churned].customer_id.iloc[0]
    assert reader.read(stayer, END).stale_views == []
    later = reader.read(stayer, END + timedelta(days=3))
    assert set(later.stale_views) == {
        "customer_profile",
        "customer_experience",
        "customer_engagement",
    }
    leaver = labels[labels.churned].sort_values("churn_date").customer_id.iloc[0]
    assert reader.read(leaver, END).stale_views, "a customer who left long ago has stale features"
    unknown = reader.read("cus_9999999", END)
    assert all(v is None for v in unknown.values.values())
    assert len(unknown.stale_views) == 3
    reader.close()


def test_bulk_and_stock_materialisation_give_the_same_online_store(settings, tmp_path, prepare):
    stock = prepare(tmp_path, CONFIG)
    materialize(stock, END - timedelta(days=30), END, stock=True)
    ids = pd.read_parquet(settings.home / "offline/customers").customer_id.head(40).tolist()
    cells = pd.read_parquet(settings.home / "offline/cells").cell_id.tolist()
    for service, key, entities in (
        ("churn_v1", "customer_id", ids),
        ("fault_v1", "cell_id", cells),
    ):
        rows = [{key: e} for e in entities]
        ours = open_store(settings)
        theirs = open_store(stock)
        a = ours.get_online_features(
            features=ours.get_feature_service(service), entity_rows=rows
        ).to_df()
        b = theirs.get_online_features(
            features=theirs.get_feature_service(service), entity_rows=rows
        ).to_df()
        pd.testing.assert_frame_equal(a, b)


def test_pushed_live_telemetry_updates_online_features(settings):
    store = open_store(settings)
    cell = pd.read_parquet(settings.home / "offline/cells").cell_id.iloc[0]
    pushed = pd.DataFrame(
        {
            "cell_id": [cell],
            "ts": [pd.Timestamp(END)],
            "availability_pct": [42.0],
            "latency_ms": [310.0],
            "packet_loss_pct": [7.5],
            "prb_util_pct": [99.0],
            "connected_users": [12.0],
            "alarm_count": [3.0],
        }
    )
    store.push("cell_live_push", pushed)
    live = store.get_online_features(
        features=["cell_live:availability_pct", "cell_live:latency_ms"],
        entity_rows=[{"cell_id": cell}],
    ).to_dict()
    assert live["availability_pct"] == [42.0] and live["latency_ms"] == [310.0]


def test_the_feature_commands_print_json_for_scripts(settings):
    from typer.testing import CliRunner

    from closedloop.cli import app

    def cli(*args: str):
        result = CliRunner().invoke(app, ["--home", str(settings.home), "features", *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    expected = service_features(open_store(settings).get_feature_service("churn_v1"))
    services = {s["service"]: s for s in cli("list", "--json")}
    assert services["churn_v1"]["features"] == len(expected)
    churn = cli("list", "churn_v1", "--json")
    listed = [f["feature"] for f in churn["features"]]
    assert listed == expected
    assert all(0 <= f["filled"] <= 1 and f["distinct"] >= 0 for f in churn["features"])
    customer = pd.read_parquet(settings.home / "offline/customers").customer_id.iloc[0]
    looked = cli("lookup", "churn_v1", customer, "--json")
    assert looked["customer_id"] == customer and set(looked["values"]) == set(listed)
    assert set(looked["as_of"]) == {
        "customer_profile",
        "customer_experience",
        "customer_engagement",
    }
