import numpy as np
import pytest

from actions.backtest import (
    CLAIRVOYANT,
    NO_ACTION,
    ORACLE,
    SCORE_ONLY,
    SHIPPED,
    UPLIFT,
    UPSELL,
    UPSELL_ALL,
    UPSELL_ORACLE,
    BacktestError,
    Estimates,
    Window,
    backtest,
    best_within_budget,
    expected_kept,
    unit_costs,
    upgrade_triggers,
)
from actions.policy import ActionType
from closedloop.world.churn import churn_at
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate_truth
from closedloop.world.treatment import KIND, Treatments, left_within, observed, treated_hazard
from closedloop.world.upgrade import accept_chance, mrr_gain

WINDOW = Window(30, 59)


@pytest.fixture(scope="module")
def truth():
    return simulate_truth(WorldConfig(customers=2_000, days=60, seed=11))


@pytest.fixture(scope="module")
def estimates(truth):
    """Churn scores and uplift from the world's own untreated hazard: a stand-in for models."""
    features = observed(truth, WINDOW.start)
    risk = 1 - np.exp(-truth.hazard[:, WINDOW.start : WINDOW.end + 1].sum(axis=1))
    uplift = {
        "credit": risk * (1 - truth.effects.credit) * (features["mrr"] > 0),
        "message": risk * (1 - truth.effects.message),
        "offer": risk * (1 - truth.effects.offer),
    }
    return Estimates(churn=risk, uplift=uplift)


@pytest.fixture(scope="module")
def result(truth, policy, estimates):
    return backtest(truth, policy, WINDOW, estimates, budget=400.0)


def test_every_baseline_is_a_row_and_no_action_costs_and_changes_nothing(result):
    rows = {row.policy: row for row in result.rows}
    assert list(rows) == [NO_ACTION, SHIPPED, SCORE_ONLY, UPLIFT, ORACLE, CLAIRVOYANT]
    nothing = rows[NO_ACTION]
    assert (nothing.cost, nothing.churn_prevented, nothing.contacted, nothing.harmed) == (
        0,
        0,
        0,
        0,
    )
    assert nothing.net_value == 0 and nothing.expected_net_value == 0


def test_the_clairvoyant_is_the_ceiling_and_no_row_overspends(result):
    rows = {row.policy: row for row in result.rows}
    clairvoyant = rows[CLAIRVOYANT]
    for row in result.rows:
        assert row.net_value <= clairvoyant.net_value, row.policy
        assert row.cost <= result.budget + 1e-6, row.policy
        assert row.budget_used <= 1 + 1e-9
        assert row.net_value == pytest.approx(row.revenue_retained - row.cost, abs=0.02)
    assert clairvoyant.churn_prevented > 0 and clairvoyant.harmed == 0


def test_the_oracle_knows_the_true_effects_and_leads_in_expectation(result):
    rows = {row.policy: row for row in result.rows}
    oracle = rows[ORACLE]
    for name in (SCORE_ONLY, UPLIFT, CLAIRVOYANT):
        assert rows[name].expected_net_value <= oracle.expected_net_value, name
    assert oracle.harmed == 0  # it never sends an action that raises the hazard


def test_the_expected_fall_in_leaving_is_what_the_leaving_thresholds_average_to(truth):
    """A customer leaves when the cumulative hazard passes an Exp(1) threshold: redrawn many
    times for customers present at the window's start, the share kept by a treatment is the
    closed form's."""
    present = truth.churn.active(truth.config.days)[:, WINDOW.start]
    who = np.flatnonzero(present)[:300]
    treated = treated_hazard(
        truth.hazard, truth.effects, Treatments.of(who, WINDOW.start, KIND["offer"])
    )
    closed = expected_kept(truth, WINDOW, treated, present)[who].sum()
    before = truth.hazard[:, : WINDOW.start].sum(axis=1)
    rng = np.random.default_rng(0)
    kept = []
    for _ in range(400):
        threshold = before + rng.exponential(1.0, len(before))  # alive at the start
        untreated = left_within(churn_at(truth.hazard, threshold), WINDOW.start, WINDOW.end)
        with_offer = left_within(churn_at(treated, threshold), WINDOW.start, WINDOW.end)
        kept.append((untreated[who] & ~with_offer[who]).sum())
    assert closed > 0
    assert np.mean(kept) == pytest.approx(closed, rel=0.1)


def test_ranking_by_true_uplift_beats_ranking_by_risk(result):
    rows = {row.policy: row for row in result.rows}
    assert rows[UPLIFT].net_value > rows[SCORE_ONLY].net_value


def test_the_default_budget_is_what_the_shipped_policy_spends(truth, policy, estimates):
    result = backtest(truth, policy, WINDOW, estimates)
    shipped = next(row for row in result.rows if row.policy == SHIPPED)
    assert result.budget > 0 and shipped.cost == pytest.approx(result.budget)
    nothing = backtest(truth, policy, WINDOW, estimates, budget=0.0)
    assert all(row.cost == 0 and row.contacted == 0 for row in nothing.rows)


def test_a_bad_window_budget_or_score_count_is_a_clear_error(truth, policy, estimates):
    with pytest.raises(BacktestError, match="must lie within"):
        Window.parse("2026-01-10..2026-04-30", truth.config.start, truth.config.days)
    with pytest.raises(BacktestError, match=r"START\.\.END"):
        Window.parse("last month", truth.config.start, truth.config.days)
    assert Window.parse("2026-01-31..2026-03-01", truth.config.start, 60) == Window(30, 59)
    with pytest.raises(BacktestError, match="negative"):
        backtest(truth, policy, WINDOW, estimates, budget=-1.0)
    with pytest.raises(BacktestError, match="churn scores"):
        backtest(truth, policy, WINDOW, Estimates(churn=np.zeros(3)))


