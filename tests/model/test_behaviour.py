"""Model behaviour (Made-With-ML's kind): direction, invariance and minimum functionality of
the churn and fault champions trained on a small world."""

import numpy as np
import pytest

from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from training.config import LightGBMParams, churn_defaults, fault_defaults
from training.pipeline import train, training_set

CONFIG = WorldConfig(customers=2_000, days=63, seed=5, customers_per_cell=50)
FAST = LightGBMParams(num_boost_round=150, early_stopping_rounds=20)


@pytest.fixture(scope="module")
def settings(tmp_path_factory, prepare) -> Settings:
    return prepare(tmp_path_factory.mktemp("behaviour"), CONFIG)


@pytest.fixture(scope="module")
def churn(settings):
    outcome = train(settings, "churn", churn_defaults().model_copy(update={"lightgbm": FAST}))
    assert outcome.decision.promote, outcome.decision.reasons
    return outcome


@pytest.fixture(scope="module")
def champion(settings, churn):
    import mlflow

    model = mlflow.pyfunc.load_model("models:/churn@champion")
    scoring = model.unwrap_python_model().model
    data = training_set(settings, "churn", churn_defaults())
    return model, scoring, data


def test_pyfunc_and_direct_scoring_agree(champion):
    model, scoring, data = champion
    sample = data.head(200)
    np.testing.assert_allclose(
        model.predict(sample[scoring.features]), scoring.score(sample), atol=1e-12
    )


def test_more_outage_minutes_never_lower_churn_risk(champion):
    _, scoring, data = champion
    sample = data.sample(200, random_state=0)
    base = scoring.score(sample)
    for column in ("outage_minutes_1d", "outage_minutes_7d", "outage_minutes_30d"):
        worse = sample.assign(**{column: sample[column] + 600})
        assert (scoring.score(worse) >= base - 1e-12).all(), column


def test_customer_id_has_no_effect(champion):
    _, scoring, data = champion
    sample = data.head(100)
    renamed = sample.assign(customer_id=[f"other_{i}" for i in range(len(sample))])
    np.testing.assert_array_equal(scoring.score(sample), scoring.score(renamed))


def test_minimum_functionality_on_hand_made_customers(champion):
    _, scoring, data = champion
    calm = data.iloc[[0]].assign(
        outage_minutes_1d=0.0, outage_minutes_7d=0.0, outage_minutes_30d=0.0,
        degraded_minutes_7d=0.0, degraded_minutes_30d=0.0, complaints_30d=0.0,
        late_invoices_90d=0.0, failed_sessions_7d=0.0, failed_sessions_30d=0.0,
    )  # fmt: skip
    angry = calm.assign(
        outage_minutes_1d=300.0, outage_minutes_7d=900.0, outage_minutes_30d=1_500.0,
        degraded_minutes_7d=600.0, degraded_minutes_30d=1_200.0, complaints_30d=3.0,
        late_invoices_90d=2.0, failed_sessions_7d=40.0, failed_sessions_30d=80.0,
    )  # fmt: skip
    assert scoring.score(angry)[0] > scoring.score(calm)[0]


def test_fault_model_trains_and_worse_trends_never_lower_fault_risk(settings):
    config = fault_defaults().model_copy(update={"lightgbm": FAST})
    outcome = train(settings, "fault", config)
    assert outcome.metrics["roc_auc"] > 0.6
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/fault/{outcome.version}").unwrap_python_model().model
    data = training_set(settings, "fault", config).sample(200, random_state=0)
    base = model.score(data)
    for column in ("loss_trend_6h", "prb_trend_6h"):
        worse = data.assign(**{column: data[column].fillna(0) + 20})
        assert (
            model.score(worse)
            >= model.score(data.assign(**{column: data[column].fillna(0)})) - 1e-12
        ).all()
    assert base.shape == (200,)
