"""Drift scenarios: a firmware update changes one vendor's units from its day on, nothing else."""

import numpy as np
import pandas as pd

from closedloop.world import catalog
from closedloop.world.config import Dirt, FirmwareUpdate, WorldConfig
from closedloop.world.inventory import make_cells
from closedloop.world.network import simulate_network
from closedloop.world.raw import render_aurora, render_zenith


def _network():
    config = WorldConfig(customers=2_000, days=7, seed=3, dirt=Dirt.clean())
    cells = make_cells(config, np.random.default_rng(3))
    return config, cells, simulate_network(config, cells, np.random.default_rng(4))


def _mine(cells, vendor):
    return np.flatnonzero(cells.vendor == catalog.VENDORS.index(vendor))


def test_aurora_firmware_scales_latency_and_loss_from_its_day():
    config, cells, network = _network()
    mine = _mine(cells, "aurora")
    update = FirmwareUpdate(vendor="aurora", day=3, latency_factor=10, loss_factor=4)
    before = render_aurora(network, cells, mine, config.dirt, np.random.default_rng(0))
    after = render_aurora(network, cells, mine, config.dirt, np.random.default_rng(0), update)
    old, new = before.table.to_pandas(), after.table.to_pandas()
    late = old.ts_utc >= pd.Timestamp(config.start, tz="UTC") + pd.Timedelta(days=3)
    np.testing.assert_allclose(new.latency_ms[late], 10 * old.latency_ms[late])
    np.testing.assert_allclose(new.pkt_loss_pct[late], 4 * old.pkt_loss_pct[late])
    pd.testing.assert_frame_equal(new[~late], old[~late])


def test_an_aurora_update_leaves_zenith_alone_and_a_zenith_one_scales_its_rtt():
    config, cells, network = _network()
    mine = _mine(cells, "zenith")
    plain = render_zenith(network, cells, mine, config.dirt, np.random.default_rng(0))
    aurora = FirmwareUpdate(vendor="aurora", day=0)
    same = render_zenith(network, cells, mine, config.dirt, np.random.default_rng(0), aurora)
    assert same.table.equals(plain.table)
    zenith = FirmwareUpdate(vendor="zenith", day=0, latency_factor=2)
    scaled = render_zenith(network, cells, mine, config.dirt, np.random.default_rng(0), zenith)
    rtt, doubled = plain.table.column("RTT_AVG_US"), scaled.table.column("RTT_AVG_US")
    np.testing.assert_allclose(doubled.to_numpy(), 2 * rtt.to_numpy(), atol=1)
