"""The two real CSVs imported through their mappings, checked against plain pandas counts."""

import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from features.csv_import import import_csv
from features.offline import OfflineStore

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared/data beside the checkout
TELCO = DATA / "telco-customer-churn-ibm" / "Telco-Customer-Churn.csv"
LTE = DATA / "lte-cell-kpi-anomaly" / "cell_kpi_train.csv"
MAPPINGS = Path(__file__).parents[2] / "features" / "mappings"
AS_OF = datetime(2025, 1, 1, tzinfo=UTC)

pytestmark = pytest.mark.skipif(
    not (TELCO.is_file() and LTE.is_file()) and not os.environ.get("CI"),
    reason="the shared real CSVs are not beside this checkout (CI always has them)",
)


def _text(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)


def _counts(report, table: str) -> tuple[int, int, int]:
    part = report.tables[table]
    return part.read, part.ingested, part.quarantined


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def telco(home):
    return import_csv(TELCO, MAPPINGS / "telco-customer-churn-ibm.yaml", home, AS_OF)


@pytest.fixture(scope="module")
def lte(home):
    return import_csv(LTE, MAPPINGS / "lte-cell-kpi-anomaly.yaml", home, AS_OF)


def test_telco_customers_are_all_admitted_with_blank_total_charges_as_null(telco, home):
    raw = _text(TELCO)
    blank_total = raw["TotalCharges"].str.strip().eq("")
    numeric = raw[["MonthlyCharges", "tenure"]].apply(pd.to_numeric, errors="coerce")
    unreadable = numeric.isna().any(axis=1) | raw["customerID"].str.strip().eq("")
    assert (len(raw), int(blank_total.sum()), int(unreadable.sum())) == (7043, 11, 0)
    assert _counts(telco, "customers") == (7043, 7043, 0)
    assert "customers.total_charges: 11 blank TotalCharges read as null" in telco.warnings

    customers = OfflineStore(home).read("customers").set_index("customer_id")
    no_total = customers.index[customers["total_charges"].isna()]
    assert sorted(no_total) == sorted(raw.loc[blank_total, "customerID"])
    assert (customers.loc[no_total, "tenure_months"] == 0).all()
    assert customers["mrr"].sum() == pytest.approx(numeric["MonthlyCharges"].sum())
    expected_contracts = raw["Contract"].value_counts().to_dict()
    contracts = customers["contract_type"].value_counts().to_dict()
    assert contracts == {
        "month_to_month": expected_contracts["Month-to-month"],
        "one_year": expected_contracts["One year"],
        "two_year": expected_contracts["Two year"],
    }


def test_telco_churn_labels_keep_the_churn_rate(telco, home):
    raw = _text(TELCO)
    assert _counts(telco, "churn_labels") == (7043, 7043, 0)
    churned = OfflineStore(home).read("churn_labels")["churned"]
    assert churned.mean() == pytest.approx(raw["Churn"].eq("Yes").mean())
    assert round(churned.mean() * 100, 1) == 26.5


def test_lte_dirt_sits_only_in_columns_no_rule_reads_and_is_counted(lte):
    raw = _text(LTE, "latin-1")
    cells = raw.apply(lambda column: column.str.strip())
    errors, blanks = cells.eq("#¡VALOR!").sum(), cells.eq("").sum()
    assert (int(errors.sum()), int(blanks.sum())) == (84, 183)
    dirty = set(errors.index[errors > 0]) | set(blanks.index[blanks > 0])
    assert dirty == {"maxUE_DL", "maxUE_UL", "maxUE_UL+DL"}
    assert (
        "file: 84 error values (#¡VALOR!) in columns no rule reads (maxUE_UL+DL 84); left alone"
        in lte.warnings
    )
    assert (
        "file: 183 blank cells in columns no rule reads (maxUE_DL 89, maxUE_UL 89, "
        "maxUE_UL+DL 5); left alone" in lte.warnings
    )


