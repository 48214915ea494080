"""Drift scenarios: a firmware update changes one vendor's units from its day on, a price change
one region's bills; nothing else."""

import numpy as np
import pandas as pd
import pytest

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


def test_a_price_change_raises_one_regions_bills_and_churn_from_its_day():
    from closedloop.world.config import Drift, PriceChange
    from closedloop.world.simulate import simulate

    base = WorldConfig(customers=3_000, days=60, seed=5)
    change = PriceChange(region="central", day=30, factor=1.25)
    plain, moved = simulate(base), simulate(base.model_copy(update={"drift": Drift(price=change)}))
    customers = moved.tables["customers"].to_pandas()
    central = customers.region == "central"
    assert customers.new_mrr[central].to_numpy() == pytest.approx(1.25 * customers.mrr[central])
    assert (
        customers.new_mrr[~central].isna().all() and customers.new_mrr_from[~central].isna().all()
    )
    assert (customers.new_mrr_from[central] == pd.Timestamp("2026-01-31").date()).all()
    assert plain.tables["customers"].column("new_mrr").null_count == len(customers)

    def bills(world):
        return world.tables["invoices"].to_pandas()[["customer_id", "issued_on", "amount"]]

    both = bills(plain).merge(bills(moved), on=["customer_id", "issued_on"])
    both = both.merge(customers[["customer_id", "region"]])
    late = pd.to_datetime(both.issued_on) >= pd.Timestamp("2026-01-31")
    ratio, in_central = both.amount_y / both.amount_x, both.region == "central"
    assert ratio[late & in_central].to_numpy() == pytest.approx(1.25, abs=0.01)
    assert ratio[~(late & in_central)].to_numpy() == pytest.approx(1.0)

    def churned_after(world):
        churn = world.tables["churn"].to_pandas().merge(customers[["customer_id", "region"]])
        left = churn[
            churn.churned & (pd.to_datetime(churn.churn_date) >= pd.Timestamp("2026-01-31"))
        ]
        return (left.region == "central").sum(), (left.region != "central").sum()

    central_plain, _ = churned_after(plain)
    central_moved, _ = churned_after(moved)
    assert central_moved > 1.2 * central_plain
