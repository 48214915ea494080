"""Model evaluation: discrimination, calibration, lift, precision at the action budget, segments."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    lift: pd.DataFrame  # by decile of score: rows, positives, rate, lift, cumulative gain
    calibration: pd.DataFrame  # by bin of predicted probability: predicted, observed, rows
    segments: pd.DataFrame  # metrics per segment value


def _safe_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


def _safe_pr(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(average_precision_score(labels, scores)) if labels.sum() else float("nan")


def lift_table(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> pd.DataFrame:
    order = np.argsort(-scores, kind="stable")
    decile = np.arange(len(order)) * bins // len(order) + 1
    frame = pd.DataFrame({"decile": decile, "label": labels[order]})
    table = frame.groupby("decile").label.agg(rows="size", positives="sum")
    base = labels.mean()
    table["rate"] = table.positives / table.rows
    table["lift"] = table.rate / base if base else np.nan
    table["cumulative_gain"] = table.positives.cumsum() / max(labels.sum(), 1)
    return table.reset_index()


def calibration_table(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> pd.DataFrame:
    edges = np.quantile(scores, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges[1:-1], scores, side="right"), 0, bins - 1)
    frame = pd.DataFrame({"bin": which, "predicted": scores, "observed": labels})
    return (
        frame.groupby("bin")
        .agg(predicted=("predicted", "mean"), observed=("observed", "mean"), rows=("bin", "size"))
        .reset_index()
    )


def evaluate(
    labels: np.ndarray, scores: np.ndarray, budget: int, segments: pd.DataFrame | None = None
) -> Evaluation:
    """All metrics of ``scores`` against ``labels``; ``segments`` holds one column per grouping."""
    labels = np.asarray(labels, dtype=int)
    scores = np.asarray(scores, dtype=float)
    top = np.argsort(-scores, kind="stable")[: min(budget, len(scores))]
    base = float(labels.mean())
    metrics = {
        "rows": float(len(labels)),
        "base_rate": base,
        "roc_auc": _safe_auc(labels, scores),
        "pr_auc": _safe_pr(labels, scores),
        "brier": float(brier_score_loss(labels, scores)),
        "precision_at_budget": float(labels[top].mean()) if len(top) else float("nan"),
        "budget": float(len(top)),
    }
    metrics["pr_auc_lift"] = metrics["pr_auc"] / base if base else float("nan")
    per_segment = []
    for column in segments.columns if segments is not None else []:
        for value, index in segments.groupby(column).indices.items():
            per_segment.append(
                {
                    "segment": column,
                    "value": str(value),
                    "rows": len(index),
                    "base_rate": float(labels[index].mean()),
                    "roc_auc": _safe_auc(labels[index], scores[index]),
                    "pr_auc": _safe_pr(labels[index], scores[index]),
                }
            )
    return Evaluation(
        metrics=metrics,
        lift=lift_table(labels, scores),
        calibration=calibration_table(labels, scores),
        segments=pd.DataFrame(per_segment),
    )


def single_feature_auc(
    train: pd.DataFrame, test: pd.DataFrame, features: list[str]
) -> dict[str, float]:
    """How well each feature alone separates the test label: ROC AUC of its value (of the
    training label rate of its level for a categorical), either direction, so 0.5 to 1.
    Blanks rank lowest. NaN when the test set has one class."""
    labels = test["label"].to_numpy(dtype=int)
    if len(np.unique(labels)) < 2:
        return dict.fromkeys(features, float("nan"))
    base = float(train["label"].mean())
    out = {}
    for name in features:
        column = test[name]
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            values = column.astype(float).to_numpy()
        else:
            rates = train.groupby(train[name].astype(str))["label"].mean()
            values = column.astype(str).map(rates).fillna(base).to_numpy(dtype=float)
            values[column.isna().to_numpy()] = np.nan
        finite = values[~np.isnan(values)]
        floor = finite.min() - 1 if len(finite) else 0.0
        auc = float(roc_auc_score(labels, np.where(np.isnan(values), floor, values)))
        out[name] = max(auc, 1 - auc)
    return out
