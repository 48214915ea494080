"""The model contract: one typed spec per model, read by training, serving, monitoring and actions.

A spec names what a model is (its feature service, the entity it scores and that entity's join
key, the rule that labels a snapshot and its horizon, the segments it is evaluated on, the
metrics it reports, the gate a challenger must pass and who owns it). The training parameters in
``params.yaml`` override the spec's defaults; nothing else writes these facts.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelName(StrEnum):
    """The registered models."""

    CHURN = "churn"
    FAULT = "fault"


class LabelKind(StrEnum):
    """How a snapshot at instant t is labelled from the events in ``[t, t + horizon)``."""

    LEAVES = "the customer leaves within the horizon"
    FAULT_STARTS = "a new fault starts on the cell within the horizon (ongoing faults left out)"


class DataShape(StrEnum):
    """How a data set records its entities: over time, or once each with the label known."""

    TIME_SERIES = "time_series"  # dated rows: labels by horizon, split by time
    SNAPSHOT = "snapshot"  # one row per entity, label known, no time axis: split by entity


class LabelRule(_Frozen):
    """The label of a snapshot and the defaults of its horizon and snapshot grid."""

    kind: LabelKind
    events: str = Field(description="the canonical table holding the events that label")
    outright: str | None = Field(
        None,
        description="the events table's column that labels an entity outright in snapshot "
        "data (no time axis); None when the model needs time series",
    )
    classes: str | None = Field(
        None,
        description="the events table's column naming an entity's class when a mapping "
        "declares a multi-class target (snapshot data)",
    )
    horizon_hours: int = Field(gt=0, description="the event happens within this horizon")
    snapshot_every_hours: int = Field(gt=0, description="spacing of training snapshots")


class GateConfig(_Frozen):
    """When a challenger may take the champion alias."""

    metric: Literal["pr_auc", "roc_auc"] = "pr_auc"
    margin: float = Field(0.0, ge=0, description="challenger must beat the champion by this")
    min_roc_auc: float = Field(0.6, ge=0, le=1)
    min_pr_auc_lift: float = Field(
        1.5, ge=0, description="PR AUC must reach this many times the base rate"
    )
    min_log_loss_gain: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="multi-class: test log loss must be at least this share below the log loss "
        "of the training class shares (the no-skill model)",
    )
    max_single_feature_auc: float = Field(
        0.99,
        gt=0.5,
        le=1,
        description="leak guard: a feature that alone reaches this test ROC AUC holds the "
        "challenger for a person to promote",
    )
    max_roc_auc: float = Field(
        0.995,
        gt=0.5,
        le=1,
        description="leak guard: a test ROC AUC at or above this is implausibly perfect and "
        "holds the challenger for a person to promote",
    )


class ModelSpec(_Frozen):
    """What one model is, written once."""

    name: ModelName
    description: str
    owner: str = Field(description="the team that answers for the model's decisions")
    feature_service: str = Field(description="the Feast feature service of its inputs")
    entity: str = Field(description="the Feast entity it scores")
    entity_key: str = Field(description="that entity's join key: the id of a scored row")
    label: LabelRule
    segments: tuple[str, ...] = Field(description="features the test metrics are broken down by")
    increasing: tuple[str, ...] = Field(
        description="features whose rise must never lower the risk (monotone constraints)"
    )
    metrics: tuple[str, ...] = Field(
        ("roc_auc", "pr_auc", "brier"), description="the test metrics a version is listed with"
    )
    gate: GateConfig = GateConfig()
    action_budget: int = Field(100, ge=1, description="top-k for precision at the budget")


SPECS: dict[ModelName, ModelSpec] = {
    ModelName.CHURN: ModelSpec(
        name=ModelName.CHURN,
        description="churn risk of a customer within the next 30 days",
        owner="retention",
        feature_service="churn_v1",
        entity="customer",
        entity_key="customer_id",
        label=LabelRule(
            kind=LabelKind.LEAVES,
            events="churn_labels",
            outright="churned",
            classes="category",
            horizon_hours=30 * 24,
            snapshot_every_hours=7 * 24,
        ),
        segments=("segment", "sla_tier", "region"),
        increasing=(
            "outage_minutes_1d",
            "outage_minutes_7d",
            "outage_minutes_30d",
            "degraded_minutes_7d",
            "degraded_minutes_30d",
            "failed_sessions_7d",
            "failed_sessions_30d",
            "complaints_30d",
            "late_invoices_90d",
        ),
    ),
    ModelName.FAULT: ModelSpec(
        name=ModelName.FAULT,
        description="risk that a new fault starts on a cell within the next hours",
        owner="network operations",
        feature_service="fault_v1",
        entity="cell",
        entity_key="cell_id",
        label=LabelRule(
            kind=LabelKind.FAULT_STARTS,
            events="cell_fault_labels",
            classes="kind",
            horizon_hours=6,
            snapshot_every_hours=2,
        ),
        segments=("vendor", "technology"),
        increasing=("loss_trend_6h", "prb_trend_6h", "packet_loss_6h", "alarms_24h"),
    ),
}


def spec(name: str) -> ModelSpec:
    """The spec of a registered model, by name."""
    try:
        return SPECS[ModelName(name)]
    except ValueError:
        raise KeyError(f"no model named {name!r}; models: {', '.join(SPECS)}") from None
