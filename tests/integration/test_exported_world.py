"""The whole loop on imported data: a small simulated world exported as an operator's dump
(CSV files in each system's own dialect), the world deleted, the dump imported through the
mappings shipped in features/mappings/operator-dump/, then train -> serve -> POST /events ->
actions -> monitor, with no simulator file in the home."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from access_kit import bearer
from actionkit import wait_delivered
from typer.testing import CliRunner

from actions.policy import ActionType
from closedloop.cli import app
from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate
from closedloop.world.store import write_world
from features.canonical import TABLES
from features.ingest import ingest_world
from features.offline import OfflineStore
from serving.process import start_service

CONFIG = WorldConfig(customers=1_200, days=50, seed=9, customers_per_cell=40)
END = datetime(2026, 2, 20, tzinfo=UTC)
MAPPINGS = Path(__file__).parents[2] / "features" / "mappings" / "operator-dump"
PARAMS = """
train_churn: {lightgbm: {num_boost_round: 60, early_stopping_rounds: 10}}
train_fault: {lightgbm: {num_boost_round: 60, early_stopping_rounds: 10}}
"""
# the dump's files, each with its mapping, in the order they are imported (inventory first)
FILES = {
    "cells.csv": "cells.yaml",
    "customers.csv": "customers.yaml",
    "telemetry_aurora.csv": "telemetry-aurora.yaml",
    "telemetry_zenith.csv": "telemetry-zenith.yaml",
    "experience.csv": "experience.yaml",
    "usage.csv": "usage.yaml",
    "invoices.csv": "invoices.yaml",
    "credits.csv": "credits.yaml",
    "tickets.csv": "tickets.yaml",
    "incidents.csv": "incidents.yaml",
}
runner = CliRunner()


def _day(values: pd.Series, fmt: str = "%Y-%m-%d") -> pd.Series:
    return pd.to_datetime(values).dt.strftime(fmt).fillna("")


def _iso(values: pd.Series) -> pd.Series:
    return values.map(lambda t: "" if pd.isna(t) else t.isoformat())


def _yes_no(values: pd.Series) -> pd.Series:
    return values.map({True: "Y", False: "N"}).fillna("")


def export_dump(store: OfflineStore, folder: Path) -> None:
    """The world's canonical tables written the way an operator's systems export them."""
    folder.mkdir()
    cells = store.read("cells")
    pd.DataFrame(
        {
            "Cell": cells.cell_id, "Region": cells.region, "Time Zone": cells.timezone,
            "RAT": cells.technology.str.upper(), "Vendor": cells.vendor,
            "Capacity Gbps": cells.capacity_mbps / 1000, "Max Users": cells.max_users.astype(int),
            "Idle Latency ms": cells.baseline_latency_ms,
        }
    ).to_csv(folder / "cells.csv", index=False)  # fmt: skip
    customers = store.read("customers").merge(store.read("churn_labels"), on="customer_id")
    contracts = {"month_to_month": "Month-to-Month", "one_year": "One Year", "two_year": "Two Year"}
    pd.DataFrame(
        {
            "Customer ID": customers.customer_id,
            "Segment": customers.segment.map({"consumer": "Consumer", "smb": "SMB",
                                              "enterprise": "Enterprise"}),
            "SLA Tier": customers.sla_tier, "Plan": customers.plan,
            "List Price": customers.list_price, "MRR": customers.mrr,
            "Total Charges": customers.total_charges,
            "Contract": customers.contract_type.map(contracts),
            "Contract End": _day(customers.contract_end, "%d/%m/%Y"),
            "Signup Date": _day(customers.signup_date, "%d/%m/%Y"),
            "Tenure Months": customers.tenure_months.astype(int), "Region": customers.region,
            "Serving Cell": customers.cell_id, "Device": customers.device_type,
            "Do Not Contact": _yes_no(customers.do_not_contact), "New MRR": customers.new_mrr,
            "New MRR From": _day(customers.new_mrr_from, "%d/%m/%Y"),
            "Churned": customers.churned.map({True: "Yes", False: "No"}),
            "Churn Date": _day(customers.churn_date, "%d/%m/%Y"),
        }
    ).to_csv(folder / "customers.csv", index=False)  # fmt: skip
    telemetry = store.read("cell_telemetry")
    aurora = telemetry[telemetry.vendor == "aurora"]
    pd.DataFrame(
        {
            "cell_id": aurora.cell_id, "ts_utc": _iso(aurora.ts),
            "interval_min": aurora.interval_minutes, "availability_pct": aurora.availability_pct,
            "latency_ms": aurora.latency_ms, "pkt_loss_pct": aurora.packet_loss_pct,
            "dl_throughput_mbps": aurora.throughput_mbps, "prb_util_pct": aurora.prb_util_pct,
            "rrc_connected_users": aurora.connected_users, "alarm_count": aurora.alarm_count,
            "received_at": _iso(aurora.received_at),
        }
    ).to_csv(folder / "telemetry_aurora.csv", index=False)  # fmt: skip
    zenith = telemetry[telemetry.vendor == "zenith"]
    zones = zenith.cell_id.map(cells.set_index("cell_id").timezone)
    local = [t.tz_convert(zone).isoformat() for t, zone in zip(zenith.ts, zones, strict=True)]
    pd.DataFrame(
        {
            "CELL": zenith.cell_id, "START_LOCAL": local, "PERIOD_MIN": zenith.interval_minutes,
            "AVAIL_RATIO": zenith.availability_pct / 100, "LAT_US": zenith.latency_ms * 1000,
            "LOSS_RATIO": zenith.packet_loss_pct / 100, "DL_KBPS": zenith.throughput_mbps * 1000,
            "PRB_RATIO": zenith.prb_util_pct / 100, "UE_MEAN": zenith.connected_users,
            "ALARMS": zenith.alarm_count, "RECEIVED_UTC": _iso(zenith.received_at),
        }
    ).to_csv(folder / "telemetry_zenith.csv", index=False, sep=";")  # fmt: skip
    experience = store.read("experience")
    pd.DataFrame(
        {
            "Customer ID": experience.customer_id, "Day": _day(experience.date),
            "Outage Minutes": experience.outage_minutes,
            "Degraded Minutes": experience.degraded_minutes,
            "Latency P95 ms": experience.latency_p95_ms,
            "Failed Sessions": experience.failed_sessions.astype("Int64"),
        }
    ).to_csv(folder / "experience.csv", index=False)  # fmt: skip
    usage = store.read("usage")
    pd.DataFrame(
        {
            "Customer ID": usage.customer_id, "Day": _day(usage.date),
            "Data GB": usage.data_mb / 1000, "Voice Minutes": usage.voice_minutes,
            "SMS": usage.sms_count.astype("Int64"),
        }
    ).to_csv(folder / "usage.csv", index=False)  # fmt: skip
    invoices = store.read("invoices")
    pd.DataFrame(
        {
            "Invoice": invoices.invoice_id, "Customer ID": invoices.customer_id,
            "Issued": _day(invoices.issued_on), "Due": _day(invoices.due_on),
            "Amount USD": invoices.amount, "Paid": _day(invoices.paid_on),
        }
    ).to_csv(folder / "invoices.csv", index=False)  # fmt: skip
    credits = store.read("credits")
    pd.DataFrame(
        {
            "Credit": credits.credit_id, "Customer ID": credits.customer_id,
            "Issued": _day(credits.issued_on), "Amount USD": credits.amount,
            "Reason": credits.reason,
        }
    ).to_csv(folder / "credits.csv", index=False)  # fmt: skip
    tickets = store.read("tickets")
    pd.DataFrame(
        {
            "Ticket": tickets.ticket_id, "Customer ID": tickets.customer_id,
            "Opened": _iso(tickets.opened_at), "Resolved": _iso(tickets.resolved_at),
            "Category": tickets.category, "Complaint": _yes_no(tickets.is_complaint),
        }
    ).to_csv(folder / "tickets.csv", index=False)  # fmt: skip
    faults = store.read("cell_fault_labels")
    pd.DataFrame(
        {
            "Cell": faults.cell_id, "Start UTC": _iso(faults.start_at),
            "End UTC": _iso(faults.end_at), "Cause": faults.kind,
            "Outage": _yes_no(faults.is_outage),
        }
    ).to_csv(folder / "incidents.csv", index=False)  # fmt: skip


def _cli(home: Path, *args: str) -> str:
    result = runner.invoke(app, ["--home", str(home), *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> tuple[Settings, dict[str, pd.DataFrame]]:
    """The dump of a world imported into a home of its own; the world's tables as it held them."""
    scratch = tmp_path_factory.mktemp("exported-world")
    world, origin, dump, home = (scratch / name for name in ("world", "origin", "dump", "home"))
    write_world(simulate(CONFIG), world)
    ingest_world(world, origin, END)
    source = OfflineStore(origin)
    held = {name: source.read(name) for name in TABLES}
    export_dump(source, dump)
    shutil.rmtree(world)
    shutil.rmtree(origin)
    for csv, mapping in FILES.items():
        _cli(home, "import-csv", str(dump / csv), "--mapping", str(MAPPINGS / mapping),
             "--as-of", END.isoformat())  # fmt: skip
    return Settings(home=home), held


