"""Snapshot data splits by entity: no entity in two parts, the label stratified, the choice
explicit (params or the data set's shape) and refused when a time split cannot be made."""

import numpy as np
import pandas as pd
import pytest

from closedloop.models import SPECS, DataShape, ModelName
from training.config import SplitConfig
from training.pipeline import outright_snapshots
from training.splits import (
    check_entity_split,
    choose_split,
    entity_folds,
    entity_split,
    time_split,
)


def _entities(n: int = 1000, rate: float = 0.25, repeats: int = 1):
    ids = pd.Series([f"c{i:04d}" for i in range(n)]).repeat(repeats).reset_index(drop=True)
    positive = {f"c{i:04d}" for i in range(int(n * rate))}
    return ids, ids.isin(positive).astype(int)


@pytest.mark.parametrize("repeats", [1, 3])
def test_entity_split_keeps_every_entity_in_one_part_and_the_label_rate(repeats):
    ids, labels = _entities(repeats=repeats)
    parts = entity_split(ids, labels, SplitConfig(), seed=3)
    assert parts.groupby(ids).nunique().max() == 1
    check_entity_split(ids, parts)  # does not raise
    share = parts.groupby(ids).first().value_counts(normalize=True)
    assert share.to_dict() == pytest.approx({"train": 0.6, "valid": 0.2, "test": 0.2}, abs=0.01)
    for part in ("train", "valid", "test"):
        assert labels[parts == part].mean() == pytest.approx(0.25, abs=0.01)


def test_an_entity_in_two_parts_is_refused():
    ids, labels = _entities(n=20)
    parts = entity_split(ids, labels, SplitConfig(), seed=1)
    elsewhere = "test" if parts.iloc[0] == "train" else "train"
    leaked = pd.concat([ids, ids.iloc[:1]], ignore_index=True)
    leaked_parts = pd.concat([parts, pd.Series([elsewhere])], ignore_index=True)
    with pytest.raises(ValueError, match=r"1 entities are in more than one split \(c0000\)"):
        check_entity_split(leaked, leaked_parts)


def test_folds_never_split_an_entity_and_cover_every_row():
    ids, labels = _entities(n=300, repeats=2)
    fold = entity_folds(ids, labels, 5, seed=0)
    assert pd.Series(fold).groupby(ids.to_numpy()).nunique().max() == 1
    assert sorted(np.unique(fold)) == [0, 1, 2, 3, 4]


def test_the_split_follows_params_or_the_shape_of_the_labels_source():
    sources = [
        ("world", DataShape.TIME_SERIES, {"customers", "churn_labels"}),
        ("ibm", DataShape.SNAPSHOT, {"customers", "churn_labels"}),
    ]
    auto = choose_split(SplitConfig(), "churn_labels", sources)
    assert (auto.by, auto.why) == ("entity", "source ibm has shape: snapshot")
    assert choose_split(SplitConfig(), "churn_labels", sources[:1]).by == "time"
    assert choose_split(SplitConfig(), "cell_fault_labels", sources).by == "time"
    forced = choose_split(SplitConfig(by="time"), "churn_labels", sources)
    assert (forced.by, forced.why) == ("time", "split.by: time in params")


def test_a_time_split_of_one_instant_is_refused_with_the_way_out():
    instants = pd.Series(pd.Timestamp("2025-01-01", tz="UTC"), index=range(50))
    with pytest.raises(ValueError, match="declare shape: snapshot"):
        time_split(instants, SplitConfig())


def test_folds_must_leave_a_fold_to_train_on():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at least 3"):
        SplitConfig(folds=2)


def test_snapshot_labels_come_from_the_outright_column_latest_row_per_entity():
    t0, t1 = pd.Timestamp("2025-01-01", tz="UTC"), pd.Timestamp("2025-01-02", tz="UTC")
    keys = pd.DataFrame({"customer_id": ["a", "a", "b", "c"], "event_timestamp": [t0, t1, t1, t1]})
    events = pd.DataFrame({"customer_id": ["a", "b"], "churned": [True, False]})
    rows = outright_snapshots(keys, events, SPECS[ModelName.CHURN])
    assert rows.to_dict("list") == {
        "customer_id": ["a", "b"],
        "event_timestamp": [t1, t1],
        "label": [1, 0],
    }
    with pytest.raises(ValueError, match="fault needs time-series data"):
        outright_snapshots(keys, events, SPECS[ModelName.FAULT])
