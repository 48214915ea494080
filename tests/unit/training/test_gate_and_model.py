import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from training.config import GateConfig, LightGBMParams, TuneConfig
from training.evaluate import evaluate, single_feature_auc
from training.registry import Hold, decide
from training.trainer import fit
from training.tuning import search

GOOD = {"roc_auc": 0.80, "pr_auc": 0.30, "pr_auc_lift": 6.0}


def test_gate_promotes_the_first_model_that_meets_the_bars():
    decision = decide(GateConfig(), GOOD, None)
    assert decision.promote and decision.reasons == ["there is no champion yet"]


@pytest.mark.parametrize(
    ("challenger_pr", "margin", "promote"),
    [(0.35, 0.01, True), (0.30, 0.0, False), (0.305, 0.01, False), (0.25, 0.0, False)],
    ids=["wins", "ties", "wins-by-less-than-margin", "loses"],
)
def test_gate_needs_the_challenger_to_win_by_the_margin(challenger_pr, margin, promote):
    challenger = {**GOOD, "pr_auc": challenger_pr}
    decision = decide(GateConfig(margin=margin), challenger, GOOD)
    assert decision.promote is promote
    assert ("beats" if promote else "does not beat") in decision.reasons[-1]


def test_gate_holds_a_winner_below_the_quality_bars():
    weak = {"roc_auc": 0.55, "pr_auc": 0.5, "pr_auc_lift": 1.1}
    decision = decide(GateConfig(), weak, {**GOOD, "pr_auc": 0.1})
    assert not decision.promote
    assert any("roc_auc 0.5500 is below" in r for r in decision.reasons)
    assert any("below the bar 1.5x" in r for r in decision.reasons)


def test_evaluation_reads_perfect_and_random_scores_right():
    labels = np.array([0] * 90 + [1] * 10)
    perfect = evaluate(labels, labels * 0.9 + 0.05, budget=10)
    assert perfect.metrics["roc_auc"] == 1.0 and perfect.metrics["precision_at_budget"] == 1.0
    assert perfect.lift.lift.iloc[0] == pytest.approx(10.0)
    flat = evaluate(labels, np.full(100, 0.1), budget=10)
    assert flat.metrics["roc_auc"] == 0.5


def _synthetic(n, seed):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "outage": rng.exponential(30, n),
            "tenure": rng.uniform(0, 60, n),
            "plan": rng.choice(["a", "b"], n),
        }
    )
    logit = -2.5 + 0.04 * frame.outage - 0.06 * frame.tenure + (frame.plan == "b") * 1.0
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def test_fit_learns_calibrates_and_respects_monotone_features():
    train, valid, test = _synthetic(6000, 1), _synthetic(3000, 2), _synthetic(3000, 3)
    params = LightGBMParams(num_boost_round=200)
    model, info = fit(
        train, valid, ["outage", "tenure", "plan"], params, seed=1, increasing=("outage",)
    )
    scores = model.score(test)
    assert evaluate(test.label.to_numpy(), scores, 100).metrics["roc_auc"] > 0.7
    assert abs(scores.mean() - test.label.mean()) < 0.02, "calibrated to the observed rate"
    grid = pd.DataFrame({"outage": np.linspace(0, 300, 50), "tenure": 10.0, "plan": "a"})
    assert (np.diff(model.raw_scores(grid)) >= -1e-12).all()
    assert info["best_iteration"] >= 1


def test_a_window_with_one_class_is_refused():
    train = _synthetic(500, 1).assign(label=0)
    with pytest.raises(ValueError, match="only one class"):
        fit(train, _synthetic(500, 2), ["outage"], LightGBMParams(), seed=1)


def test_optuna_search_returns_its_best_trial_within_the_search_space():
    train, valid = _synthetic(3000, 1), _synthetic(1500, 2)
    base = LightGBMParams(num_boost_round=60, early_stopping_rounds=10)
    found = search(train, valid, ["outage", "tenure", "plan"], base, TuneConfig(trials=4), seed=3)
    assert found.trials == 4
    assert 0.01 <= found.params.learning_rate <= 0.2 and 8 <= found.params.num_leaves <= 128
    assert found.params.num_boost_round == 60, "knobs outside the search keep their base value"
    again = search(train, valid, ["outage", "tenure", "plan"], base, TuneConfig(trials=4), seed=3)
    assert again.params == found.params, "a seeded search is reproducible"
    model, _ = fit(train, valid, ["outage", "tenure", "plan"], found.params, seed=3)
    refit = average_precision_score(valid.label, model.raw_scores(valid))
    assert refit == pytest.approx(found.valid_pr_auc), "the reported score is the chosen fit's"


def test_the_leak_guard_holds_a_feature_that_gives_the_answer_away():
    rng = np.random.default_rng(0)
    n = 2000
    label = (rng.random(n) < 0.3).astype(int)
    frame = pd.DataFrame(
        {
            "label": label,
            "honest": rng.normal(size=n) + label * 0.8,
            "score_from_the_future": label * 50 + rng.uniform(0, 10, n),
            "status": np.where(label == 1, "Churned", rng.choice(["Stayed", "Joined"], n)),
        }
    )
    train, test = frame.iloc[:1000], frame.iloc[1000:]
    separation = single_feature_auc(train, test, ["honest", "score_from_the_future", "status"])
    assert 0.6 < separation["honest"] < 0.8
    assert separation["score_from_the_future"] == 1.0 and separation["status"] == 1.0
    decision = decide(GateConfig(), GOOD, None, separation)
    assert not decision.promote
    held = [r for r in decision.reasons if "alone separates the label" in r]
    assert len(held) == 2 and all("closedloop models promote --why" in r for r in held)
    assert decide(GateConfig(), GOOD, None, {"honest": separation["honest"]}).promote


def test_the_leak_guard_holds_an_implausibly_perfect_score():
    decision = decide(GateConfig(), {**GOOD, "roc_auc": 0.999}, None)
    assert not decision.promote
    assert decision.reasons[0].startswith("test roc_auc 0.9990 >= 0.995 is implausibly perfect")


def test_a_held_champion_is_never_replaced_by_the_gate():
    hold = Hold("mo (0a1b2c3d4e5f)", "quarter-end freeze", "2026-12-01T12:00:00+00:00")
    decision = decide(GateConfig(), {**GOOD, "pr_auc": GOOD["pr_auc"] + 0.2}, GOOD, hold=hold)
    assert not decision.promote
    assert decision.reasons[0].startswith("the champion is held by mo (0a1b2c3d4e5f) since")
    assert "quarter-end freeze" in decision.reasons[0]
    assert decide(GateConfig(), {**GOOD, "pr_auc": GOOD["pr_auc"] + 0.2}, GOOD).promote
