import numpy as np
import pytest

from closedloop.world import catalog
from closedloop.world.config import WorldConfig
from closedloop.world.inventory import make_cells
from closedloop.world.network import _overlap, simulate_network


def test_overlap_covers_exactly_the_fault_duration():
    first, cover = _overlap(20.0, 95.0, 15, 100)
    assert first == 1
    assert cover.sum() * 15 == pytest.approx(75.0)
    assert cover[0] == pytest.approx(10 / 15) and cover[-1] == pytest.approx(5 / 15)


@pytest.fixture(scope="module")
def network():
    config = WorldConfig(customers=4_000, days=30, seed=11, incident_rate=0.1)
    cells = make_cells(config, np.random.default_rng(1))
    return cells, simulate_network(config, cells, np.random.default_rng(2))


def _kind(name):
    return [k.name for k in catalog.FAULT_KINDS].index(name)


def test_outages_take_cells_out_of_service(network):
    _, net = network
    incidents = net.incidents
    for i in np.flatnonzero(
        np.isin(incidents.kind, [_kind("power_failure"), _kind("backhaul_cut")])
    ):
        first, cover = _overlap(incidents.start_min[i], incidents.end_min[i], 15, net.shape[1])
        availability = net.availability_pct[incidents.cell[i], first : first + len(cover)]
        assert (availability <= 100 * (1 - cover) + 1e-9).all()
    healthy = net.down == 0
    assert (net.availability_pct[healthy] == 100).all()
    assert np.isnan(net.latency_ms[net.down > 0.999]).all()


def test_hardware_failures_are_preceded_by_creeping_loss(network):
    _, net = network
    incidents = net.incidents
    rises = []
    for i in np.flatnonzero(incidents.kind == _kind("hardware_failure")):
        lead = int(incidents.lead_start_min[i] // 15)
        start = int(incidents.start_min[i] // 15)
        if start - lead < 8:
            continue
        loss = net.loss_pct[incidents.cell[i]]
        rises.append(loss[start - 4 : start].mean() - loss[lead : lead + 4].mean())
    assert len(rises) >= 3
    assert np.mean(rises) > 1.0


def test_congestion_is_preceded_by_rising_demand(network):
    _, net = network
    incidents = net.incidents
    ratios = []
    for i in np.flatnonzero(incidents.kind == _kind("congestion")):
        lead = int(incidents.lead_start_min[i] // 15)
        start = int(incidents.start_min[i] // 15)
        if start - lead < 8 or lead < 96:
            continue
        c = incidents.cell[i]
        same_time_yesterday = net.demand[c, start - 96 - 2 : start - 96].mean()
        ratios.append(net.demand[c, start - 2 : start].mean() / same_time_yesterday)
    assert len(ratios) >= 3
    assert np.median(ratios) > 1.15


def test_kpis_stay_physical(network):
    _, net = network
    assert (net.prb_pct >= 0).all() and (net.prb_pct <= 100).all()
    assert (net.loss_pct >= 0).all() and (net.loss_pct <= 100).all()
    assert (net.users >= 0).all()
    assert (np.nan_to_num(net.latency_ms, nan=1.0) > 0).all()
