"""Scores with reasons: the shared shape of what serving returns and the action layer reads."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

FeatureValue = float | str | None


class Direction(StrEnum):
    RAISES = "raises"
    LOWERS = "lowers"


class Reason(BaseModel):
    """One feature's share of a score, from LightGBM's SHAP contributions."""

    model_config = ConfigDict(frozen=True)

    feature: str = Field(description="feature name, as in the feature service")
    value: FeatureValue = Field(description="the feature's value in this score")
    contribution: float = Field(description="SHAP contribution to the log-odds")
    direction: Direction = Field(description="whether the feature raises or lowers the risk")
    text: str = Field(description="the reason in plain words")


class Score(BaseModel):
    """A calibrated probability for one entity, with the model and features that made it."""

    model_config = ConfigDict(frozen=True)

    entity_id: str = Field(description="customer_id or cell_id")
    model: str = Field(description="registered model name: churn or fault")
    model_version: str = Field(description="registered model version that scored")
    feature_service: str = Field(description="Feast feature service the inputs came from")
    probability: float = Field(
        ge=0,
        le=1,
        description="calibrated probability of the event; for a multi-class model the "
        "probability of the likeliest class",
    )
    predicted_class: str | None = Field(
        None, description="multi-class models: the likeliest class (the reasons are its)"
    )
    classes: dict[str, float] = Field(
        default_factory=dict, description="multi-class models: the probability of each class"
    )
    stale_features: list[str] = Field(
        default_factory=list, description="features older than their view's TTL or missing"
    )
    reasons: list[Reason] = Field(default_factory=list, description="top reasons, largest first")
    features: dict[str, FeatureValue] = Field(
        default_factory=dict, description="the inputs as scored"
    )
