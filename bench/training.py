"""Training time and batch rescoring, with MLflow's pyfunc batch predict as the peer.

    python -m bench.training [--rows 1000000] [--repeats 3]

1. churn training (early stopping, monotone constraints, calibration) on ROWS snapshots of
   the churn_v1 features plus extra numeric ones (>= 40 in all): wall time (target <= 120 s);
2. rescoring ROWS rows with the registered model: ``NativeScorer.score`` (trees compiled by
   lleaves, compiled once per model and cached; the compile time is printed) and
   ``ScoringModel.score`` (LightGBM's own predict), both on 2 threads, vs
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
    from training.native import NativeScorer
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
        began = time.perf_counter()
        native = NativeScorer(model, Path(tmp) / "compiled")
        compile_seconds = time.perf_counter() - began
        batch = snapshots(args.rows, 3)[features]
        paths = {
            "closedloop NativeScorer (compiled trees)": lambda: native.score(batch, threads=2),
            "closedloop ScoringModel (LightGBM predict)": lambda: model.score(batch, threads=2),
            "mlflow pyfunc predict": lambda: np.asarray(peer.predict(batch), dtype=float),
        }
        seconds = {name: [] for name in paths}
        answers = {}
        for _ in range(args.repeats):
            for name, run in paths.items():
                began = time.perf_counter()
                answers[name] = run()
                seconds[name].append(time.perf_counter() - began)
        reference = answers["mlflow pyfunc predict"]
        difference = max(float(np.abs(a - reference).max()) for a in answers.values())

    console.print(
        f"compiling the forest ({native.forest.num_trees()} trees, once per model "
        f"version and host, cached): {compile_seconds:.1f} s"
    )
    table = Table(title=f"batch rescoring of {args.rows:,} rows, median of {args.repeats}")
    for column in ("path", "median s", "rows/s", "vs mlflow"):
        table.add_column(column, justify="right")
    peer_median = statistics.median(seconds["mlflow pyfunc predict"])
    for name, samples in seconds.items():
        median = statistics.median(samples)
        table.add_row(
            name, f"{median:.2f}", f"{args.rows / median:,.0f}", f"{peer_median / median:.2f}x"
        )
    console.print(table)
    console.print(
        f"largest prediction difference {difference:.1e} (targets: NativeScorer >= 2x the peer, "
        ">= 1M rows/s, differences <= 1e-6)"
    )


if __name__ == "__main__":
    main()
