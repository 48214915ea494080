import numpy as np

from closedloop.world import catalog
from closedloop.world.config import WorldConfig
from closedloop.world.inventory import make_cells, make_customers, sample_rows


def test_sample_rows_follows_each_groups_probabilities():
    rng = np.random.default_rng(0)
    probs = np.array([[1.0, 0.0, 0.0], [0.0, 0.25, 0.75]])
    group = np.repeat([0, 1], 20_000)
    drawn = sample_rows(rng, probs, group)
    assert set(drawn[group == 0]) == {0}
    assert 0 not in drawn[group == 1]
    assert abs((drawn[group == 1] == 2).mean() - 0.75) < 0.02


def _inventory(customers=20_000, seed=3):
    config = WorldConfig(customers=customers, seed=seed)
    cells = make_cells(config, np.random.default_rng(seed))
    return cells, make_customers(config, cells, np.random.default_rng(seed + 1))


def test_every_region_has_cells_and_both_vendors_appear():
    cells, _ = _inventory()
    assert set(cells.region) == set(range(len(catalog.REGIONS)))
    assert set(cells.vendor) == {0, 1}


def test_customers_are_served_by_a_cell_of_their_region():
    cells, customers = _inventory()
    assert np.array_equal(cells.region[customers.cell], customers.region)


def test_sla_tiers_fit_segments():
    _, customers = _inventory()
    consumer = customers.segment == catalog.SEGMENTS.index("consumer")
    enterprise = customers.segment == catalog.SEGMENTS.index("enterprise")
    assert customers.sla[consumer].max() <= catalog.SLA_TIERS.index("silver")
    assert customers.sla[enterprise].min() >= catalog.SLA_TIERS.index("silver")


def test_revenue_is_heavy_tailed():
    _, customers = _inventory()
    consumer = customers.mrr[customers.segment == 0]
    enterprise = customers.mrr[customers.segment == 2]
    share_20_80 = ((consumer >= 20) & (consumer <= 80)).mean()
    assert share_20_80 > 0.8
    assert np.median(enterprise) > 10 * np.median(consumer)
    assert enterprise.max() > 3_000
    assert customers.mrr.mean() > 1.5 * np.median(customers.mrr)


def test_term_contracts_end_within_their_term():
    _, customers = _inventory()
    term = catalog.CONTRACT_DAYS[customers.contract]
    has_term = term > 0
    assert (customers.contract_end_day[~has_term] == -1).all()
    ends = customers.contract_end_day[has_term]
    assert (ends >= 1).all() and (ends <= term[has_term]).all()
