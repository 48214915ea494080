"""Uplift models per treatment: LightGBM learners of a randomised trial log.

The ratio learner (the default) fits one churn classifier on every row of the trial, each arm's
rows shifted by the arm's log ratio of leaving rates to the control's (an offset on the
log-odds): an action multiplies the chance of leaving, so every row teaches who leaves and the
trial's arms teach by how much each action changes it. An arm's uplift is the classifier's
chance of leaving less that chance shifted by the arm. The T- and X-learners model each arm
apart: for each arm (credit, message, offer) one classifier learns the chance of leaving within the
horizon among the customers given that arm, one more among the held-out (control) customers;
the T-learner's uplift of an arm for a customer is the control's chance less the arm's: the fall
in churn probability the action buys (negative: it drives the customer away). The X-learner
regresses the imputed effects on each side and blends them by the arm's share. The control
model is the churn score of an untreated customer. Qini and AUUC are measured on a later trial
than any the models learned from, and gate the ``champion`` alias of the registered model
``uplift``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import lightgbm as lgb
import mlflow
import mlflow.artifacts
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from closedloop.settings import Settings
from closedloop.world import catalog
from closedloop.world.simulate import Truth
from closedloop.world.treatment import OBSERVED, TreatmentLog, randomised_log
from training import registry

NAME = "uplift"
CONTROL = "control"
ARMS: tuple[str, ...] = ("credit", "message", "offer")
META_FILE = "uplift.json"
LEARNER_NAMES = {"r": "ratio learner", "t": "T-learner", "x": "X-learner"}


class UpliftConfig(BaseModel):
    """How the uplift models are learned and gated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    horizon_days: int = Field(30, ge=7, description="outcome: leaves within this many days")
    trial_every_days: int = Field(7, ge=1, description="spacing of the randomised trials")
    trials: int = Field(4, ge=1, description="trials to learn from, before the held-out one")
    holdout: float = Field(0.25, gt=0, lt=1, description="share of each trial kept untreated")
    learner: Literal["r", "t", "x"] = Field("r", description="ratio, T- or X-learner")
    num_leaves: int = Field(4, ge=2)
    trees: int = Field(100, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    min_child_samples: int = Field(400, ge=1)
    min_qini: float = Field(0.0, description="each arm's held-out Qini must exceed this")
    margin: float = Field(0.0, ge=0, description="mean Qini must beat the champion's by this")
    seed: int = 7


@dataclass(frozen=True)
class UpliftModel:
    """Boosters on the observed features: the control's (every learner; the ratio learner's
    only one), one per arm (T, X) and, per arm, effect regressors on the treated and on the
    control rows (X)."""

    learner: Literal["r", "t", "x"]
    boosters: dict[str, lgb.Booster]  # CONTROL; T, X: each arm; X: "<arm>_tau1", "<arm>_tau0"
    treated_share: dict[str, float]  # X: the arm's share of its trial rows (the propensity)
    offset: dict[str, float] = field(default_factory=dict)  # ratio learner: the log-odds the
    # control's rows start from (its leaving rate), and each arm's (that rate times its ratio)

    def _log_odds(self, x: pd.DataFrame) -> np.ndarray:
        return self.boosters[CONTROL].predict(x, raw_score=True) + self.offset[CONTROL]

    def churn(self, features: pd.DataFrame) -> np.ndarray:
        """Chance of leaving within the horizon with no action."""
        if self.learner == "r":
            return _chance(self._log_odds(_design(features)))
        return self.boosters[CONTROL].predict(_design(features))

    def uplift(self, features: pd.DataFrame) -> dict[str, np.ndarray]:
        """Fall in the chance of leaving each arm buys, by arm."""
        x = _design(features)
        if self.learner == "r":
            base = self._log_odds(x)
            return {
                arm: _chance(base) - _chance(base - self.offset[CONTROL] + start)
                for arm, start in self.offset.items()
                if arm != CONTROL
            }
        if self.learner == "x":
            return {
                arm: share * self.boosters[f"{arm}_tau0"].predict(x)
                + (1 - share) * self.boosters[f"{arm}_tau1"].predict(x)
                for arm, share in self.treated_share.items()
            }
        base = self.boosters[CONTROL].predict(x)
        return {arm: base - self.boosters[arm].predict(x) for arm in ARMS if arm in self.boosters}

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, booster in self.boosters.items():
            booster.save_model(str(folder / f"{name}.txt"))
        meta = {"learner": self.learner, "boosters": sorted(self.boosters)}
        meta |= {"treated_share": self.treated_share, "offset": self.offset}
        (folder / META_FILE).write_text(json.dumps(meta))
        return folder

    @classmethod
    def load(cls, folder: Path) -> UpliftModel:
        meta = json.loads((folder / META_FILE).read_text())
        boosters = {n: lgb.Booster(model_file=str(folder / f"{n}.txt")) for n in meta["boosters"]}
        return cls(meta["learner"], boosters, meta["treated_share"], meta.get("offset", {}))


def _chance(log_odds: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-log_odds))


