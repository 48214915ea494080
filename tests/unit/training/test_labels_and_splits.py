import pandas as pd
import pytest

from training.config import churn_defaults
from training.labels import churn_snapshots, fault_snapshots, snapshot_instants
from training.splits import time_split

DAY = pd.Timedelta(days=1)
T0 = pd.Timestamp("2026-01-02", tz="UTC")


def test_snapshots_fall_on_the_grid():
    stamps = pd.Series(pd.date_range(T0, periods=10, freq="D"))
    assert snapshot_instants(stamps, 3 * DAY).tolist() == [True, False, False] * 3 + [True]


def test_churn_label_looks_forward_within_the_horizon_and_censors_the_end():
    keys = pd.DataFrame(
        {
            "customer_id": ["a"] * 10 + ["b"] * 10,
            "event_timestamp": list(pd.date_range(T0, periods=10, freq="D")) * 2,
        }
    )
    labels = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "churned": [True, False],
            "churn_date": [pd.Timestamp("2026-01-06"), None],
        }
    )
    snaps = churn_snapshots(keys, labels, horizon=3 * DAY, every=DAY)
    a = snaps[snaps.customer_id == "a"].set_index("event_timestamp").label
    # a leaves on Jan 6: snapshots at Jan 4, 5 and 6 see it within [t, t + 3 days)
    assert a.to_dict() == {
        T0: 0, T0 + DAY: 0, T0 + 2 * DAY: 1, T0 + 3 * DAY: 1, T0 + 4 * DAY: 1,
        T0 + 5 * DAY: 0, T0 + 6 * DAY: 0,
    }  # fmt: skip
    assert snaps.event_timestamp.max() == T0 + 6 * DAY, "the last 3 days have no known label yet"
    assert snaps[snaps.customer_id == "b"].label.sum() == 0


def test_fault_label_ignores_ongoing_faults_and_sees_the_next_one():
    hours = pd.date_range(T0, periods=24, freq="h")
    keys = pd.DataFrame({"cell_id": "c", "event_timestamp": hours})
    faults = pd.DataFrame(
        {
            "cell_id": ["c", "c"],
            "start_at": [T0 + pd.Timedelta(hours=5), T0 + pd.Timedelta(hours=15)],
            "end_at": [T0 + pd.Timedelta(hours=8), T0 + pd.Timedelta(hours=16)],
        }
    )
    snaps = fault_snapshots(
        keys, faults, horizon=pd.Timedelta(hours=3), every=pd.Timedelta(hours=1)
    )
    label = snaps.set_index(snaps.event_timestamp.dt.hour).label
    assert (label[2], label[3], label[4]) == (0, 1, 1)
    assert not {5, 6, 7, 15} & set(label.index), "instants inside a fault are left out"
    assert (label[8], label[12], label[13], label[14], label[16]) == (0, 0, 1, 1, 0)


def test_time_split_never_trains_on_later_instants():
    instants = pd.Series(pd.date_range(T0, periods=10, freq="7D").repeat(3))
    parts = time_split(instants, churn_defaults().split)
    latest = {p: instants[parts == p].max() for p in ("train", "valid")}
    earliest = {p: instants[parts == p].min() for p in ("valid", "test")}
    assert latest["train"] < earliest["valid"] and latest["valid"] < earliest["test"]
    assert parts.value_counts().to_dict() == {"train": 18, "valid": 6, "test": 6}


@pytest.mark.parametrize("shares", [(0.5, 0.3, 0.3), (0.8, 0.2, 0.1)])
def test_split_shares_must_sum_to_one(shares):
    from pydantic import ValidationError

    from training.config import SplitConfig

    with pytest.raises(ValidationError, match="must be 1"):
        SplitConfig(train=shares[0], valid=shares[1], test=shares[2])
