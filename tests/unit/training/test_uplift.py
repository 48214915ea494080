import numpy as np
import pytest

from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate_truth
from training.registry import Hold
from training.uplift import (
    ARMS,
    UpliftConfig,
    UpliftModel,
    fit_uplift,
    gate,
    held_out_qini,
    qini,
    trial_logs,
)


def test_qini_rewards_a_ranking_that_puts_the_persuadable_first():
    rng = np.random.default_rng(0)
    n = 4_000
    treated = rng.random(n) < 0.5
    persuadable = rng.random(n) < 0.3
    stayed = np.where(treated & persuadable, True, rng.random(n) < 0.5)
    truth_rank = persuadable.astype(float) + rng.random(n) * 0.1
    good, good_auuc = qini(truth_rank, treated, stayed)
    noise, _ = qini(rng.random(n), treated, stayed)
    bad, _ = qini(-truth_rank, treated, stayed)
    assert good > 0.02 > abs(noise) and bad < -0.02
    assert good_auuc > qini(-truth_rank, treated, stayed)[1]


def test_the_gate_wants_every_arm_above_the_bar_and_the_champion_beaten():
    config = UpliftConfig(min_qini=0.0, margin=0.001)
    ok = {"qini_credit": 0.01, "qini_message": 0.02, "qini_offer": 0.005, "qini_mean": 0.0117}
    assert gate(config, ok, None).promote
    assert not gate(config, ok, {"qini_mean": 0.0110}).promote  # within the margin
    assert gate(config, ok, {"qini_mean": 0.005}).promote
    harmful = {**ok, "qini_offer": -0.001}
    decision = gate(config, harmful, None)
    assert not decision.promote and "qini_offer" in decision.reasons[0]
    hold = Hold("mo (0a1b2c3d4e5f)", "audit of the offers", "2026-12-01T12:00:00+00:00")
    held = gate(config, ok, {"qini_mean": 0.005}, hold)
    assert not held.promote and "held by mo (0a1b2c3d4e5f)" in held.reasons[0]


@pytest.fixture(scope="module")
def truth():
    return simulate_truth(WorldConfig(customers=3_000, days=90, seed=21))


def test_the_t_learner_learns_before_its_held_out_trial_and_finds_who_a_message_annoys(truth):
    config = UpliftConfig(trials=3, trees=60, learner="t")
    learn, held = trial_logs(truth, 80, config)
    assert (held.day, learn.day) == (50, 29)  # the held-out trial's outcomes end by day 79
    assert held.day + config.horizon_days == 80
    model = fit_uplift(learn, config)
    metrics = held_out_qini(model, held)
    assert set(metrics) == {*(f"qini_{a}" for a in ARMS), *(f"auuc_{a}" for a in ARMS), "qini_mean"}
    features = held.features
    uplift = model.uplift(features)
    churn = model.churn(features)
    assert ((churn > 0) & (churn < 1)).all()
    assert set(uplift) == set(ARMS)
    # the message's true effect rises with network sensitivity, which outages reveal
    true = 1 - truth.effects.message[held.customer]
    assert np.corrcoef(uplift["message"], true)[0, 1] > 0


def test_trials_that_do_not_fit_before_the_day_are_refused(truth):
    with pytest.raises(ValueError, match="more days"):
        trial_logs(truth, 40, UpliftConfig(trials=4))


def test_the_x_learner_blends_its_effect_models_and_both_learners_survive_a_save(truth, tmp_path):
    config = UpliftConfig(trials=2, trees=30, learner="x")
    learn, held = trial_logs(truth, 80, config)
    model = fit_uplift(learn, config)
    assert set(model.treated_share) == set(ARMS)
    assert all(0.4 < share < 0.6 for share in model.treated_share.values())  # 0.25 vs 0.25
    loaded = UpliftModel.load(model.save(tmp_path / "x"))
    for arm, values in model.uplift(held.features).items():
        assert np.allclose(values, loaded.uplift(held.features)[arm])
    assert loaded.learner == "x" and np.allclose(
        loaded.churn(held.features), model.churn(held.features)
    )


def test_the_ratio_learner_learns_who_leaves_from_every_row_and_each_arm_s_ratio(truth, tmp_path):
    config = UpliftConfig(trials=3)
    assert config.learner == "r"  # the default
    learn, held = trial_logs(truth, 80, config)
    model = fit_uplift(learn, config)
    assert set(model.boosters) == {"control"}  # one classifier, every row of the trial
    uplift = model.uplift(held.features)
    churn = model.churn(held.features)
    # credits and offers lower every customer's hazard in this world: the ratios see it
    assert (uplift["credit"] > 0).all() and (uplift["offer"] > 0).all()
    assert ((churn > 0) & (churn < 1)).all()
    # calibrated: the held-out trial's control rows leave at about the predicted rate
    control = held.arm == -1
    assert churn[control].mean() == pytest.approx(held.left[control].mean(), rel=0.5)
    # the uplift is the churn chance times the arm's effect: it ranks as the churn score
    assert np.corrcoef(uplift["credit"], churn)[0, 1] > 0.99
    loaded = UpliftModel.load(model.save(tmp_path / "r"))
    assert loaded.learner == "r" and loaded.offset == model.offset
    for arm, values in uplift.items():
        assert np.allclose(values, loaded.uplift(held.features)[arm])