def _design(features: pd.DataFrame) -> pd.DataFrame:
    return features[list(OBSERVED)].astype(float)


def _params(config: UpliftConfig, objective: str) -> dict:
    return {
        "objective": objective,
        "num_leaves": config.num_leaves,
        "learning_rate": config.learning_rate,
        "min_child_samples": config.min_child_samples,
        "seed": config.seed,
        "verbose": -1,
        "num_threads": 1,
    }


def fit_ratio(log: TreatmentLog, config: UpliftConfig) -> UpliftModel:
    """The ratio learner: the control's leaving rate and each arm's ratio to it, then one
    classifier on every row, starting from its group's rate (an offset on the log-odds)."""
    y = log.left.astype(float)
    groups = {CONTROL: -1} | {arm: catalog.ACTIONS.index(arm) for arm in ARMS}
    rate = {}
    for name, arm in groups.items():
        rows = log.arm == arm
        if not y[rows].any():
            raise ValueError(f"the treatment log has no leaver among its {name} rows")
        rate[name] = float(y[rows].mean())
    ratio = {name: rate[name] / rate[CONTROL] for name in groups}
    offset = {
        name: float(np.log(rate[CONTROL] / (1 - rate[CONTROL])) + np.log(ratio[name]))
        for name in groups
    }
    start = np.zeros(len(y))
    for name, arm in groups.items():
        start[log.arm == arm] = offset[name]
    data = lgb.Dataset(_design(log.features), label=y, init_score=start)
    booster = lgb.train(_params(config, "binary"), data, config.trees)
    return UpliftModel("r", {CONTROL: booster}, {}, offset)


def fit_uplift(log: TreatmentLog, config: UpliftConfig) -> UpliftModel:
    """The ratio learner (``fit_ratio``), or the T-learner's classifiers per arm and control;
    for the X-learner also, per arm, a regressor of the imputed effect on the arm's rows
    (control model less the outcome) and one on the control rows (the outcome less the arm's
    model), blended by the arm's share."""
    if config.learner == "r":
        return fit_ratio(log, config)
    x = _design(log.features)
    y = log.left.astype(float)
    rows = {CONTROL: log.arm == -1} | {arm: log.arm == catalog.ACTIONS.index(arm) for arm in ARMS}
    boosters = {}
    for arm, chosen in rows.items():
        if not chosen.any():
            raise ValueError(f"the treatment log has no {arm} rows")
        data = lgb.Dataset(x[chosen], label=y[chosen])
        boosters[arm] = lgb.train(_params(config, "binary"), data, config.trees)
    if config.learner == "t":
        return UpliftModel("t", boosters, {})
    control, shares = rows[CONTROL], {}
    base = boosters[CONTROL].predict(x)
    for arm in ARMS:
        treated = rows[arm]
        imputed_treated = base[treated] - y[treated]
        imputed_control = y[control] - boosters[arm].predict(x[control])
        regression = _params(config, "regression")
        boosters[f"{arm}_tau1"] = lgb.train(
            regression, lgb.Dataset(x[treated], label=imputed_treated), config.trees
        )
        boosters[f"{arm}_tau0"] = lgb.train(
            regression, lgb.Dataset(x[control], label=imputed_control), config.trees
        )
        shares[arm] = float(treated.sum() / (treated.sum() + control.sum()))
    return UpliftModel("x", boosters, shares)


def qini(uplift: np.ndarray, treated: np.ndarray, stayed: np.ndarray) -> tuple[float, float]:
    """(Qini coefficient, AUUC) of a ranking, both per customer: customers in descending
    predicted uplift; the curve at k is stayers among the first k treated less stayers among the
    first k controls scaled to the treated count; Qini is its mean height above the straight
    line to its end, AUUC its mean height, each over the number of customers."""
    order = np.argsort(-uplift, kind="stable")
    t, y = treated[order].astype(float), stayed[order].astype(float)
    n_t, n_c = np.cumsum(t), np.cumsum(1 - t)
    y_t, y_c = np.cumsum(y * t), np.cumsum(y * (1 - t))
    curve = y_t - np.divide(y_c * n_t, n_c, out=np.zeros_like(y_c), where=n_c > 0)
    n = len(order)
    line = curve[-1] * np.arange(1, n + 1) / n
    return float((curve - line).mean() / n), float(curve.mean() / n)


def held_out_qini(model: UpliftModel, log: TreatmentLog) -> dict[str, float]:
    """Each arm's Qini and AUUC against the control rows of a trial the model did not see."""
    uplift = model.uplift(log.features)
    control = log.arm == -1
    metrics = {}
    for arm, predicted in uplift.items():
        rows = control | (log.arm == catalog.ACTIONS.index(arm))
        metrics[f"qini_{arm}"], metrics[f"auuc_{arm}"] = qini(
            predicted[rows], ~control[rows], ~log.left[rows]
        )
    metrics["qini_mean"] = float(np.mean([metrics[f"qini_{arm}"] for arm in uplift]))
    return metrics


