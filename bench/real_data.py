"""The shared real data sets through the CLI a user runs, beside plain LightGBM on the raw
columns with the same splits (rerunnable; reads ../shared/data, writes only to a temp folder).

    python -m bench.real_data [--data ../shared/data] [--seeds 5] [--sets telco,v11,lte]

- IBM Telco churn (``telco``) and its five-file release (``v11``): ``closedloop import-csv``
  with the shipped mapping, ``features build``, ``features apply``, then ``closedloop train
  churn`` once per seed (``train_churn.seed``; the entity split and LightGBM follow it). The
  figure is the test ROC AUC the command writes to its metrics file. The baseline is LightGBM
  with the parameters ``train churn`` uses on snapshot data (``train_churn.snapshot_lightgbm``;
  no class weights, no monotone constraints; early stopping on the same validation customers)
  on the raw file's columns (v11: the five files joined as the mapping joins them, the answer-giving
  columns left out), split by ``training.splits.entity_split`` with the same seed.
- LTE cell KPIs (``lte``): not on the CLI path yet (the fault model predicts a fault starting
  within hours, not an anomalous sample): the mapping's import, then a per-sample anomaly model
  on the canonical KPIs and time of day, split by cell; F1 at the threshold chosen on the
  validation cells, and PR AUC.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve, roc_auc_score

from closedloop.home import Home
from training.config import LightGBMParams, SplitConfig, churn_defaults
from training.splits import entity_split
from training.trainer import booster_config

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = ROOT / "features" / "mappings"
AS_OF = datetime(2025, 1, 1, tzinfo=UTC)
SNAPSHOT = churn_defaults().snapshot_lightgbm  # what train churn fits snapshot data with
PARAMS = LightGBMParams(learning_rate=0.03, num_leaves=15, min_child_samples=30)
V11 = "telco-customer-churn-ibm-v11"
V11_JOINS = (("demographics", "Customer ID"), ("location", "Customer ID"))
V11_LATER = (("population", "Zip Code"), ("status", "Customer ID"))
LEAKS = (
    "Customer Status", "Churn Value", "Churn Score", "Churn Category", "Churn Reason",
    "Satisfaction Score",
)  # fmt: skip


def cli(home: Path, *args: str) -> str:
    """One closedloop command on ``home``, as a user runs it; its output."""
    env = {**os.environ, "CLOSEDLOOP_HOME": str(home), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "closedloop", *args], capture_output=True, text=True, env=env
    )
    if done.returncode:
        raise RuntimeError(f"closedloop {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def ours(csv: Path, mapping: str, seeds: int, home: Path) -> list[float]:
    """Test ROC AUC of ``closedloop train churn`` per seed, after import, build and apply."""
    cli(home, "import-csv", str(csv), "--mapping", str(MAPPINGS / f"{mapping}.yaml"))
    cli(home, "features", "build", "--as-of", AS_OF.isoformat())
    cli(home, "features", "apply")
    aucs = []
    for seed in range(seeds):
        params = home / f"params-{seed}.yaml"
        params.write_text(f"train_churn:\n  seed: {seed}\n  split: {{folds: 0}}\n")
        cli(home, "train", "churn", "--params", str(params))
        aucs.append(json.loads(Home.at(home).metrics("churn").read_text())["roc_auc"])
    return aucs


def _design(frame: pd.DataFrame) -> pd.DataFrame:
    """Raw text columns as LightGBM reads them: numbers where every filled cell is one, else
    categories."""
    out = {}
    for name, column in frame.items():
        text = column.str.strip().replace("", np.nan)
        numbers = pd.to_numeric(text, errors="coerce")
        readable = numbers.notna().sum() == text.notna().sum()
        out[name] = numbers if readable else text.astype("category")
    return pd.DataFrame(out, index=frame.index)


def plain_lightgbm(frame: pd.DataFrame, ids: pd.Series, label: pd.Series, seeds: int):
    """Test ROC AUC of plain LightGBM on ``frame`` per seed, split as training splits."""
    design = _design(frame)
    aucs = []
    for seed in range(seeds):
        part = entity_split(ids, label, SplitConfig(), seed)
        sets = {p: (design[part == p], label[part == p]) for p in ("train", "valid", "test")}
        train = lgb.Dataset(*sets["train"])
        valid = lgb.Dataset(*sets["valid"], reference=train)
        booster = lgb.train(
            booster_config(SNAPSHOT, list(design.columns), (), seed, weight=1.0),
            train,
            num_boost_round=SNAPSHOT.num_boost_round,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(SNAPSHOT.early_stopping_rounds, verbose=False)],
        )
        test, truth = sets["test"]
        aucs.append(float(roc_auc_score(truth, booster.predict(test))))
    return aucs


def _text(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def telco_raw(data: Path) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    raw = _text(data / "telco-customer-churn-ibm" / "Telco-Customer-Churn.csv")
    label = raw.pop("Churn").eq("Yes").astype(int)
    return raw, raw.pop("customerID"), label


def v11_raw(data: Path) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    folder = data / V11
    raw = _text(folder / "Telco_customer_churn_services.csv")
    for name, key in (*V11_JOINS, *V11_LATER):
        other = _text(folder / f"Telco_customer_churn_{name}.csv")
        other = other.drop(columns=[c for c in other.columns if c in raw.columns and c != key])
        raw = raw.merge(other, on=key, how="left").fillna("")
    label = raw.pop("Churn Label").eq("Yes").astype(int)
    ids = raw.pop("Customer ID")
    return raw.drop(columns=[*LEAKS, "Lat Long", "ID"]), ids, label


def lte(data: Path, seeds: int) -> list[tuple[float, float]]:
    from features.csv_import import import_csv
    from features.offline import OfflineStore
    from training.trainer import fit

    with tempfile.TemporaryDirectory() as tmp:
        csv = data / "lte-cell-kpi-anomaly" / "cell_kpi_train.csv"
        import_csv(csv, MAPPINGS / "lte-cell-kpi-anomaly.yaml", Path(tmp), AS_OF)
        offline = OfflineStore(Path(tmp))
        kpis = offline.read("cell_telemetry")
        anomalies = offline.read("cell_fault_labels")
    marked = set(zip(anomalies.cell_id, pd.to_datetime(anomalies.start_at, utc=True), strict=True))
    stamps = pd.to_datetime(kpis.ts, utc=True)
    kpis = kpis.assign(
        hour=stamps.dt.hour + stamps.dt.minute / 60,
        label=[int((c, t) in marked) for c, t in zip(kpis.cell_id, stamps, strict=True)],
    )
    names = ["prb_util_pct", "throughput_mbps", "connected_users", "hour"]
    cells = np.array(sorted(kpis.cell_id.unique()))
    scores = []
    for seed in range(seeds):
        shuffled = np.random.default_rng(seed).permutation(cells)
        fifth = len(cells) // 5
        test_cells, valid_cells = shuffled[:fifth], shuffled[fifth : fifth * 2]
        test = kpis[kpis.cell_id.isin(test_cells)]
        valid = kpis[kpis.cell_id.isin(valid_cells)]
        train = kpis[~kpis.cell_id.isin([*test_cells, *valid_cells])]
        params = PARAMS.model_copy(update={"balance_classes": False})
        model, _ = fit(train, valid, names, params, seed=seed)
        precision, recall, thresholds = precision_recall_curve(valid.label, model.score(valid))
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        threshold = thresholds[int(np.argmax(f1[:-1]))]
        predicted = model.score(test)
        scores.append(
            (
                float(f1_score(test.label, predicted >= threshold)),
                float(average_precision_score(test.label, predicted)),
            )
        )
    return scores


def _figure(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sets", default="telco,v11,lte", help="comma-separated: telco,v11,lte")
    args = parser.parse_args(argv)
    chosen = set(args.sets.split(","))
    console = Console(width=140)
    table = Table(title=f"test ROC AUC, entity split, {args.seeds} seeds (mean ± sd)")
    for column in ("data set", "closedloop CLI", "plain LightGBM, raw columns", "ours - plain"):
        table.add_column(column)
    sets = {
        "telco": (
            "IBM Telco churn (target >= 0.85)",
            args.data / "telco-customer-churn-ibm" / "Telco-Customer-Churn.csv",
            "telco-customer-churn-ibm",
            telco_raw,
        ),
        "v11": (
            "IBM Telco v11, 5 files (target: within 0.01)",
            args.data / V11 / "Telco_customer_churn_services.csv",
            V11,
            v11_raw,
        ),
    }
    for key, (title, csv, mapping, raw) in sets.items():
        if key not in chosen:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            mine = ours(csv, mapping, args.seeds, Path(tmp))
        plain = plain_lightgbm(*raw(args.data), args.seeds)
        gap = statistics.mean(mine) - statistics.mean(plain)
        table.add_row(title, _figure(mine), _figure(plain), f"{gap:+.4f}")
    if table.rows:
        console.print(table)
    if "lte" in chosen:
        f1s, prs = zip(*lte(args.data, args.seeds), strict=True)
        console.print(
            f"LTE KPI anomalies (Python path, not the CLI), held-out cells, {args.seeds} seeds: "
            f"F1 {_figure(list(f1s))}, PR AUC {_figure(list(prs))}"
        )


if __name__ == "__main__":
    main()