def test_unit_costs_come_from_the_policy_rules_and_costs(policy):
    mrr = np.array([10.0, 200.0])
    costs = unit_costs(policy, mrr)
    contact = policy.costs.contact
    assert costs[ActionType.CUSTOMER_MESSAGE].tolist() == [contact, contact]
    assert costs[ActionType.BILL_CREDIT].tolist() == [1 + contact, 20 + contact]  # 10 % of MRR
    offer = 0.10 * mrr * policy.costs.offer_months + contact
    assert costs[ActionType.RETENTION_OFFER].tolist() == pytest.approx(offer.tolist())


def test_best_within_budget_takes_the_best_sum_of_net_gains_that_fits():
    net = {
        ActionType.CUSTOMER_MESSAGE: np.array([5.0, -1.0, 2.0, 9.0]),
        ActionType.BILL_CREDIT: np.array([1.0, -2.0, 4.0, 3.0]),
    }
    cost = {
        ActionType.CUSTOMER_MESSAGE: np.array([1.0, 1.0, 1.0, 8.0]),
        ActionType.BILL_CREDIT: np.array([1.0, 1.0, 2.0, 1.0]),
    }
    eligible = np.array([True, True, True, True])
    plan = best_within_budget(net, cost, eligible, budget=4.0, day=3)
    # 3's message (gain 9) costs 8 and does not fit; its credit (3 for 1) does; 1 loses money
    assert plan.customer.tolist() == [0, 2, 3]
    assert plan.action.tolist() == ["customer_message", "bill_credit", "bill_credit"]
    assert plan.cost.sum() <= 4.0 and (plan.day == 3).all()
    assert best_within_budget(net, cost, eligible, 100.0, 3).action.tolist()[-1] == (
        "customer_message"  # with room, 3 takes its best action
    )
    eligible[0] = False
    assert best_within_budget(net, cost, eligible, 4.0, 3).customer.tolist() == [2, 3]
    assert len(best_within_budget(net, cost, eligible, 0.0, 3).customer) == 0


def test_the_value_aware_policy_contacts_only_where_uplift_pays(truth, policy, estimates):
    from pathlib import Path

    from actions.policy import load_policy

    value = load_policy(Path("actions/policies/value.yaml"))
    plain = backtest(truth, policy, WINDOW, estimates, budget=400.0)
    aware = backtest(truth, value, WINDOW, estimates, budget=400.0)
    shipped = {r.policy: r for r in plain.rows}[SHIPPED]
    valued = {r.policy: r for r in aware.rows}[SHIPPED]
    assert valued.contacted < shipped.contacted
    assert valued.net_value > shipped.net_value
    assert valued.cost <= 400.0


def test_a_control_group_is_not_treated_in_the_replay(truth, policy, estimates):
    from actions.policy import Holdout

    held = policy.model_copy(update={"holdout": Holdout(share=0.5)})
    every = {r.policy: r for r in backtest(truth, policy, WINDOW, estimates, 1e9).rows}
    half = {r.policy: r for r in backtest(truth, held, WINDOW, estimates, 1e9).rows}
    assert 0.3 < half[SHIPPED].contacted / every[SHIPPED].contacted < 0.7


@pytest.fixture(scope="module")
def spiky():
    """A small world whose cells spike often enough to trigger upgrade offers."""
    return simulate_truth(WorldConfig(customers=1_000, days=60, seed=3, usage_spike_rate=0.03))


def test_the_upsell_rows_value_the_offers_usage_spikes_trigger(spiky, policy):
    truth = spiky
    risk = 1 - np.exp(-truth.hazard[:, WINDOW.start : WINDOW.end + 1].sum(axis=1))
    upsell = accept_chance(truth, WINDOW.start) * mrr_gain(truth)  # the true chance, a day early
    estimates = Estimates(churn=risk, uplift={"message": risk * 0.01}, upsell=upsell)
    result = backtest(truth, policy, WINDOW, estimates, 400.0)
    rows = {row.policy: row for row in result.upsell}
    assert list(rows) == [UPSELL, UPSELL_ALL, UPSELL_ORACLE]
    who, day = upgrade_triggers(truth, WINDOW)
    assert len(who) == rows[UPSELL_ALL].contacted > 0 and (day >= WINDOW.start).all()
    assert 0 < rows[UPSELL].contacted < rows[UPSELL_ALL].contacted  # the model leaves some out
    oracle = rows[UPSELL_ORACLE].expected_net_value
    assert oracle >= max(rows[UPSELL].expected_net_value, rows[UPSELL_ALL].expected_net_value)
    assert rows[UPSELL_ALL].revenue_retained >= rows[UPSELL].revenue_retained
    assert all(row.churn_prevented == 0 and row.harmed == 0 for row in rows.values())
    assert rows[UPSELL].cost == pytest.approx(10.5 * rows[UPSELL].contacted)
    blind = backtest(truth, policy, WINDOW, Estimates(estimates.churn, estimates.uplift), 400.0)
    assert blind.upsell[0].contacted == 0  # no upsell estimate: no offer
    assert blind.rows == result.rows  # upgrade offers leave the retention rows alone
