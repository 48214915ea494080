import numpy as np
import pandas as pd

from closedloop.world import catalog
from closedloop.world.config import Dirt, WorldConfig
from closedloop.world.inventory import make_cells
from closedloop.world.network import simulate_network
from closedloop.world.raw import _counters, render_aurora, render_zenith


def test_counters_accumulate_from_their_start_and_restart_at_zero():
    per_interval = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    restarts = np.array([[False, False, False, True, False]])
    counters = _counters(per_interval, restarts, np.array([100]))
    assert counters.tolist() == [[101, 103, 106, 4, 9]]


def _world(dirt: Dirt, seed=5):
    config = WorldConfig(customers=2_000, days=10, seed=seed, incident_rate=0.05, dirt=dirt)
    cells = make_cells(config, np.random.default_rng(seed))
    network = simulate_network(config, cells, np.random.default_rng(seed + 1))
    return config, cells, network


def _vendor_cells(cells, vendor):
    return np.flatnonzero(cells.vendor == catalog.VENDORS.index(vendor))


def test_clean_aurora_reports_every_interval_once_in_utc_and_ms():
    config, cells, network = _world(Dirt.clean())
    mine = _vendor_cells(cells, "aurora")
    raw = render_aurora(network, cells, mine, config.dirt, np.random.default_rng(0))
    frame = raw.table.to_pandas()
    assert len(frame) == len(mine) * network.shape[1]
    assert not frame.duplicated(["cell_id", "ts_utc"]).any()
    first_cell = frame[frame.cell_id == cells.ids[mine[0]]].sort_values("ts_utc")
    assert first_cell.ts_utc.iloc[0] == pd.Timestamp(config.start, tz="UTC")
    expected = network.latency_ms[mine[0]]
    np.testing.assert_allclose(first_cell.latency_ms.to_numpy(float), expected, atol=0.01)
    assert (frame.received_at > frame.ts_utc).all()


def test_zenith_counters_recover_throughput_and_local_time_is_interval_end():
    config, cells, network = _world(Dirt.clean())
    mine = _vendor_cells(cells, "zenith")
    raw = render_zenith(network, cells, mine, config.dirt, np.random.default_rng(0))
    frame = raw.table.to_pandas()
    cell = mine[0]
    rows = frame[cells.ids[cell] == frame.NE_ID].sort_values("RECV_EPOCH_MS")
    timezone = catalog.REGIONS[cells.region[cell]].timezone
    first_end_utc = pd.Timestamp(config.start, tz="UTC") + pd.Timedelta(minutes=15)
    assert rows.LOCAL_TIME.iloc[0] == first_end_utc.tz_convert(timezone).tz_localize(None)
    kbytes = np.diff(rows.DL_KBYTES_CUM.to_numpy())
    throughput = kbytes / (15 * 60 * 125)
    np.testing.assert_allclose(throughput, network.throughput_mbps[cell, 1:], rtol=1e-3, atol=0.01)
    np.testing.assert_allclose(
        rows.RTT_AVG_US.to_numpy(float) / 1000, network.latency_ms[cell], atol=0.001
    )


def test_dirt_is_injected_and_accounted_for():
    dirt = Dirt(duplicate_rate=0.02, late_rate=0.05, spike_rate=0.01, unit_glitch_rate=0.05)
    _config, cells, network = _world(dirt)
    mine = _vendor_cells(cells, "aurora")
    raw = render_aurora(network, cells, mine, dirt, np.random.default_rng(0))
    counts = raw.dirt
    assert raw.table.num_rows == (
        counts["intervals"]
        - counts["missing"]
        - counts["silent_during_outage"]
        + counts["duplicates"]
    )
    frame = raw.table.to_pandas()
    assert frame.duplicated(["cell_id", "ts_utc"]).sum() == counts["duplicates"]
    delay = frame.received_at - frame.ts_utc
    assert (delay > pd.Timedelta(hours=1)).sum() >= counts["late"]
    out_of_range = (
        (frame.availability_pct > 100) | (frame.prb_util_pct > 100) | (frame.pkt_loss_pct > 100)
    )
    assert out_of_range.sum() > 0.5 * counts["spikes"]
    assert counts["unit_glitches"] > 0
    assert (frame.latency_ms > 5_000).sum() >= counts["unit_glitches"] * 0.9
    assert (np.diff(raw.received_ms) >= 0).all()


def test_zenith_counters_restart_after_a_reboot():
    dirt = Dirt.clean().model_copy(update={"counter_resets": True})
    _config, cells, network = _world(dirt, seed=9)
    mine = _vendor_cells(cells, "zenith")
    raw = render_zenith(network, cells, mine, dirt, np.random.default_rng(0))
    assert raw.dirt["counter_resets"] > 0
    frame = raw.table.to_pandas().sort_values(["NE_ID", "LOCAL_TIME"])
    drops = frame.groupby("NE_ID").PKT_TX_CUM.diff() < 0
    assert drops.sum() == raw.dirt["counter_resets"]
