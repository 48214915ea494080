"""A multi-class target trained on a local Dask cluster (lightgbm.dask, multiclass objective)
answers as the one-process fit does, whichever classes each worker's rows hold."""

import numpy as np
import pandas as pd
import pytest

from training.config import LightGBMParams
from training.distributed import dask_client, fit_on_dask
from training.evaluate import evaluate_classes
from training.model import ScoringModel
from training.trainer import fit

CLASSES = ["attitude", "competitor", "price", "stayed"]
FEATURES = ["charge", "offer", "calls", "tenure"]
FAST = LightGBMParams(num_boost_round=200, early_stopping_rounds=20, min_child_samples=10)


def reasons(rows: int, seed: int) -> pd.DataFrame:
    """Each class shows in one feature: price in the charge, competitor in the offer, attitude
    in support calls; stayed is the rest."""
    rng = np.random.default_rng(seed)
    label = rng.choice(4, rows, p=[0.15, 0.2, 0.15, 0.5])
    return pd.DataFrame(
        {
            "charge": rng.normal(60, 10, rows) + 25 * (label == 2),
            "offer": np.where(rng.random(rows) < 0.2 + 0.6 * (label == 1), "A", "B"),
            "calls": rng.poisson(1 + 3 * (label == 0)).astype(float),
            "tenure": rng.uniform(0, 72, rows),
            "label": label,
        }
    )


@pytest.fixture(scope="module")
def client():
    with dask_client(None, 2) as started:
        yield started


@pytest.mark.parametrize(
    "order",
    ["shuffled", "by class", "one class absent"],
    ids=["shuffled", "rows in class order", "a class absent from training"],
)
def test_multi_class_on_dask_answers_as_one_process(client, order, tmp_path):
    """Rows in class order leave each worker some classes only (lightgbm.dask's classifier
    would encode each worker's labels apart); a class may also be missing from the training
    window: the model still scores every class, as one process does."""
    train, valid, test = reasons(1_200, 1), reasons(400, 2), reasons(400, 3)
    if order == "by class":
        train = train.sort_values("label", kind="stable", ignore_index=True)
    if order == "one class absent":
        train = train[train.label != CLASSES.index("price")].reset_index(drop=True)
    model, info = fit_on_dask(client, train, valid, FEATURES, FAST, 7, classes=CLASSES)
    alone, found = fit(train, valid, FEATURES, FAST, 7, classes=CLASSES)

    assert info["dask_workers"] == 2 and info["best_iteration"] == found["best_iteration"]
    assert model.booster.num_trees() == info["best_iteration"] * len(CLASSES)
    probabilities = model.score(test)
    assert probabilities.shape == (len(test), len(CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    prior = np.bincount(train.label, minlength=len(CLASSES)) / len(train)
    on_dask = evaluate_classes(test.label.to_numpy(), probabilities, CLASSES, prior).metrics
    in_one = evaluate_classes(test.label.to_numpy(), alone.score(test), CLASSES, prior).metrics
    assert on_dask["accuracy"] == pytest.approx(in_one["accuracy"], abs=0.05)
    assert on_dask["accuracy"] > max(prior)
    if order == "one class absent":
        assert probabilities[:, CLASSES.index("price")].max() < 0.05, "never seen, never chosen"
    else:
        assert on_dask["log_loss_gain"] > 0.2 and on_dask["macro_f1"] > 0.5
    again = ScoringModel.load(model.save(tmp_path / "scoring"))
    assert again.classes == CLASSES
    np.testing.assert_allclose(again.score(test), probabilities)
