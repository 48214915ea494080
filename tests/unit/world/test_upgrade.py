"""The world's upgrade truth: who accepts an upgrade offer, and the MRR it adds."""

import numpy as np
import pytest

from closedloop.world import catalog
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate_truth
from closedloop.world.upgrade import (
    NEXT_PLAN,
    USAGE_SIGNALS,
    accept_chance,
    accepts,
    can_upgrade,
    mrr_gain,
    offer_log,
    usage_signals,
)

DAY = 40


@pytest.fixture(scope="module")
def truth():
    return simulate_truth(WorldConfig(customers=2_000, days=60, seed=5))


def test_the_next_plan_is_dearer_and_in_the_same_segment():
    for plan, up in enumerate(NEXT_PLAN):
        if up >= 0:
            assert catalog.PLANS[up].segment == catalog.PLANS[plan].segment
            assert catalog.PLANS[up].list_price > catalog.PLANS[plan].list_price
    tops = {p.name for p, up in zip(catalog.PLANS, NEXT_PLAN, strict=True) if up < 0}
    assert tops == {"mobile-unlimited", "business-premium", "enterprise-dedicated"}


def test_an_upgrade_adds_mrr_except_on_the_top_plan(truth):
    gain, top = mrr_gain(truth), NEXT_PLAN[truth.customers.plan] < 0
    assert (gain[top] == 0).all() and (gain[~top] > 0).all()
    chance = accept_chance(truth, DAY)
    assert (chance[top] == 0).all() and ((chance[~top] > 0) & (chance[~top] < 1)).all()


def test_heavier_data_use_against_the_plan_makes_an_upgrade_likelier(truth):
    usage, chance = usage_signals(truth, DAY), accept_chance(truth, DAY)
    assert list(usage.columns) == list(USAGE_SIGNALS)
    ok = NEXT_PLAN[truth.customers.plan] >= 0
    heavy = usage["data_30d_vs_plan"].to_numpy() > np.median(usage["data_30d_vs_plan"][ok])
    assert chance[ok & heavy].mean() > 2 * chance[ok & ~heavy].mean()


def test_who_accepts_is_fixed_by_the_seed_and_follows_the_true_chance(truth):
    again = simulate_truth(WorldConfig(customers=2_000, days=60, seed=5))
    assert (accepts(truth, DAY) == accepts(again, DAY)).all()
    days = range(20, 60)
    taken = np.mean([accepts(truth, d).mean() for d in days])
    expected = np.mean([accept_chance(truth, d).mean() for d in days])
    assert taken == pytest.approx(expected, rel=0.1)


def test_an_offer_log_offers_its_share_of_the_customers_who_can_upgrade(truth):
    log = offer_log(truth, DAY, 0.3, seed=1)
    upgradable = can_upgrade(truth, DAY)
    assert upgradable[log.customer].all()
    assert len(log.customer) == pytest.approx(0.3 * upgradable.sum(), rel=0.15)
    assert (log.accepted == accepts(truth, DAY)[log.customer]).all()
    assert set(USAGE_SIGNALS) <= set(log.features.columns)
    assert not {"appetite", "price_sensitivity"} & set(log.features.columns)
    with pytest.raises(ValueError, match="share"):
        offer_log(truth, DAY, 0, seed=1)
