"""LightGBM on a Dask cluster (``lightgbm.dask``): the fit of a training set too large for one
machine, giving the same :class:`ScoringModel` as :func:`training.trainer.fit`.

``lightgbm.dask`` has no early stopping, so the number of rounds is found first: one process
fits a seeded sample of the training window (at most :data:`ROUNDS_SAMPLE_ROWS` rows) with early
stopping on the validation window, and the cluster then trains that many rounds on the whole
training window. Calibration is isotonic on the validation window, as in one process.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

from training.config import LightGBMParams
from training.model import ScoringModel
from training.trainer import (
    booster_config,
    calibrated,
    categorical_levels,
    check_inputs,
    class_weight,
    fit,
)

ROUNDS_SAMPLE_ROWS = 500_000
"""Rows of the training window the round count is found on, in one process."""


@contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator[object]:
    """A client of the scheduler at ``scheduler``, or of a local cluster of ``workers`` workers
    started here and stopped on exit. The local workers are threads of this process (LightGBM
    keeps its network state per thread, so each still trains as one machine of the cluster and
    none has to start a Python process of its own)."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler, timeout="30s") as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
        _native_output_dropped(),
    ):
        yield client


@contextmanager
def _native_output_dropped() -> Iterator[None]:
    """This process's stdout (file descriptor 1) sent to the null device while the block runs:
    the local workers' LightGBM sets up its network in threads it starts itself, whose log
    level no parameter reaches, and would print on the command's console (its failures still
    raise)."""
    sys.stdout.flush()
    kept = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(kept, 1)
        os.close(kept)


def fit_on_dask(
    client,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    params: LightGBMParams,
    seed: int,
    increasing: tuple[str, ...] = (),
    classes: list[str] | None = None,
) -> tuple[ScoringModel, dict[str, float]]:
    """Train on ``train`` across the client's workers for the rounds early stopping picks on a
    sample in one process; calibrate a binary target on ``valid`` (a multi-class one stays
    uncalibrated, as in one process).

    The labels are LightGBM's own (0/1, or 0..k-1 for ``classes``) and the objective is
    :func:`booster_config`'s, so the fit goes through the Dask estimator that passes labels on
    as they are: lightgbm.dask's classifier encodes each worker's labels from the rows that
    worker holds, so a worker lacking a class (a rare one, rows in class order) would train on
    shifted labels or fail."""
    import dask.array as da
    import lightgbm
    from lightgbm.dask import DaskLGBMRegressor

    # lightgbm.dask and the workers' network set-up report through LightGBM's logger, which
    # prints to stdout unless a logger is registered: this one follows the logging settings
    lightgbm.register_logger(logging.getLogger("lightgbm"))
    check_inputs(train, valid, features, increasing)
    sample = train
    if len(train) > ROUNDS_SAMPLE_ROWS:
        sample = train.sample(ROUNDS_SAMPLE_ROWS, random_state=seed)
    _, found = fit(sample, valid, features, params, seed, increasing, classes)
    rounds = max(1, int(found["best_iteration"]))

    categories = categorical_levels(train, features)
    draft = ScoringModel(None, features, categories, np.array([]), np.array([]))  # type: ignore[arg-type]
    workers = len(client.scheduler_info()["workers"])
    rows = math.ceil(len(train) / max(1, 2 * workers))
    matrix = da.from_array(draft.matrix(train), chunks=(rows, len(features)))
    labels = da.from_array(train["label"].to_numpy(), chunks=rows)
    matrix, labels = client.persist([matrix, labels])
    weight = class_weight(train, params, classes)
    config = booster_config(params, features, increasing, seed, weight, classes)
    model = DaskLGBMRegressor(client=client, n_estimators=rounds, **config)  # labels as they are
    model.fit(
        matrix,
        labels,
        feature_name=features,
        categorical_feature=[i for i, name in enumerate(features) if name in categories],
    )
    if classes:
        empty = np.array([])
        scoring = ScoringModel(model.booster_, features, categories, empty, empty, list(classes))
    else:
        scoring = calibrated(model.booster_, features, categories, valid)
    info = {
        "best_iteration": float(rounds),
        "scale_pos_weight": weight,
        "rounds_sample_rows": float(len(sample)),
        "dask_workers": float(workers),
    }
    return scoring, info