def test_lte_cells_are_one_row_per_cell_name(lte, home):
    names = _text(LTE, "latin-1")["CellName"].str.strip()
    assert _counts(lte, "cells") == (33, 33, 0)
    assert names.nunique() == 33
    assert sorted(OfflineStore(home).read("cells")["cell_id"]) == sorted(names.unique())
    assert "cells: 36871 rows equal to an earlier row in every mapped column folded into it " in (
        " ".join(lte.warnings)
    )


def test_lte_telemetry_keeps_every_sample_at_its_clock_time_on_synthetic_days(lte, home):
    raw = _text(LTE, "latin-1")
    kpis = raw[["PRBUsageDL", "meanThr_DL", "meanUE_DL"]].apply(pd.to_numeric, errors="coerce")
    out_of_range = kpis.isna().any(axis=1) | (kpis["PRBUsageDL"] > 100) | (kpis < 0).any(axis=1)
    assert int(out_of_range.sum()) == 0
    assert _counts(lte, "cell_telemetry") == (36904, 36904, 0)

    telemetry = OfflineStore(home).read("cell_telemetry")
    assert not telemetry.duplicated(["cell_id", "ts"]).any()
    assert telemetry["ts"].dt.normalize().nunique() == 15
    clock = telemetry["ts"].dt.strftime("%H:%M").str.lstrip("0").replace("", "0")
    pairs = pd.Series(list(zip(telemetry["cell_id"], clock, strict=True))).value_counts()
    raw_clock = pd.to_datetime(raw["Time"], format="%H:%M").dt.strftime("%H:%M").str.lstrip("0")
    raw_pairs = pd.Series(list(zip(raw["CellName"], raw_clock.replace("", "0"), strict=True)))
    assert pairs.sort_index().equals(raw_pairs.value_counts().sort_index())
    assert telemetry["throughput_mbps"].sum() == pytest.approx(kpis["meanThr_DL"].sum())
    assert (telemetry["interval_minutes"] == 15).all()


def test_lte_anomaly_labels_keep_the_unusual_rate(lte, home):
    raw = _text(LTE, "latin-1")
    unusual = int(raw["Unusual"].eq("1").sum())
    assert unusual == 10183
    assert _counts(lte, "cell_fault_labels") == (unusual, unusual, 0)
    assert "cell_fault_labels: 26721 rows with Unusual = 0 add no row" in lte.warnings

    store = OfflineStore(home)
    labels = store.read("cell_fault_labels")
    telemetry = store.read("cell_telemetry")
    assert round(len(labels) / len(telemetry) * 100, 1) == 27.6
    assert ((labels["end_at"] - labels["start_at"]) == pd.Timedelta(minutes=15)).all()
    assert set(labels["kind"]) == {"anomaly"}
    starts = set(zip(labels["cell_id"], labels["start_at"], strict=True))
    samples = set(zip(telemetry["cell_id"], telemetry["ts"], strict=True))
    assert starts <= samples


def test_both_imports_flow_on_into_online_features(telco, lte, home):
    """Imported rows become feature rows, Feast views and online values through the services."""
    from datetime import timedelta

    from closedloop.settings import Settings
    from features.online import open_reader
    from features.pipeline import apply_repository, build_features, materialize

    built = build_features(home, AS_OF)
    assert built.customer_rows == 7043  # one snapshot per customer: the file has no days
    assert built.cell_rows > 33 * 24 * 10
    settings = Settings(home=home)
    apply_repository(settings)
    materialize(settings, datetime(2019, 12, 1, tzinfo=UTC), AS_OF + timedelta(days=1), stock=False)

    raw = _text(TELCO).set_index("customerID")
    churn = open_reader(home, "churn_v1")
    row = churn.read("7590-VHVEG", AS_OF)
    assert row.stale_views == []
    assert row.values["mrr"] == float(raw.loc["7590-VHVEG", "MonthlyCharges"])
    assert row.values["contract_type"] == "month_to_month" and row.values["month_to_month"] == 1
    assert row.values["tenure_months"] == float(raw.loc["7590-VHVEG", "tenure"])

    fault = open_reader(home, "fault_v1")
    cell = fault.read("3BLTE", AS_OF)
    assert cell.values["prb_util_6h"] is not None and cell.values["technology"] == "lte"
    assert cell.stale_views == ["cell_health"], "LTE samples are years older than the TTL"
