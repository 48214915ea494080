"""The upsell model: a LightGBM classifier of who accepts an upgrade offer, from logged offers.

It learns from the upgrade offers logged on the world (:func:`closedloop.world.upgrade.offer_log`:
a random share of the customers who can upgrade, offered on a day, with their answers) on what
the operator observes that day (the churn models' features and the usage signals). The chance
it gives times the upgrade's MRR gain is the expected MRR an offer adds; the policy's upgrade
rule and the backtest's upsell row rank offers by that over ``value_months`` less the offer's
cost. ROC AUC and log loss are measured on a later day's offers than any it learned from, and
gate the ``champion`` alias of the registered model ``upsell``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import mlflow
import mlflow.artifacts
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import log_loss, roc_auc_score

from closedloop.settings import Settings
from closedloop.world.simulate import Truth
from closedloop.world.treatment import OBSERVED
from closedloop.world.upgrade import USAGE_SIGNALS, OfferLog, offer_log
from training import registry

NAME = "upsell"
FEATURES = (*OBSERVED, *USAGE_SIGNALS)
MODEL_FILE = "upsell.txt"


class UpsellConfig(BaseModel):
    """How the upsell model is learned and gated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    offer_every_days: int = Field(7, ge=1, description="spacing of the logged offer days")
    offer_days: int = Field(4, ge=1, description="offer days to learn from, before the held-out")
    share: float = Field(0.3, gt=0, le=1, description="share of upgradable customers offered")
    num_leaves: int = Field(8, ge=2)
    trees: int = Field(150, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    min_child_samples: int = Field(50, ge=1)
    min_auc: float = Field(0.6, description="held-out ROC AUC must exceed this")
    margin: float = Field(0.0, ge=0, description="ROC AUC must beat the champion's by this")
    seed: int = 11


@dataclass(frozen=True)
class UpsellModel:
    booster: lgb.Booster

    def chance(self, features: pd.DataFrame) -> np.ndarray:
        """Chance of accepting an upgrade offer."""
        return self.booster.predict(_design(features))

    def expected_gain(self, features: pd.DataFrame) -> np.ndarray:
        """Expected MRR an offer adds: the chance of accepting × the upgrade's MRR gain."""
        return self.chance(features) * features["upgrade_mrr_gain"].to_numpy()

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / MODEL_FILE))
        return folder

    @classmethod
    def load(cls, folder: Path) -> UpsellModel:
        return cls(lgb.Booster(model_file=str(folder / MODEL_FILE)))


def _design(features: pd.DataFrame) -> pd.DataFrame:
    return features[list(FEATURES)].astype(float)


def fit_upsell(log: OfferLog, config: UpsellConfig) -> UpsellModel:
    if not log.accepted.any() or log.accepted.all():
        raise ValueError(f"the {len(log.accepted)} logged offers need acceptances and refusals")
    params = {
        "objective": "binary",
        "num_leaves": config.num_leaves,
        "learning_rate": config.learning_rate,
        "min_child_samples": config.min_child_samples,
        "seed": config.seed,
        "verbose": -1,
        "num_threads": 1,
    }
    data = lgb.Dataset(_design(log.features), label=log.accepted.astype(float))
    return UpsellModel(lgb.train(params, data, config.trees))


def held_out_metrics(model: UpsellModel, log: OfferLog) -> dict[str, float]:
    """ROC AUC and log loss of the acceptance chances on offers the model did not see."""
    chance = model.chance(log.features)
    return {
        "roc_auc": float(roc_auc_score(log.accepted, chance)),
        "log_loss": float(log_loss(log.accepted, np.clip(chance, 1e-6, 1 - 1e-6))),
        "accept_rate": float(log.accepted.mean()),
    }


def stack(logs: Sequence[OfferLog]) -> OfferLog:
    return OfferLog(
        features=pd.concat([g.features for g in logs], ignore_index=True),
        customer=np.concatenate([g.customer for g in logs]),
        accepted=np.concatenate([g.accepted for g in logs]),
        day=min(g.day for g in logs),
    )