def _sorted(frame: pd.DataFrame, keys: tuple[str, ...]) -> pd.DataFrame:
    return frame.sort_values(list(keys), kind="stable").reset_index(drop=True)


def test_the_dump_imports_every_row_of_the_world_unchanged(imported):
    settings, held = imported
    store = OfflineStore(settings.home)
    reports = {r.source: r for r in store.reports()}
    assert {r.removeprefix("operator-dump-") for r in reports} == {
        Path(m).stem for m in FILES.values()
    }
    assert all(t.quarantined == 0 for r in reports.values() for t in r.tables.values())
    for name, table in TABLES.items():
        ours, theirs = _sorted(store.read(name), table.keys), _sorted(held[name], table.keys)
        assert len(ours) == len(theirs) > 0, name
        for column in table.columns:
            mine, world = ours[column], theirs[column]
            if pd.api.types.is_float_dtype(world):
                assert np.allclose(mine, world, rtol=1e-9, equal_nan=True), (name, column)
            else:
                assert (mine.astype(str) == world.astype(str)).all(), (name, column)
    assert not (settings.home / "world").exists()


@pytest.fixture(scope="module")
def trained(imported, tmp_path_factory) -> tuple[Settings, dict[str, str]]:
    settings, _ = imported
    params = tmp_path_factory.mktemp("params") / "params.yaml"
    params.write_text(PARAMS)
    _cli(settings.home, "features", "build", "--as-of", END.isoformat())
    _cli(settings.home, "features", "apply")
    start = (END - timedelta(days=CONFIG.days + 1)).isoformat()
    _cli(settings.home, "features", "materialize", "--start", start, "--end", END.isoformat())
    outputs = {
        t: _cli(settings.home, "train", t, "--params", str(params)) for t in ("churn", "fault")
    }
    return settings, outputs


