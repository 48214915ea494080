"""Training end to end on a small world: Feast training sets, MLflow registry, gate, behaviour."""

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from access_kit import make_key
from mlflow import MlflowClient
from typer.testing import CliRunner

from actions.backends import open_ledger
from closedloop.cli import app
from closedloop.settings import Settings
from closedloop.terminal import UserError
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


def test_a_model_owner_holds_the_champion_and_the_gate_then_promotes_nothing(settings, churn):
    """Hold and release by role at the CLI, audited with the principal; while held, a
    challenger the gate would take is not promoted, nor may one be promoted by hand, but the
    model owner may still roll back."""
    config, first, again = churn
    registry.promote_by_hand("churn", again.version, "the newer one", by="ops-lead")
    roles = ("viewer", "data_scientist", "model_owner")
    keys = {role: make_key(settings, role, f"{role}-person") for role in roles}

    def champion() -> str:
        return str(MlflowClient().get_model_version_by_alias("churn", "champion").version)

    def cli(*args: str, role: str):
        env = {"CLOSEDLOOP_API_KEY": keys[role]}
        return CliRunner().invoke(app, ["--home", str(settings.home), *args], env=env)

    for role in ("viewer", "data_scientist"):
        refused = cli("models", "hold", "churn", "--why", "mine", role=role)
        assert isinstance(refused.exception, UserError), refused.output
        assert f"role {role} may not hold" in str(refused.exception)
    assert registry.hold_of("churn") is None
    held = cli("models", "hold", "churn", "--why", "quarter-end freeze", role="model_owner")
    assert held.exit_code == 0, held.output
    assert registry.hold_of("churn").by.startswith("model_owner-person (")

    before = champion()
    eager = config.model_copy(update={"gate": config.gate.model_copy(update={"margin": -1.0})})
    retrained = train(settings, "churn", eager)  # would win by any margin
    assert not retrained.decision.promote and champion() == before
    assert retrained.decision.reasons[0].startswith("the champion is held by model_owner-person")
    by_hand = cli(
        "models", "promote", "churn", retrained.version, "--why", "x", role="data_scientist"
    )
    assert "is held by model_owner-person" in str(by_hand.exception) and champion() == before
    back = cli("models", "promote", "churn", first.version, "--why", "back", role="model_owner")
    assert back.exit_code == 0, back.output
    assert champion() == first.version

    refused = cli("models", "release", "churn", "--why", "go", role="data_scientist")
    assert "may not hold" in str(refused.exception)
    released = cli("models", "release", "churn", "--why", "freeze over", role="model_owner")
    assert released.exit_code == 0 and registry.hold_of("churn") is None
    again_released = cli("models", "release", "churn", "--why", "twice", role="model_owner")
    assert "is not held" in str(again_released.exception)
    ledger = open_ledger(settings)
    rows = ledger.read().rows("SELECT kind, payload FROM audit WHERE key = 'model:churn'")
    ledger.close()
    changes = [(r["kind"], json.loads(r["payload"])) for r in rows]
    assert [(k, p.get("held"), p.get("why")) for k, p in changes] == [
        ("hold", True, "quarter-end freeze"), ("promotion", None, "back"),
        ("hold", False, "freeze over"),
    ]  # fmt: skip
    assert {p["by"].split(" (")[0] for _, p in changes} == {"model_owner-person"}
