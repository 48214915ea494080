"""Fit a LightGBM classifier with early stopping and isotonic calibration (pure: frames in);
a multi-class target (labels 0..k-1 naming ``classes``) fits LightGBM's multiclass softmax,
stopped on the validation log loss and left uncalibrated."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from training.config import LightGBMParams
from training.model import ScoringModel


def categorical_levels(frame: pd.DataFrame, features: list[str]) -> dict[str, list[str]]:
    """The sorted levels of every non-numeric feature, as seen in training."""
    return {
        name: sorted(frame[name].dropna().astype(str).unique().tolist())
        for name in features
        if not pd.api.types.is_numeric_dtype(frame[name])
    }


def check_inputs(
    train: pd.DataFrame, valid: pd.DataFrame, features: list[str], increasing: tuple[str, ...]
) -> None:
    """ValueError when a monotone feature is not trained on or a window has one class only."""
    unknown = sorted(set(increasing) - set(features))
    if unknown:
        raise ValueError(f"monotone features not in the service: {', '.join(unknown)}")
    for name, part in (("training", train), ("validation", valid)):
        if part["label"].nunique() < 2:
            raise ValueError(f"the {name} window has only one class; widen the window")


def class_weight(train: pd.DataFrame, params: LightGBMParams, classes: list[str] | None) -> float:
    """The weight of a positive row: the class ratio when a binary target's classes are
    balanced, else 1."""
    positives = train["label"].mean()
    return (1 - positives) / positives if params.balance_classes and not classes else 1.0


def booster_config(
    params: LightGBMParams,
    features: list[str],
    increasing: tuple[str, ...],
    seed: int,
    weight: float,
    classes: list[str] | None = None,
) -> dict[str, object]:
    """LightGBM's parameters of one fit, whichever engine runs it."""
    objective: dict[str, object] = {
        "objective": "binary",
        # class weights distort the log loss: ranking picks the stop, isotonic calibrates after
        "metric": "auc",
        "scale_pos_weight": weight,
        "monotone_constraints": [int(f in increasing) for f in features],
        "monotone_constraints_method": "advanced",
    }
    if classes:
        objective = {"objective": "multiclass", "metric": "multi_logloss"}
        objective["num_class"] = len(classes)
    return {
        **objective,
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "min_child_samples": params.min_child_samples,
        "feature_fraction": params.feature_fraction,
        "bagging_fraction": params.bagging_fraction,
        "bagging_freq": params.bagging_freq,
        "lambda_l2": params.lambda_l2,
        "seed": seed,
        "deterministic": True,
        "num_threads": 2,
        "verbosity": -1,
    }


def calibrated(
    booster: lgb.Booster, features: list[str], categories: dict[str, list[str]], valid: pd.DataFrame
) -> ScoringModel:
    """The scoring model of a binary target's booster, calibrated (isotonic) on ``valid``."""
    uncalibrated = ScoringModel(booster, features, categories, np.array([]), np.array([]))
    raw = uncalibrated.raw_scores(valid)
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(raw, valid["label"])
    return ScoringModel(
        booster, features, categories, isotonic.X_thresholds_, isotonic.y_thresholds_
    )


def fit(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    params: LightGBMParams,
    seed: int,
    increasing: tuple[str, ...] = (),
    classes: list[str] | None = None,
) -> tuple[ScoringModel, dict[str, float]]:
    """Train on ``train``, stop early and calibrate on ``valid``; both carry a ``label`` column.

    Features named in ``increasing`` are constrained so that a rise never lowers the score
    (binary targets; a class has no direction).
    """
    check_inputs(train, valid, features, increasing)
    draft = ScoringModel(
        booster=None,  # type: ignore[arg-type]
        features=features,
        categories=categorical_levels(train, features),
        calibration_x=np.array([]),
        calibration_y=np.array([]),
        classes=list(classes or []),
    )
    weight = class_weight(train, params, classes)
    config = booster_config(params, features, increasing, seed, weight, classes)
    train_set = lgb.Dataset(draft.design(train), label=train["label"], free_raw_data=False)
    valid_set = lgb.Dataset(draft.design(valid), label=valid["label"], reference=train_set)
    booster = lgb.train(
        config,
        train_set,
        num_boost_round=params.num_boost_round,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    fitted = {"best_iteration": float(booster.best_iteration), "scale_pos_weight": weight}
    if classes:
        uncalibrated = ScoringModel(
            booster, features, draft.categories, np.array([]), np.array([]), draft.classes
        )
        return uncalibrated, fitted
    return calibrated(booster, features, draft.categories, valid), fitted
