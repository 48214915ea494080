"""Optional hyperparameter search with Optuna: TPE over LightGBM's main knobs (pure: frames in).

Each trial fits on the training window and is judged by PR AUC of its raw scores on the
validation window; the test window stays untouched for the gate.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
import pandas as pd
from sklearn.metrics import average_precision_score

from training.config import LightGBMParams, TuneConfig
from training.trainer import fit


@dataclass(frozen=True)
class SearchResult:
    params: LightGBMParams  # the base parameters with the best trial's values
    valid_pr_auc: float  # the best trial's validation PR AUC
    trials: int  # trials completed


def _suggest(trial: optuna.Trial, base: LightGBMParams) -> LightGBMParams:
    return base.model_copy(
        update={
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 8, 128, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 10, 200, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
        }
    )


def search(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    base: LightGBMParams,
    tune: TuneConfig,
    seed: int,
    increasing: tuple[str, ...] = (),
) -> SearchResult:
    """The best of ``tune.trials`` TPE trials (seeded, so a rerun finds the same)."""

    def objective(trial: optuna.Trial) -> float:
        params = _suggest(trial, base)
        model, _ = fit(train, valid, features, params, seed, increasing)
        return float(average_precision_score(valid["label"], model.raw_scores(valid)))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=tune.trials, timeout=tune.timeout_seconds)
    completed = [t for t in study.trials if t.state is optuna.trial.TrialState.COMPLETE]
    return SearchResult(
        params=base.model_copy(update=study.best_params),
        valid_pr_auc=float(study.best_value),
        trials=len(completed),
    )
