"""Training time and batch rescoring, with MLflow's pyfunc batch predict as the peer.

    python -m bench.training [--rows 1000000] [--repeats 3]

1. churn training (early stopping, monotone constraints, calibration) on ROWS snapshots of
   the churn_v1 features plus extra numeric ones (>= 40 in all): wall time (target <= 120 s);
2. rescoring ROWS rows with the registered model: ``ScoringModel.score`` on 2 threads vs
   ``mlflow.pyfunc.load_model(...).predict`` of the same registered version, alternately,
   medians of REPEATS; predictions must agree within 1e-6 (target >= 2x and >= 1M rows/s).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from closedloop.settings import Settings
from features.repo import CUSTOMER_ENGAGEMENT, CUSTOMER_EXPERIENCE, CUSTOMER_PROFILE, POLICY_ONLY
from training.config import churn_defaults

EXTRA = [f"signal_{i}" for i in range(6)]


def snapshots(rows: int, seed: int) -> pd.DataFrame:
    """Synthetic churn snapshots with the churn_v1 columns and a known signal."""
    rng = np.random.default_rng(seed)
    frame = {}
    for name, dtype in {**CUSTOMER_PROFILE, **CUSTOMER_EXPERIENCE, **CUSTOMER_ENGAGEMENT}.items():
        if name in POLICY_ONLY:
            continue
        if str(dtype) == "String":
            frame[name] = rng.choice(["a", "b", "c", "d"], rows)
        else:
            frame[name] = rng.exponential(10, rows)
    for name in EXTRA:
        frame[name] = rng.normal(size=rows)
    data = pd.DataFrame(frame)
    logit = (
        -4
        + 0.02 * data.outage_minutes_30d
        + 0.3 * data.complaints_30d.clip(upper=5)
        - 0.02 * data.tenure_months
        + 0.5 * (data.contract_type == "a")
        + 0.4 * data.signal_0
    )
    data["label"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    console = Console(width=120)
    logging.getLogger("mlflow").setLevel(logging.ERROR)

    import mlflow

    from training import registry
    from training.trainer import fit

    train, valid = snapshots(args.rows, 1), snapshots(args.rows // 4, 2)
    features = [c for c in train.columns if c != "label"]
    config = churn_defaults()
    began = time.perf_counter()
    model, info = fit(train, valid, features, config.lightgbm, seed=1, increasing=config.increasing)
    seconds = time.perf_counter() - began
    console.print(
        f"training: {args.rows:,} snapshots x {len(features)} features (+{len(valid):,} "
        f"validation) in {seconds:.1f} s, {info['best_iteration']:.0f} trees (target <= 120 s)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp))
        registry.connect(settings)
        experiment = registry.experiment(settings, "bench")
        with mlflow.start_run(experiment_id=experiment):
            version = registry.log_model(model, train.head(1000), "bench")
        peer = mlflow.pyfunc.load_model(f"models:/bench/{version}")
        batch = snapshots(args.rows, 3)[features]
        ours, theirs = [], []
        for _ in range(args.repeats):
            began = time.perf_counter()
            direct = model.score(batch, threads=2)
            ours.append(time.perf_counter() - began)
            began = time.perf_counter()
            served = np.asarray(peer.predict(batch), dtype=float)
            theirs.append(time.perf_counter() - began)
        difference = float(np.abs(direct - served).max())

    table = Table(title=f"batch rescoring of {args.rows:,} rows, median of {args.repeats}")
    for column in ("path", "median s", "rows/s"):
        table.add_column(column, justify="right")
    for name, samples in (("closedloop ScoringModel", ours), ("mlflow pyfunc predict", theirs)):
        median = statistics.median(samples)
        table.add_row(name, f"{median:.2f}", f"{args.rows / median:,.0f}")
    console.print(table)
    ratio = statistics.median(theirs) / statistics.median(ours)
    console.print(
        f"speed-up over the peer: {ratio:.2f}x; largest prediction difference {difference:.1e} "
        "(targets >= 2x, >= 1M rows/s, <= 1e-6)"
    )


if __name__ == "__main__":
    main()
