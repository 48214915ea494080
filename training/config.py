"""Training parameters: one section per model in ``params.yaml`` (read at the CLI edge) over
the defaults of the model's spec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from closedloop.models import GateConfig, ModelName, spec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LightGBMParams(_Strict):
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(40, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    lambda_l2: float = Field(1.0, ge=0)
    num_boost_round: int = Field(600, ge=1)
    early_stopping_rounds: int = Field(40, ge=1)
    balance_classes: bool = Field(True, description="weight positives by the class ratio")


SNAPSHOT_LIGHTGBM = LightGBMParams(
    learning_rate=0.02, num_leaves=4, num_boost_round=3000, early_stopping_rounds=200
)
"""LightGBM of snapshot data: one row per entity, often a few thousand, where deep trees learn
the training rows by heart; shallow trees learnt slowly (and stopped late) generalise better."""


class TuneConfig(_Strict):
    """Optional Optuna search over the LightGBM parameters before the final fit."""

    trials: int = Field(0, ge=0, description="trials to run; 0 trains with the given parameters")
    timeout_seconds: float | None = Field(
        None, gt=0, description="stop starting trials after this long"
    )


class SplitConfig(_Strict):
    """How rows are split for training, validation and test, and the shares of each.

    ``by: time`` splits the time-ordered snapshot instants (later never trains); ``by: entity``
    splits the entities, stratified by label, so no entity is in two parts (snapshot data);
    ``auto`` takes ``entity`` when the data set's mapping says ``shape: snapshot``, else ``time``.
    """

    by: Literal["auto", "time", "entity"] = "auto"
    train: float = Field(0.6, gt=0)
    valid: float = Field(0.2, gt=0)
    test: float = Field(0.2, gt=0)
    folds: int = Field(
        5, ge=0, description="entity split: k-fold test figures over this many folds (0: none)"
    )

    @model_validator(mode="after")
    def _sums_to_one(self) -> Self:
        if abs(self.train + self.valid + self.test - 1) > 1e-9:
            raise ValueError("train + valid + test must be 1")
        if self.folds in (1, 2):
            raise ValueError("folds must be 0 (no k-fold figures) or at least 3")
        return self


class TrainConfig(_Strict):
    """How one model is trained, evaluated and gated."""

    service: str | None = Field(
        None,
        description="feature service; default: the data set's service beside the built-in one "
        "when one data set carries attributes for the model, else the built-in one",
    )
    horizon_hours: int = Field(gt=0, description="label: the event happens within this horizon")
    snapshot_every_hours: int = Field(gt=0, description="spacing of training snapshots")
    split: SplitConfig = SplitConfig()
    target: Literal["auto", "binary", "classes"] = Field(
        "auto",
        description="binary: the event; classes: the multi-class target a mapping declares "
        "('classes: true' on the label table's class column); auto: classes when one is declared",
    )
    lightgbm: LightGBMParams = Field(
        LightGBMParams(), description="LightGBM of a time split (time series: many snapshots)"
    )
    snapshot_lightgbm: LightGBMParams = Field(
        SNAPSHOT_LIGHTGBM, description="LightGBM of an entity split (snapshot data: one row each)"
    )
    tune: TuneConfig = TuneConfig()
    gate: GateConfig = GateConfig()
    action_budget: int = Field(ge=1, description="top-k for precision at the budget")
    increasing: tuple[str, ...] = Field(
        (), description="features whose rise must never lower the risk (monotone constraints)"
    )
    seed: int = 7

    def booster(self, by: str) -> LightGBMParams:
        """The LightGBM parameters of a split ``by`` time or entity."""
        return self.snapshot_lightgbm if by == "entity" else self.lightgbm


def train_config(name: str, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """How model ``name`` trains: its spec's defaults, overridden by ``overrides`` (a
    ``train_<name>`` section of ``params.yaml``, nested mappings merged key by key)."""
    model = spec(name)
    base = TrainConfig(
        horizon_hours=model.label.horizon_hours,
        snapshot_every_hours=model.label.snapshot_every_hours,
        gate=model.gate,
        action_budget=model.action_budget,
        increasing=model.increasing,
    ).model_dump()
    return TrainConfig.model_validate(merged(base, dict(overrides or {})))


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, nested mappings merged key by key."""
    out = dict(base)
    for key, value in override.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = merged(base[key], value) if nested else value
    return out


def churn_defaults() -> TrainConfig:
    return train_config(ModelName.CHURN)


def fault_defaults() -> TrainConfig:
    return train_config(ModelName.FAULT)
