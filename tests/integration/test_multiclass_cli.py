"""A multi-class target through the CLI alone: a small CSV of churners and their reasons,
imported with a mapping that declares the classes, trained, gated, listed, batch-scored and
monitored."""

import json
from textwrap import dedent

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tests.cli_run import run_cli

MAPPING = """
    name: churn-reasons
    shape: snapshot
    tables:
      customers:
        columns:
          customer_id: {from: Customer ID, type: id}
          segment: {value: consumer}
          mrr: {from: Monthly Charge, type: float}
          tenure_months: {from: Tenure, type: int}
        attributes:
          offer: {from: Offer, type: string}
          support_calls: {from: Support Calls, type: int}
      churn_labels:
        columns:
          customer_id: {from: Customer ID, type: id}
          churned: {from: Churn, type: bool}
          category:
            from: Churn Category
            classes: true
            values: {None: stayed, Competitor: competitor, Price: price, Attitude: attitude}
"""


def _customers(rows: int) -> pd.DataFrame:
    """Each reason shows in one column: price in the charge, competitor in the offer, attitude
    in support calls."""
    rng = np.random.default_rng(3)
    why = rng.choice(["None", "Competitor", "Price", "Attitude"], rows, p=[0.5, 0.2, 0.15, 0.15])
    return pd.DataFrame(
        {
            "Customer ID": [f"c{i:05d}" for i in range(rows)],
            "Monthly Charge": np.round(rng.normal(60, 10, rows) + 30 * (why == "Price"), 2),
            "Tenure": rng.integers(1, 72, rows),
            "Offer": np.where(rng.random(rows) < 0.15 + 0.7 * (why == "Competitor"), "A", "B"),
            "Support Calls": rng.poisson(np.where(why == "Attitude", 4, 1)),
            "Churn": np.where(why == "None", "No", "Yes"),
            "Churn Category": why,
        }
    )


def _ok(result) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_multi_class_target_trains_and_gates_on_log_loss(tmp_path):
    csv, mapping, home = tmp_path / "reasons.csv", tmp_path / "reasons.yaml", tmp_path / "home"
    _customers(600).to_csv(csv, index=False)
    mapping.write_text(dedent(MAPPING))
    params = tmp_path / "params.yaml"
    # a quicker learning rate than snapshot data's default keeps this small test fast
    params.write_text(
        "train_churn:\n  split: {folds: 3}\n  snapshot_lightgbm: {learning_rate: 0.1}\n"
    )
    _ok(run_cli("import-csv", str(csv), "--mapping", str(mapping), home=home))
    _ok(run_cli("features", "build", "--as-of", "2025-01-01", home=home))
    _ok(run_cli("features", "apply", home=home))
    out = _ok(run_cli("train", "churn", "--params", str(params), home=home))
    assert "target: 4 classes of churn_labels.category (churn-reasons)" in out
    assert "3-fold test figures: log loss 0." in out and ", macro-F1 0." in out
    assert "snapshots: train 360, valid 120, test 120; gate: promoted to champion" in out
    figures = json.loads((home / "metrics" / "train_churn.json").read_text())
    assert figures["log_loss"] < figures["prior_log_loss"]
    assert figures["macro_f1"] > 0.4 and figures["f1_price"] > 0.5
    again = _ok(run_cli("train", "churn", "--params", str(params), home=home))
    assert "log_loss" in again and "does not beat the champion's" in again
    assert "(lower is better)" in again

    # monitoring the multi-class champion: each class's probability logged and compared
    _ok(run_cli("monitor-score", "churn", "--end", "2025-01-02", home=home))
    (part,) = (home / "predictions" / "churn").glob("*.parquet")
    logged = pq.read_table(part).to_pandas()
    by_class = [f"probability[{name}]" for name in ("attitude", "competitor", "price", "stayed")]
    assert np.allclose(logged[by_class].sum(axis=1), 1)
    assert np.allclose(logged["probability"], logged[by_class].max(axis=1))
    watched = _ok(run_cli("monitor", "churn", "--end", "2025-01-02", home=home))
    assert "labelled rows: 600 in 4 classes" in watched and "macro_f1" in watched
    (summary,) = (home / "monitoring" / "churn").glob("*/summary.json")
    found = json.loads(summary.read_text())
    assert [c["column"] for c in found["drift"]["classes"]] == by_class
    performance = found["performance"]
    assert performance["metric"] == "macro_f1" and performance["below_floor"] is False
    assert performance["metrics"]["log_loss"] < performance["metrics"]["prior_log_loss"]


def test_a_class_the_mapping_does_not_list_stops_the_import_naming_it(tmp_path):
    csv, mapping = tmp_path / "reasons.csv", tmp_path / "reasons.yaml"
    _customers(50).to_csv(csv, index=False)
    mapping.write_text(dedent(MAPPING).replace(", Attitude: attitude", ""))
    result = run_cli("import-csv", str(csv), "--mapping", str(mapping), home=tmp_path / "home")
    assert result.returncode == 2
    assert "the classes 'Attitude' of Churn Category are not mapped" in result.stderr
    assert not (tmp_path / "home" / "offline").exists()
