"""Vendor normalisation against the simulator's true network state."""

import numpy as np
import pandas as pd
import pytest

from closedloop.world import catalog
from closedloop.world.config import Dirt, WorldConfig
from closedloop.world.inventory import make_cells
from closedloop.world.network import simulate_network
from closedloop.world.raw import render_aurora, render_zenith
from features.vendors import normalise_aurora, normalise_zenith, reporting_interval_minutes


@pytest.fixture(scope="module")
def truth():
    config = WorldConfig(customers=1_500, days=7, seed=4, incident_rate=0.1, dirt=Dirt.clean())
    cells = make_cells(config, np.random.default_rng(4))
    return config, cells, simulate_network(config, cells, np.random.default_rng(5))


def _vendor(cells, name):
    return np.flatnonzero(cells.vendor == catalog.VENDORS.index(name))


def _zones(cells):
    return {c: catalog.REGIONS[r].timezone for c, r in zip(cells.ids, cells.region, strict=True)}


def _true(network, cells, cell_ids, ts, array):
    position = {c: i for i, c in enumerate(cells.ids)}
    row = np.array([position[c] for c in cell_ids])
    step = ((ts - pd.Timestamp(network.start, tz="UTC")) / pd.Timedelta(minutes=15)).astype(int)
    return array[row, step.to_numpy()]


def test_aurora_rows_keep_their_values_under_canonical_names(truth):
    config, cells, network = truth
    raw = render_aurora(
        network, cells, _vendor(cells, "aurora"), config.dirt, np.random.default_rng(0)
    )
    frame = raw.table.to_pandas()
    canonical, rejected = normalise_aurora(frame)
    assert rejected.empty
    assert (canonical.index == frame.index).all()
    assert canonical.interval_minutes.eq(15).all()
    expected = _true(network, cells, canonical.cell_id, canonical.ts, network.prb_pct)
    np.testing.assert_allclose(canonical.prb_util_pct, expected, atol=0.01)


def test_zenith_counters_become_the_true_rates(truth):
    config, cells, network = truth
    raw = render_zenith(
        network, cells, _vendor(cells, "zenith"), config.dirt, np.random.default_rng(0)
    )
    frame = raw.table.to_pandas()
    canonical, rejected = normalise_zenith(frame, _zones(cells))
    assert len(rejected) == len(_vendor(cells, "zenith"))  # each cell's first sample
    assert set(rejected) == {
        "first sample of the cell: no earlier counter value to difference against"
    }
    rows = canonical.drop(index=rejected.index)
    assert (rows.ts.dt.minute % 15 == 0).all()
    down = _true(network, cells, rows.cell_id, rows.ts, network.down) > 0.999
    assert rows.packet_loss_pct[down].isna().all(), "no packets sent: loss is unknown, not zero"
    rows = rows[~down]
    for column, array, tolerance in (
        ("throughput_mbps", network.throughput_mbps, 0.01),
        ("availability_pct", network.availability_pct, 0.2),  # whole seconds in the counter
        ("packet_loss_pct", network.loss_pct, 0.01),
        ("prb_util_pct", network.prb_pct, 0.01),
        ("latency_ms", network.latency_ms, 0.001),
    ):
        expected = _true(network, cells, rows.cell_id, rows.ts, array)
        np.testing.assert_allclose(rows[column], expected, atol=tolerance, err_msg=column)


def test_zenith_counter_restarts_and_gaps_give_no_negative_rates(truth):
    _config, cells, network = truth
    dirt = Dirt.clean().model_copy(update={"counter_resets": True, "missing_rate": 0.05})
    raw = render_zenith(network, cells, _vendor(cells, "zenith"), dirt, np.random.default_rng(1))
    assert raw.dirt["counter_resets"] > 0
    canonical, rejected = normalise_zenith(raw.table.to_pandas(), _zones(cells))
    rows = canonical.drop(index=rejected.index)
    assert (rows.throughput_mbps >= 0).all() and (rows.availability_pct >= 0).all()
    assert (rows.interval_minutes > 15).any(), "a gap makes one row covering it"


def test_zenith_rows_of_unknown_cells_and_impossible_local_times_are_rejected():
    stamps = pd.to_datetime(
        ["2026-03-08 01:45", "2026-03-08 02:15", "2026-03-08 03:15", "2026-03-08 03:30"]
    )
    raw = pd.DataFrame(
        {
            "NE_ID": ["c1", "c1", "c1", "ghost"],
            "LOCAL_TIME": stamps,
            "RTT_AVG_US": [30_000, 30_000, 30_000, 30_000],
            "UNAVAIL_S_CUM": [0, 0, 0, 0],
            "PKT_TX_CUM": [100, 200, 300, 10],
            "PKT_LOST_CUM": [0, 0, 0, 0],
            "DL_KBYTES_CUM": [0, 1000, 2000, 0],
            "PRB_USAGE_RATIO": [0.5, 0.5, 0.5, 0.5],
            "CONN_UE_AVG": [10.0, 10.0, 10.0, 10.0],
            "ALARM_NUM": [0, 0, 0, 0],
            "RECV_EPOCH_MS": [0, 0, 0, 0],
        }
    )
    _, rejected = normalise_zenith(raw, {"c1": "America/New_York"})
    assert rejected[3] == "NE_ID not in the cell inventory (no time zone)"
    assert "does not exist" in rejected[1]  # 02:15 falls in the spring-forward gap
    assert rejected[0].startswith("first sample")
    assert 2 not in rejected.index


def test_reporting_interval_is_the_commonest_gap():
    cells = pd.Series(["a", "a", "a", "a", "b", "b"])
    stamps = pd.Series(
        pd.to_datetime(["00:00", "00:15", "00:30", "01:30", "00:00", "00:15"], format="%H:%M")
    )
    assert reporting_interval_minutes(cells, stamps) == 15
    with pytest.raises(ValueError, match="reporting interval"):
        reporting_interval_minutes(pd.Series(["a"]), pd.Series(pd.to_datetime(["00:00"])))
