"""Multi-class targets: LightGBM multiclass, its figures, its gate and its leak guard."""

import numpy as np
import pandas as pd
import pytest

from training.config import GateConfig, LightGBMParams
from training.evaluate import evaluate_classes, single_feature_auc
from training.model import ScoringModel
from training.registry import decide, decide_classes
from training.trainer import fit

CLASSES = ["attitude", "competitor", "price", "stayed"]
FAST = LightGBMParams(num_boost_round=200, early_stopping_rounds=20, min_child_samples=10)


def _frame(rows: int, seed: int) -> pd.DataFrame:
    """Each class shows in one feature: price in the charge, competitor in the offer,
    attitude in support calls; stayed is the rest."""
    rng = np.random.default_rng(seed)
    label = rng.choice(4, rows, p=[0.15, 0.2, 0.15, 0.5])
    return pd.DataFrame(
        {
            "charge": rng.normal(60, 10, rows) + 25 * (label == 2),
            "offer": np.where(rng.random(rows) < 0.2 + 0.6 * (label == 1), "A", "B"),
            "calls": rng.poisson(1 + 3 * (label == 0)).astype(float),
            "tenure": rng.uniform(0, 72, rows),
            "label": label,
        }
    )


@pytest.fixture(scope="module")
def fitted():
    train, valid, test = _frame(900, 1), _frame(300, 2), _frame(300, 3)
    features = ["charge", "offer", "calls", "tenure"]
    model, info = fit(train, valid, features, FAST, seed=7, classes=CLASSES)
    prior = np.bincount(train.label, minlength=4) / len(train)
    return model, info, train, test, prior


def test_the_model_answers_a_probability_per_class(fitted, tmp_path):
    model, info, _, test, _ = fitted
    probabilities = model.score(test)
    assert probabilities.shape == (len(test), 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert info["best_iteration"] > 1
    again = ScoringModel.load(model.save(tmp_path / "scoring"))
    assert again.classes == CLASSES
    np.testing.assert_allclose(again.score(test), probabilities)
    contributions = model.matrix_contributions(model.matrix(test.head(3)))
    assert contributions.shape == (3, 4, 4)


def test_figures_beat_the_class_shares_and_name_each_class(fitted):
    model, _, _, test, prior = fitted
    found = evaluate_classes(test.label.to_numpy(), model.score(test), CLASSES, prior)
    metrics = found.metrics
    assert metrics["log_loss"] < metrics["prior_log_loss"] and metrics["log_loss_gain"] > 0.2
    assert 0.5 < metrics["macro_f1"] <= 1 and metrics["accuracy"] > max(prior)
    assert set(found.per_class["class"]) == set(CLASSES)
    assert found.per_class.rows.sum() == len(test)
    assert found.per_class.set_index("class").loc["price", "roc_auc"] > 0.8
    assert found.confusion.to_numpy().sum() == len(test)
    assert metrics["f1_price"] == pytest.approx(found.per_class.f1[2])


def test_no_skill_scores_have_no_log_loss_gain():
    labels = np.array([0, 1, 2, 2])
    prior = np.array([0.25, 0.25, 0.5])
    found = evaluate_classes(labels, np.tile(prior, (4, 1)), ["a", "b", "c"], prior)
    assert found.metrics["log_loss_gain"] == pytest.approx(0.0)


GOOD = {"log_loss": 0.80, "prior_log_loss": 1.10, "log_loss_gain": 0.27, "roc_auc": 0.85}


def test_the_gate_compares_log_loss_lower_is_better():
    assert decide_classes(GateConfig(), GOOD, None).promote
    better = {**GOOD, "log_loss": 0.70}
    assert decide_classes(GateConfig(margin=0.05), better, GOOD).promote
    held = decide_classes(GateConfig(margin=0.05), {**GOOD, "log_loss": 0.78}, GOOD)
    assert not held.promote and "does not beat the champion's 0.8000" in held.reasons[-1]


def test_the_gate_holds_a_challenger_no_better_than_the_class_shares():
    weak = {**GOOD, "log_loss": 1.08, "log_loss_gain": 0.018}
    decision = decide_classes(GateConfig(), weak, None)
    assert not decision.promote
    assert "1.8% below the class shares' 1.1000, short of the bar 5%" in decision.reasons[0]


def test_a_champion_of_other_classes_is_not_compared_and_a_person_decides():
    decision = decide_classes(GateConfig(), GOOD, None, champion_classes=[])
    assert not decision.promote
    assert "the champion answers other classes (the binary event)" in decision.reasons[0]
    binary = {"roc_auc": 0.8, "pr_auc": 0.3, "pr_auc_lift": 6.0}
    held = decide(GateConfig(), binary, None, champion_classes=CLASSES)
    assert not held.promote and "(attitude, competitor, price, stayed)" in held.reasons[0]


def test_the_leak_guard_catches_a_column_that_names_one_class(fitted):
    _, _, train, test, _ = fitted
    leaky = [t.assign(reason=np.where(t.label == 2, "too dear", "-")) for t in (train, test)]
    separation = single_feature_auc(*leaky, ["charge", "reason", "tenure"])
    assert separation["reason"] == pytest.approx(1.0)
    assert separation["tenure"] < 0.7
    metrics = {**GOOD, "roc_auc": 0.9}
    decision = decide_classes(GateConfig(), metrics, None, separation)
    assert not decision.promote and decision.reasons[0].startswith("reason alone separates")