def stack(logs: Sequence[TreatmentLog]) -> TreatmentLog:
    return TreatmentLog(
        features=pd.concat([g.features for g in logs], ignore_index=True),
        customer=np.concatenate([g.customer for g in logs]),
        arm=np.concatenate([g.arm for g in logs]),
        left=np.concatenate([g.left for g in logs]),
        day=min(g.day for g in logs),
        horizon=logs[0].horizon,
    )


def trial_logs(
    truth: Truth, before: int, config: UpliftConfig
) -> tuple[TreatmentLog, TreatmentLog]:
    """(learning trials, held-out trial), every outcome observed before day ``before``: the
    held-out trial is the latest, its horizon ending the day before; the others earlier."""
    kinds = tuple(catalog.ACTIONS.index(arm) for arm in ARMS)
    last = before - config.horizon_days
    days = [last - k * config.trial_every_days for k in range(config.trials + 1)]
    if days[-1] < 1:
        raise ValueError(
            f"{config.trials + 1} trials {config.trial_every_days} days apart with a "
            f"{config.horizon_days}-day horizon need {1 - days[-1]} more days before day {before}"
        )
    logs = [
        randomised_log(truth, d, config.horizon_days, kinds, config.holdout, config.seed)
        for d in days
    ]
    return stack(logs[1:]), logs[0]


def gate(
    config: UpliftConfig,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    hold: registry.Hold | None = None,
) -> registry.GateDecision:
    """Each arm's Qini above the bar, then the champion's mean Qini beaten by the margin; never
    while the champion is held."""
    reasons = registry.held(hold) + [
        f"{k} {v:.5f} is not above the bar {config.min_qini}"
        for k, v in challenger.items()
        if k.startswith("qini_") and k != "qini_mean" and not v > config.min_qini
    ]
    ours = challenger["qini_mean"]
    theirs = None if champion is None else champion["qini_mean"]
    wins, verdict = registry.versus_champion("qini_mean", ours, theirs, config.margin, digits=5)
    return registry.GateDecision(not reasons and wins, [*reasons, verdict], ours, theirs)


@dataclass(frozen=True)
class UpliftOutcome:
    version: str
    metrics: dict[str, float]
    decision: registry.GateDecision
    rows: int


def train_uplift(
    settings: Settings, truth: Truth, before: int, config: UpliftConfig
) -> UpliftOutcome:
    """Learn from the trials before day ``before``, measure on the held-out one, log to MLflow,
    register as ``uplift`` and gate the champion on the same held-out trial."""
    learn, held = trial_logs(truth, before, config)
    model = fit_uplift(learn, config)
    metrics = held_out_qini(model, held)
    registry.connect(settings)
    experiment_id = registry.experiment(settings, f"closedloop-{NAME}")
    champion = load_champion()
    champion_metrics = None if champion is None else held_out_qini(champion[1], held)
    decision = gate(config, metrics, champion_metrics, registry.hold_of(NAME))
    with mlflow.start_run(experiment_id=experiment_id):
        mlflow.log_params(
            {
                **config.model_dump(),
                "before_day": before,
                "world_seed": truth.config.seed,
            }
        )
        mlflow.set_tags(
            {
                "feature_service": "world-observed",
                "feature_list": ",".join(OBSERVED),
                "data_fingerprint": registry.fingerprint(learn.features),
                "git_commit": registry.git_commit(),
                "window_train": f"trial days {learn.day}..{held.day - 1} of seed "
                f"{truth.config.seed}",
                "window_test": f"trial day {held.day}",
            }
        )
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        with tempfile.TemporaryDirectory() as tmp:
            folder = model.save(Path(tmp) / "uplift")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=UpliftPyfunc(),
                artifacts={"uplift": str(folder)},
                registered_model_name=NAME,
            )
    version = str(info.registered_model_version)
    registry.record_decision(NAME, version, decision)
    return UpliftOutcome(version, metrics, decision, len(learn.arm))


class UpliftPyfunc(mlflow.pyfunc.PythonModel):
    """The MLflow face of an uplift model: ``predict`` returns the uplift of each arm."""

    def load_context(self, context) -> None:
        self.model = UpliftModel.load(Path(context.artifacts["uplift"]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return pd.DataFrame(self.model.uplift(model_input))


def load_champion() -> tuple[str, UpliftModel] | None:
    """(version, model) of the ``uplift`` champion, None without one (MLflow connected)."""
    found = registry.champion_version(NAME)
    if found is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(found.uri, dst_path=tmp))
        return found.version, UpliftModel.load(local / "artifacts" / "uplift")
