"""Models on the two public data sets, imported through their mappings (rerunnable).

    python -m bench.real_data [--data ../shared/data] [--seeds 5]

- IBM Telco churn: imported into canonical tables, churn_v1 features built from them, LightGBM
  trained with the project's trainer; ROC AUC on a stratified 20 % holdout, per seed, mean ± sd.
- LTE cell KPIs: imported; per-sample anomaly model on the canonical KPIs and time of day,
  split by cell (held-out cells never train) per seed; F1 at the threshold chosen on the
  validation cells, and PR AUC.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve, roc_auc_score
from sklearn.model_selection import train_test_split

from training.config import LightGBMParams

ROOT = Path(__file__).resolve().parents[1]
AS_OF = datetime(2025, 1, 1, tzinfo=UTC)
PARAMS = LightGBMParams(learning_rate=0.03, num_leaves=15, min_child_samples=30)


def _imported(data: Path, csv: str, mapping: str, home: Path):
    """The offline store of ``home`` after importing one shared CSV through its mapping."""
    from features.csv_import import import_csv
    from features.offline import OfflineStore

    import_csv(data / csv, ROOT / "features" / "mappings" / f"{mapping}.yaml", home, AS_OF)
    return OfflineStore(home)


def telco(data: Path, seeds: int) -> list[float]:
    from features.pipeline import build_features
    from features.repo import CUSTOMER_ENGAGEMENT, CUSTOMER_EXPERIENCE, CUSTOMER_PROFILE
    from training.trainer import fit

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        offline = _imported(
            data,
            "telco-customer-churn-ibm/Telco-Customer-Churn.csv",
            "telco-customer-churn-ibm",
            home,
        )
        build_features(home, AS_OF)
        features = pd.read_parquet(home / "features" / "customer_daily.parquet")
        labels = offline.read("churn_labels")
    frame = features.merge(labels[["customer_id", "churned"]], on="customer_id")
    frame["label"] = frame.pop("churned").astype(int)
    names = [
        n
        for n in (*CUSTOMER_PROFILE, *CUSTOMER_EXPERIENCE, *CUSTOMER_ENGAGEMENT)
        if frame[n].notna().any() and frame[n].nunique() > 1
    ]
    aucs = []
    for seed in range(seeds):
        rest, test = train_test_split(frame, test_size=0.2, stratify=frame.label, random_state=seed)
        train, valid = train_test_split(rest, test_size=0.2, stratify=rest.label, random_state=seed)
        model, _ = fit(train, valid, names, PARAMS, seed=seed)
        aucs.append(float(roc_auc_score(test.label, model.score(test))))
    return aucs


def lte(data: Path, seeds: int) -> list[tuple[float, float]]:
    from training.trainer import fit

    with tempfile.TemporaryDirectory() as tmp:
        offline = _imported(
            data, "lte-cell-kpi-anomaly/cell_kpi_train.csv", "lte-cell-kpi-anomaly", Path(tmp)
        )
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
        rng = np.random.default_rng(seed)
        shuffled = rng.permutation(cells)
        test_cells, valid_cells = (
            shuffled[: len(cells) // 5],
            shuffled[len(cells) // 5 : len(cells) // 5 * 2],
        )
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    console = Console(width=120)
    aucs = telco(args.data, args.seeds)
    console.print(
        f"IBM Telco churn, stratified 20 % holdout, {args.seeds} seeds: ROC AUC "
        f"{statistics.mean(aucs):.4f} ± {statistics.stdev(aucs):.4f} "
        f"({', '.join(f'{a:.4f}' for a in aucs)}; target >= 0.85)"
    )
    lte_scores = lte(args.data, args.seeds)
    f1s, prs = zip(*lte_scores, strict=True)
    console.print(
        f"LTE KPI anomalies, held-out cells, {args.seeds} seeds: "
        f"F1 {statistics.mean(f1s):.4f} ± {statistics.stdev(f1s):.4f}, "
        f"PR AUC {statistics.mean(prs):.4f} ± {statistics.stdev(prs):.4f}"
    )


if __name__ == "__main__":
    main()
