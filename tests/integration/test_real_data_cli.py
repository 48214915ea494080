"""The shared real CSVs through the CLI alone, as a newcomer runs them: import-csv, features
build and apply, train (read from ../shared/data; a small slice is written to a temp folder)."""

import os
from pathlib import Path

import pandas as pd
import pytest

from tests.cli_run import run_cli

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
TELCO = DATA / "telco-customer-churn-ibm" / "Telco-Customer-Churn.csv"
MAPPINGS = Path(__file__).parents[2] / "features" / "mappings"
ROWS = 2000  # a slice of the file: enough for both classes in every fold

pytestmark = pytest.mark.skipif(
    not TELCO.is_file() and not os.environ.get("CI"),
    reason="the shared real CSVs are not beside this checkout (CI always has them)",
)


def _ok(result) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_telco_snapshot_trains_through_the_cli_with_an_entity_split(tmp_path):
    csv = tmp_path / "telco.csv"
    pd.read_csv(TELCO, dtype=str, keep_default_na=False).head(ROWS).to_csv(csv, index=False)
    params = tmp_path / "params.yaml"
    params.write_text("train_churn:\n  split: {folds: 3}\n")
    home = tmp_path / "home"
    mapping = str(MAPPINGS / "telco-customer-churn-ibm.yaml")
    _ok(run_cli("import-csv", str(csv), "--mapping", mapping, home=home))
    _ok(run_cli("features", "build", "--as-of", "2025-01-01", home=home))
    _ok(run_cli("features", "apply", home=home))
    out = _ok(run_cli("train", "churn", "--params", str(params), home=home))
    assert (
        "split: entity-disjoint, stratified by label, 0.6/0.2/0.2 of the entities "
        "(source telco-customer-churn-ibm has shape: snapshot)" in out
    )
    assert f"snapshots: train {int(ROWS * 0.6):,}, valid {int(ROWS * 0.2):,}" in out
    auc = float(out.split("│ roc_auc")[1].split("│")[1])
    assert 0.75 < auc < 0.95
    assert "3-fold test figures: ROC AUC 0." in out
