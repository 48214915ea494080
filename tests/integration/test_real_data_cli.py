"""The shared real CSVs through the CLI alone, as a newcomer runs them: import-csv, features
build and apply, train (read from ../shared/data; a small slice is written to a temp folder)."""

import os
from pathlib import Path

import pandas as pd
import pytest

from tests.cli_run import run_cli

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
TELCO = DATA / "telco-customer-churn-ibm" / "Telco-Customer-Churn.csv"
V11 = DATA / "telco-customer-churn-ibm-v11"
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
    assert "from service churn_telco_customer_churn_ibm_v1 (churn_v1 and the attributes" in out
    assert (
        "split: entity-disjoint, stratified by label, 0.6/0.2/0.2 of the entities "
        "(source telco-customer-churn-ibm has shape: snapshot)" in out
    )
    assert f"snapshots: train {int(ROWS * 0.6):,}, valid {int(ROWS * 0.2):,}" in out
    auc = float(out.split("│ roc_auc")[1].split("│")[1])
    assert 0.75 < auc < 0.95
    assert "3-fold test figures: ROC AUC 0." in out


LEAKS = """    attributes:
      churn_score: {from: Churn Score, type: float}
      customer_status: {from: Customer Status, type: string}
      churn_value: {from: Churn Value, type: int}
"""


def test_v11_answer_giving_columns_are_caught_and_held_until_a_person_promotes(tmp_path):
    """The five files joined by the shipped mapping, plus the answer-giving columns mapped as
    attributes: the gate holds the challenger, naming them, and a person can still promote."""
    folder = tmp_path / "v11"
    folder.mkdir()
    for path in V11.glob("*.csv"):
        text = pd.read_csv(path, dtype=str, keep_default_na=False)
        if path.name == "Telco_customer_churn_services.csv":
            text = text.head(ROWS)
        text.to_csv(folder / path.name, index=False)
    shipped = (MAPPINGS / "telco-customer-churn-ibm-v11.yaml").read_text()
    assert shipped.count("    attributes:\n") == 1
    mapping = tmp_path / "v11-with-leaks.yaml"
    mapping.write_text(shipped.replace("    attributes:\n", LEAKS))
    params = tmp_path / "params.yaml"
    params.write_text("train_churn:\n  split: {folds: 0}\n")
    home = tmp_path / "home"
    imported = _ok(
        run_cli(
            "import-csv", str(folder / "Telco_customer_churn_services.csv"),
            "--mapping", str(mapping), home=home,
        )
    )  # fmt: skip
    assert f"join Telco_customer_churn_population.csv on Zip Code: {ROWS} of {ROWS}" in imported
    _ok(run_cli("features", "build", "--as-of", "2025-01-01", home=home))
    _ok(run_cli("features", "apply", home=home))
    out = _ok(run_cli("train", "churn", "--params", str(params), home=home))
    assert "gate: held" in out
    for leak in ("customer_status", "churn_value"):
        assert f"- {leak} alone separates the label (test ROC AUC 1.0000 >= 0.99)" in out
    assert "closedloop models promote --why" in out
    promoted = _ok(
        run_cli("models", "promote", "churn", "1", "--why", "leak study only", home=home)
    )
    assert "churn version 1 is now the champion (leak study only)" in promoted
