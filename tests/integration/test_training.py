"""Training end to end on a small world: Feast training sets, MLflow registry, gate, behaviour."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from mlflow import MlflowClient

from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from training import registry
from training.config import LightGBMParams, churn_defaults
from training.pipeline import train, training_set

CONFIG = WorldConfig(customers=2_000, days=63, seed=5, customers_per_cell=50)
END = datetime(2026, 3, 5, tzinfo=UTC)
FAST = LightGBMParams(num_boost_round=150, early_stopping_rounds=20)


@pytest.fixture(scope="module")
def settings(tmp_path_factory, prepare) -> Settings:
    return prepare(tmp_path_factory.mktemp("training"), CONFIG)


@pytest.fixture(scope="module")
def churn(settings):
    config = churn_defaults().model_copy(update={"lightgbm": FAST})
    first = train(settings, "churn", config)
    again = train(settings, "churn", config)
    return config, first, again


def test_training_set_is_point_in_time_and_labelled(settings):
    data = training_set(settings, "churn", churn_defaults())
    assert {"customer_id", "event_timestamp", "label", "outage_minutes_30d"} <= set(data.columns)
    assert 0 < data.label.mean() < 0.2
    stamps = pd.read_parquet(settings.home / "features/customer_daily.parquet").event_timestamp
    assert data.event_timestamp.max() + timedelta(days=30) <= stamps.max()


def test_first_model_becomes_champion_and_an_equal_retrain_is_held(churn):
    _, first, again = churn
    assert first.decision.promote and first.decision.reasons == ["there is no champion yet"]
    assert not again.decision.promote and "does not beat" in again.decision.reasons[-1]
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("churn", "champion").version) == first.version
    assert client.get_model_version("churn", again.version).tags["gate"] == "held"


def test_run_records_what_reproduces_and_explains_it(churn):
    _, first, _ = churn
    run = MlflowClient().get_run(first.run_id)
    assert run.data.tags["feature_service"] == "churn_v1"
    assert run.data.tags["git_commit"] and run.data.tags["data_fingerprint"]
    assert run.data.params["horizon_hours"] == "720"
    assert {"test_roc_auc", "test_pr_auc", "test_brier", "test_precision_at_budget"} <= set(
        run.data.metrics
    )
    artifacts = {a.path for a in MlflowClient().list_artifacts(first.run_id, "evaluation")}
    for name in (
        "calibration.png",
        "lift.png",
        "feature_importance.png",
        "shap_summary.png",
        "gate.json",
        "segments.csv",
    ):
        assert f"evaluation/{name}" in artifacts
    assert first.metrics["roc_auc"] > 0.6


def test_manual_promotion_is_recorded_with_who_and_why(churn):
    _, _, again = churn
    registry.promote_by_hand("churn", again.version, "pilot in region east", by="ops-lead")
    version = MlflowClient().get_model_version("churn", again.version)
    assert "champion" in MlflowClient().get_registered_model("churn").aliases
    assert (version.tags["promoted_by"], version.tags["promoted_why"]) == (
        "ops-lead",
        "pilot in region east",
    )
