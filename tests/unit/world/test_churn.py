import numpy as np

from closedloop.world.churn import action_effects, churn_at, rolling_sum
from closedloop.world.config import WorldConfig
from closedloop.world.inventory import make_cells, make_customers


def test_rolling_sum_counts_the_trailing_window_including_today():
    values = np.array([[1, 2, 3, 4, 5]], dtype=float)
    assert rolling_sum(values, 2).tolist() == [[1, 3, 5, 7, 9]]
    assert rolling_sum(values, 10).tolist() == [[1, 3, 6, 10, 15]]


def test_churn_leaves_on_the_day_cumulative_hazard_crosses():
    hazard = np.zeros((3, 5))
    hazard[0, 2] = 50.0  # certain to leave on day 2
    hazard[2, :] = 1e-9  # all but certain to stay
    churn = churn_at(hazard, np.random.default_rng(0).exponential(1.0, 3))
    assert churn.churned.tolist() == [True, False, False]
    assert churn.day.tolist() == [2, -1, -1]
    assert churn.active(5)[0].tolist() == [True, True, False, False, False]


def test_action_effects_are_heterogeneous_and_bounded():
    config = WorldConfig(customers=5_000)
    cells = make_cells(config, np.random.default_rng(0))
    customers = make_customers(config, cells, np.random.default_rng(1))
    effects = action_effects(customers)
    for ratios in (effects.credit, effects.offer, effects.priority_repair):
        assert (ratios > 0.4).all() and (ratios <= 1.0).all()
        assert ratios.std() > 0.03
    assert (effects.message > 1).any(), "some customers are annoyed by messages"
    sensitive = customers.price_sensitivity > 0.7
    assert effects.credit[sensitive].mean() < effects.credit[~sensitive].mean()
