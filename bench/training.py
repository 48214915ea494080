"""Training time and batch rescoring on the product's paths, with MLflow's pyfunc batch predict
as the peer.

    python -m bench.training [--rows 1000000] [--repeats 3]

Each step runs in a fresh process and reports its wall time and its own peak memory (VmHWM);
the data are written to Parquet first and read by each step before its clock starts:

1. train: ``training.trainer.fit`` (what ``closedloop train`` fits with: early stopping,
   monotone constraints, calibration) on ROWS snapshots of the churn_v1 features plus extra
   numeric ones (>= 40 in all), then the model registered in MLflow (target <= 120 s);
2. compile: the forest compiled by lleaves on a cold cache, what ``batch_scores`` does the first
   time a model version scores a large window (cached after, per version and host);
3. rescoring ROWS rows through ``training.native.batch_scores``, the function
   ``closedloop monitor-score`` scores with: at ROWS >= ``NATIVE_MIN_ROWS`` it takes the
   compiled forest (warm cache); the same call below the threshold takes LightGBM's predict;
   vs ``mlflow.pyfunc.load_model(...).predict`` of the same registered version. Alternately,
   medians of REPEATS; predictions must agree within 1e-6 (target >= 2x and >= 1M rows/s).

Last, the break-even size of the compiled path: the compile time over the time it saves per row.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from features.repo import CUSTOMER_ENGAGEMENT, CUSTOMER_EXPERIENCE, CUSTOMER_PROFILE, POLICY_ONLY

EXTRA = [f"signal_{i}" for i in range(6)]
SCORING = ("compiled", "lightgbm", "mlflow")
NAMES = {
    "compiled": "batch_scores (as monitor-score calls it)",
    "lightgbm": "batch_scores, threshold above the batch",
    "mlflow": "mlflow pyfunc predict",
}


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


def _peak_kb() -> int:
    """This process's own peak resident memory (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _settings(folder: Path):
    from closedloop.settings import Settings
    from training import registry

    settings = Settings(home=folder / "home")
    registry.connect(settings)
    return settings


def run_step(step: str, folder: Path) -> dict:
    """One step in this process, timed after its inputs are read (imports excluded)."""
    from training.config import churn_defaults
    from training.model import ScoringModel
    from training.native import NATIVE_MIN_ROWS, NativeScorer, batch_scores

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    settings = _settings(folder)
    out: dict = {}
    if step == "train":
        import mlflow

        from training import registry
        from training.trainer import fit

        train = pd.read_parquet(folder / "train.parquet")
        valid = pd.read_parquet(folder / "valid.parquet")
        features = [c for c in train.columns if c != "label"]
        config = churn_defaults()
        started = time.perf_counter()
        model, info = fit(train, valid, features, config.lightgbm, 1, config.increasing)
        out["seconds"] = time.perf_counter() - started
        out["trees"] = info["best_iteration"]
        out["features"] = len(features)
        model.save(folder / "model")
        experiment = registry.experiment(settings, "bench")
        with mlflow.start_run(experiment_id=experiment):
            out["version"] = registry.log_model(model, train.head(1000), "bench")
    else:
        model = ScoringModel.load(folder / "model")
        batch = pd.read_parquet(folder / "batch.parquet")
        cache = settings.paths.compiled_models
        started = time.perf_counter()
        if step == "compile":
            NativeScorer(model, folder / "cold-cache")
        elif step == "compiled":
            scores, engine = batch_scores(model, batch, cache)
            out["engine"] = str(engine)
        elif step == "lightgbm":
            scores, engine = batch_scores(model, batch, cache, native_from=len(batch) + 1)
            out["engine"] = str(engine)
        else:
            import mlflow

            peer = mlflow.pyfunc.load_model(f"models:/bench/{(folder / 'version').read_text()}")
            started = time.perf_counter()
            scores = np.asarray(peer.predict(batch), dtype=float)
        out["seconds"] = time.perf_counter() - started
        out["native_from"] = NATIVE_MIN_ROWS
        if step in SCORING:
            np.save(folder / f"{step}.npy", scores)
    return {**out, "peak_mb": _peak_kb() / 1024}


def _in_child(step: str, folder: Path) -> dict:
    command = [sys.executable, "-m", "bench.training", "--step", step, "--data", str(folder)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--step", choices=("train", "compile", *SCORING), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        print(json.dumps(run_step(args.step, args.data)))
        return

    console = Console(width=120)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        snapshots(args.rows, 1).to_parquet(folder / "train.parquet")
        snapshots(args.rows // 4, 2).to_parquet(folder / "valid.parquet")
        snapshots(args.rows, 3).drop(columns="label").to_parquet(folder / "batch.parquet")
        trained = _in_child("train", folder)
        (folder / "version").write_text(trained["version"])
        compiled = _in_child("compile", folder)
        _in_child("compiled", folder)  # warms the product's cache: the runs below reuse it
        runs: dict[str, list[dict]] = {step: [] for step in SCORING}
        for _ in range(args.repeats):
            for step in SCORING:
                runs[step].append(_in_child(step, folder))
        answers = {step: np.load(folder / f"{step}.npy") for step in SCORING}

    console.print(
        f"training: {args.rows:,} snapshots x {trained['features']} features "
        f"(+{args.rows // 4:,} validation) in {trained['seconds']:.1f} s, "
        f"{trained['trees']:.0f} trees, peak {trained['peak_mb']:,.0f} MB (target <= 120 s)"
    )
    console.print(
        f"compiling the forest (once per model version and host, cached): "
        f"{compiled['seconds']:.1f} s, peak {compiled['peak_mb']:,.0f} MB"
    )
    table = Table(title=f"batch rescoring of {args.rows:,} rows, median of {args.repeats}")
    for column in ("path", "engine", "median s", "rows/s", "vs mlflow", "peak MB"):
        table.add_column(column, justify="right")
    medians = {step: statistics.median(r["seconds"] for r in runs[step]) for step in SCORING}
    for step in SCORING:
        table.add_row(
            NAMES[step],
            runs[step][0].get("engine", "-"),
            f"{medians[step]:.2f}",
            f"{args.rows / medians[step]:,.0f}",
            f"{medians['mlflow'] / medians[step]:.2f}x",
            f"{max(r['peak_mb'] for r in runs[step]):,.0f}",
        )
    console.print(table)
    difference = max(float(np.abs(a - answers["mlflow"]).max()) for a in answers.values())
    saved = (medians["lightgbm"] - medians["compiled"]) / args.rows
    even = f"{compiled['seconds'] / saved:,.0f} rows" if saved > 0 else "never (no time saved)"
    console.print(
        f"largest prediction difference {difference:.1e} (targets: monitor-score's path >= 2x "
        f"the peer, >= 1M rows/s, differences <= 1e-6); the compiled path pays for a fresh "
        f"compile from {even} (batch_scores takes it from {runs['compiled'][0]['native_from']:,})"
    )


if __name__ == "__main__":
    main()