def test_both_models_train_on_the_imported_data_and_become_champions(trained):
    _, outputs = trained
    for target, out in outputs.items():
        assert f"{target} model version 1" in out
        assert "split: by time" in out and "gate: promoted to champion" in out, out


def test_events_posted_to_the_service_become_actions_and_monitoring_runs(
    trained, free_port, receiver
):
    settings, _ = trained
    auth = bearer(settings, "admin")
    customers = OfflineStore(settings.home).read("customers")
    cell = customers.cell_id.value_counts().index[0]
    at = END - timedelta(hours=1)
    onset = {
        "event_id": f"dump-{cell}", "event_type": "alarm_onset", "occurred_at": at.isoformat(),
        "cell_id": cell, "severity": "critical", "alarm_id": f"alm-{cell}",
        "description": "cell down",
    }  # fmt: skip
    endpoints = {a.value: f"{receiver.url}/{a.value}" for a in ActionType}
    values = {**settings.model_dump(), "serve_port": free_port(), "clock_start": END}
    service = start_service(Settings.model_validate({**values, "action_endpoints": endpoints}))
    try:
        answer = httpx.post(
            f"{service.url}/events", json={"events": [onset]}, timeout=60, headers=auth
        )
        assert answer.status_code == 200, answer.text
        (outcome,) = answer.json()["outcomes"]
        assert outcome["outcome"] == "new"
        assert outcome["affected_customers"] == int((customers.cell_id == cell).sum())
        decided = {d["key"]: d for d in outcome["decisions"]}
        assert {d["action"] for d in decided.values()} >= {"trouble_ticket", "customer_message"}
        wait_delivered(settings)
    finally:
        service.stop()
    with sqlite3.connect(settings.home / "ledger.db") as db:
        sent = {k for (k,) in db.execute("SELECT key FROM decisions WHERE status='dispatched'")}
    assert sent and set(receiver.keys()) == sent
    end = ["--end", END.isoformat()]
    scored = _cli(settings.home, "monitor-score", "churn", *end, "--days", "7")
    assert "churn v1: scored" in scored
    monitored = _cli(settings.home, "monitor", "churn", *end, "--no-retrain")
    assert "trigger:" in monitored and "reports and summary.json in" in monitored
