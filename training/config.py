"""Training parameters: one section per model in ``params.yaml`` (read at the CLI edge)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


class TuneConfig(_Strict):
    """Optional Optuna search over the LightGBM parameters before the final fit."""

    trials: int = Field(0, ge=0, description="trials to run; 0 trains with the given parameters")
    timeout_seconds: float | None = Field(
        None, gt=0, description="stop starting trials after this long"
    )


class GateConfig(_Strict):
    """When a challenger may take the champion alias."""

    metric: Literal["pr_auc", "roc_auc"] = "pr_auc"
    margin: float = Field(0.0, ge=0, description="challenger must beat the champion by this")
    min_roc_auc: float = Field(0.6, ge=0, le=1)
    min_pr_auc_lift: float = Field(
        1.5, ge=0, description="PR AUC must reach this many times the base rate"
    )


class SplitConfig(_Strict):
    """Shares of the time-ordered snapshot instants for training, validation and test."""

    train: float = Field(0.6, gt=0)
    valid: float = Field(0.2, gt=0)
    test: float = Field(0.2, gt=0)

    @model_validator(mode="after")
    def _sums_to_one(self) -> Self:
        if abs(self.train + self.valid + self.test - 1) > 1e-9:
            raise ValueError("train + valid + test must be 1")
        return self


class TrainConfig(_Strict):
    """How one model is trained, evaluated and gated."""

    service: str
    horizon_hours: int = Field(gt=0, description="label: the event happens within this horizon")
    snapshot_every_hours: int = Field(gt=0, description="spacing of training snapshots")
    split: SplitConfig = SplitConfig()
    lightgbm: LightGBMParams = LightGBMParams()
    tune: TuneConfig = TuneConfig()
    gate: GateConfig = GateConfig()
    action_budget: int = Field(100, ge=1, description="top-k for precision at the budget")
    increasing: tuple[str, ...] = Field(
        (), description="features whose rise must never lower the risk (monotone constraints)"
    )
    seed: int = 7


CHURN_INCREASING = (
    "outage_minutes_1d",
    "outage_minutes_7d",
    "outage_minutes_30d",
    "degraded_minutes_7d",
    "degraded_minutes_30d",
    "failed_sessions_7d",
    "failed_sessions_30d",
    "complaints_30d",
    "late_invoices_90d",
)
FAULT_INCREASING = ("loss_trend_6h", "prb_trend_6h", "packet_loss_6h", "alarms_24h")


def churn_defaults() -> TrainConfig:
    return TrainConfig(
        service="churn_v1",
        horizon_hours=30 * 24,
        snapshot_every_hours=7 * 24,
        increasing=CHURN_INCREASING,
    )


def fault_defaults() -> TrainConfig:
    return TrainConfig(
        service="fault_v1",
        horizon_hours=6,
        snapshot_every_hours=2,
        increasing=FAULT_INCREASING,
    )


DEFAULTS = {"churn": churn_defaults, "fault": fault_defaults}
