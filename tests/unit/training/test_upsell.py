"""The upsell model: a classifier of who accepts an upgrade offer, learned from logged offers."""

import numpy as np
import pytest

from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate_truth
from closedloop.world.upgrade import accept_chance, upsell_observed
from training.upsell import (
    UpsellConfig,
    UpsellModel,
    fit_upsell,
    gate,
    held_out_metrics,
    offer_logs,
)

CONFIG = UpsellConfig(trees=60)


@pytest.fixture(scope="module")
def truth():
    return simulate_truth(WorldConfig(customers=3_000, days=60, seed=8))


def test_it_learns_before_its_held_out_day_who_accepts(truth, tmp_path):
    learn, held = offer_logs(truth, 50, CONFIG)
    assert held.day == 49 and learn.day == 49 - 4 * CONFIG.offer_every_days
    model = fit_upsell(learn, CONFIG)
    metrics = held_out_metrics(model, held)
    assert metrics["roc_auc"] > 0.7
    features = upsell_observed(truth, 50)
    truth_chance = accept_chance(truth, 50)
    ok = truth_chance > 0
    assert np.corrcoef(model.chance(features)[ok], truth_chance[ok])[0, 1] > 0.5
    gain = model.expected_gain(features)
    assert (gain[~ok] == 0).all() and (gain >= 0).all()
    again = UpsellModel.load(model.save(tmp_path / "upsell"))
    assert np.allclose(again.chance(features), model.chance(features))


def test_offer_days_that_do_not_fit_before_the_day_are_refused(truth):
    with pytest.raises(ValueError, match="more days before day 20"):
        offer_logs(truth, 20, CONFIG)


def test_the_gate_wants_the_bar_and_the_champion_beaten():
    assert gate(CONFIG, {"roc_auc": 0.8}, None).promote
    assert not gate(CONFIG, {"roc_auc": 0.55}, None).promote
    assert not gate(CONFIG, {"roc_auc": 0.8}, {"roc_auc": 0.81}).promote
    assert gate(CONFIG, {"roc_auc": 0.82}, {"roc_auc": 0.81}).promote
