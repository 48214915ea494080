import numpy as np
import pytest

from closedloop.world.churn import EFFECT_DAYS
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate, simulate_truth
from closedloop.world.treatment import (
    KIND,
    OBSERVED,
    Treatments,
    observed,
    randomised_log,
    resimulate,
    treated_hazard,
)


@pytest.fixture(scope="module")
def truth():
    return simulate_truth(WorldConfig(customers=1_500, days=60, seed=5))


def test_no_treatment_reproduces_the_untreated_world_exactly(truth):
    again = resimulate(truth, Treatments.none())
    assert (again.churned == truth.churn.churned).all() and (again.day == truth.churn.day).all()
    world = simulate(WorldConfig(customers=1_500, days=60, seed=5))
    assert world.summary.churned == int(truth.churn.churned.sum())


def test_a_treatment_scales_the_hazard_for_its_effect_days_only(truth):
    who = 7
    kind = KIND["message"]
    hazard = treated_hazard(truth.hazard, truth.effects, Treatments.of([who, who], [10, 15], kind))
    ratio = hazard[who] / truth.hazard[who]
    expected = np.ones(truth.config.days)
    expected[10 : 15 + EFFECT_DAYS] = truth.effects.message[who]  # a repeat does not compound
    assert np.allclose(ratio, expected)
    others = np.arange(len(truth.customers)) != who
    assert (hazard[others] == truth.hazard[others]).all()


def test_actions_that_lower_the_hazard_never_make_anyone_leave_sooner(truth):
    everyone = np.arange(len(truth.customers))
    credited = resimulate(truth, Treatments.of(everyone, 0, KIND["credit"]))
    stays = np.where(credited.churned, credited.day, 10**6)
    before = np.where(truth.churn.churned, truth.churn.day, 10**6)
    assert (stays >= before).all() and credited.churned.sum() < truth.churn.churned.sum()


def test_a_treatment_outside_the_world_is_refused(truth):
    with pytest.raises(ValueError, match="outside"):
        treated_hazard(truth.hazard, truth.effects, Treatments.of([0], truth.config.days, 0))


def test_observed_features_hold_nothing_only_the_simulator_knows(truth):
    features = observed(truth, 30)
    assert list(features.columns) == list(OBSERVED)
    assert not {"price_sensitivity", "network_sensitivity", "financial_stress"} & set(OBSERVED)
    assert not [c for c in OBSERVED if c.startswith("hr_")]
    assert features.notna().all().all() and len(features) == len(truth.customers)
    with pytest.raises(ValueError, match="outside"):
        observed(truth, 0)


def test_a_randomised_log_holds_out_its_share_and_draws_the_same_arms_again(truth):
    log = randomised_log(truth, 20, 30, (KIND["credit"], KIND["offer"]), 0.3, seed=1)
    assert set(np.unique(log.arm)) == {-1, KIND["credit"], KIND["offer"]}
    assert abs((log.arm == -1).mean() - 0.3) < 0.05
    assert truth.churn.active(truth.config.days)[log.customer, 20].all()
    again = randomised_log(truth, 20, 30, (KIND["credit"], KIND["offer"]), 0.3, seed=1)
    assert (again.arm == log.arm).all() and (again.left == log.left).all()
    control = log.arm == -1
    untreated_left = truth.churn.churned & (truth.churn.day >= 20) & (truth.churn.day < 50)
    assert (log.left[control] == untreated_left[log.customer[control]]).all()
