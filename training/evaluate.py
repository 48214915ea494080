"""Model evaluation: discrimination, calibration, lift, precision at the action budget, segments."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)


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


@dataclass(frozen=True)
class ClassEvaluation:
    """A multi-class model's figures: ``metrics`` and one row per class."""

    metrics: dict[str, float]
    per_class: pd.DataFrame  # class, rows, share, precision, recall, f1, roc_auc (one vs rest)
    confusion: pd.DataFrame  # true class (rows) x predicted class (columns): counts


def evaluate_classes(
    labels: np.ndarray, probabilities: np.ndarray, classes: list[str], prior: np.ndarray
) -> ClassEvaluation:
    """Log loss (and its gain over ``prior``, the training class shares, as a no-skill model),
    macro-F1, accuracy, macro one-vs-rest ROC AUC, and precision, recall, F1 and ROC AUC per
    class, of ``probabilities`` (rows x classes) against labels 0..k-1."""
    labels = np.asarray(labels, dtype=int)
    everyone = np.arange(len(classes))
    predicted = probabilities.argmax(axis=1)
    loss = float(log_loss(labels, probabilities, labels=everyone))
    no_skill = float(log_loss(labels, np.tile(prior, (len(labels), 1)), labels=everyone))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=everyone, zero_division=0
    )
    aucs = [_safe_auc((labels == k).astype(int), probabilities[:, k]) for k in everyone]
    per_class = pd.DataFrame(
        {
            "class": classes,
            "rows": support,
            "share": support / max(len(labels), 1),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "roc_auc": aucs,
        }
    )
    metrics = {
        "rows": float(len(labels)),
        "classes": float(len(classes)),
        "log_loss": loss,
        "prior_log_loss": no_skill,
        "log_loss_gain": 1 - loss / no_skill if no_skill else float("nan"),
        "macro_f1": float(f1_score(labels, predicted, labels=everyone, average="macro")),
        "accuracy": float((predicted == labels).mean()),
        "roc_auc": float(np.nanmean(aucs)),
    }
    metrics |= {f"f1_{name}": float(value) for name, value in zip(classes, f1, strict=True)}
    confusion = pd.crosstab(
        pd.Categorical(np.take(classes, labels), categories=classes),
        pd.Categorical(np.take(classes, predicted), categories=classes),
        rownames=["true"],
        colnames=["predicted"],
        dropna=False,
    )
    return ClassEvaluation(metrics, per_class, confusion)


def single_feature_auc(
    train: pd.DataFrame, test: pd.DataFrame, features: list[str]
) -> dict[str, float]:
    """How well each feature alone separates the test label: ROC AUC of its value (of the
    training label rate of its level for a categorical), either direction, so 0.5 to 1.
    Blanks rank lowest. NaN when the test set has one class. A multi-class label (more than
    two values) is judged one class against the rest, and the best class counts."""
    if max(train["label"].max(), test["label"].max()) > 1:
        per_class = [
            single_feature_auc(
                train.assign(label=train["label"].eq(k).astype(int)),
                test.assign(label=test["label"].eq(k).astype(int)),
                features,
            )
            for k in sorted(set(train["label"]) | set(test["label"]))
        ]
        return {name: float(np.nanmax([auc[name] for auc in per_class])) for name in features}
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