def offer_logs(truth: Truth, before: int, config: UpsellConfig) -> tuple[OfferLog, OfferLog]:
    """(learning offers, held-out offers): the held-out day is the day before ``before``, the
    learning days earlier, ``offer_every_days`` apart."""
    days = [before - 1 - k * config.offer_every_days for k in range(config.offer_days + 1)]
    if days[-1] < 1:
        raise ValueError(
            f"{config.offer_days + 1} offer days {config.offer_every_days} days apart need "
            f"{1 - days[-1]} more days before day {before}"
        )
    logs = [offer_log(truth, d, config.share, config.seed) for d in days]
    return stack(logs[1:]), logs[0]


def gate(
    config: UpsellConfig,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    hold: registry.Hold | None = None,
) -> registry.GateDecision:
    """ROC AUC above the bar, then the champion's beaten by the margin; never while held."""
    ours = challenger["roc_auc"]
    reasons = registry.held(hold)
    if not ours > config.min_auc:
        reasons.append(f"roc_auc {ours:.4f} is not above the bar {config.min_auc}")
    theirs = None if champion is None else champion["roc_auc"]
    wins, verdict = registry.versus_champion("roc_auc", ours, theirs, config.margin)
    return registry.GateDecision(not reasons and wins, [*reasons, verdict], ours, theirs)


@dataclass(frozen=True)
class UpsellOutcome:
    version: str
    metrics: dict[str, float]
    decision: registry.GateDecision
    rows: int


def train_upsell(
    settings: Settings, truth: Truth, before: int, config: UpsellConfig
) -> UpsellOutcome:
    """Learn from the offers logged before day ``before``, measure on the held-out day's, log
    to MLflow, register as ``upsell`` and gate the champion on the same held-out offers."""
    learn, held = offer_logs(truth, before, config)
    model = fit_upsell(learn, config)
    metrics = held_out_metrics(model, held)
    registry.connect(settings)
    experiment_id = registry.experiment(settings, f"closedloop-{NAME}")
    champion = load_champion()
    champion_metrics = None if champion is None else held_out_metrics(champion[1], held)
    decision = gate(config, metrics, champion_metrics, registry.hold_of(NAME))
    with mlflow.start_run(experiment_id=experiment_id):
        mlflow.log_params(
            {**config.model_dump(), "before_day": before, "world_seed": truth.config.seed}
        )
        mlflow.set_tags(
            {
                "feature_service": "world-observed",
                "feature_list": ",".join(FEATURES),
                "data_fingerprint": registry.fingerprint(learn.features),
                "git_commit": registry.git_commit(),
                "window_train": f"offer days {learn.day}..{held.day - 1} of seed "
                f"{truth.config.seed}",
                "window_test": f"offer day {held.day}",
            }
        )
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        with tempfile.TemporaryDirectory() as tmp:
            folder = model.save(Path(tmp) / NAME)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=UpsellPyfunc(),
                artifacts={NAME: str(folder)},
                registered_model_name=NAME,
            )
    version = str(info.registered_model_version)
    registry.record_decision(NAME, version, decision)
    return UpsellOutcome(version, metrics, decision, len(learn.accepted))


class UpsellPyfunc(mlflow.pyfunc.PythonModel):
    """The MLflow face of the upsell model: ``predict`` returns the chance of accepting."""

    def load_context(self, context) -> None:
        self.model = UpsellModel.load(Path(context.artifacts[NAME]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return self.model.chance(model_input)


def load_champion() -> tuple[str, UpsellModel] | None:
    """(version, model) of the ``upsell`` champion, None without one (MLflow connected)."""
    found = registry.champion_version(NAME)
    if found is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(found.uri, dst_path=tmp))
        return found.version, UpsellModel.load(local / "artifacts" / NAME)
