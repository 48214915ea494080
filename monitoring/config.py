"""Monitoring parameters: the ``monitor`` section of ``params.yaml`` (read at the CLI edge)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Distance = Literal["wasserstein", "jensenshannon", "psi", "hellinger", "kl_div"]
"""Evidently's distance tests: a column drifts when the distance reaches the threshold."""


class DriftPolicy(_Strict):
    """When the inputs count as drifted: Evidently's per-column tests and the share of columns."""

    num_method: Distance = Field("wasserstein", description="Evidently test for numeric columns")
    cat_method: Distance = Field("jensenshannon", description="Evidently test for text columns")
    threshold: float = Field(0.1, gt=0, description="a column drifts when its distance reaches it")
    drift_share: float = Field(
        0.3, gt=0, le=1, description="the window drifts when this share of columns drifts"
    )
    prediction_threshold: float = Field(
        0.1, gt=0, description="the probability drifts when its distance reaches this"
    )


class PerformancePolicy(_Strict):
    """How good the champion must stay on the matured window."""

    metric: str = Field("pr_auc", pattern="^(pr_auc|roc_auc)$")
    min_ratio: float = Field(
        0.8, gt=0, le=1, description="floor: this share of the champion's own test metric"
    )
    min_rows: int = Field(200, ge=1, description="fewer matured labels than this: no verdict")
    min_positives: int = Field(10, ge=1, description="fewer positive labels than this: no verdict")


class MonitorConfig(_Strict):
    """One model's monitoring: windows, sampling, the drift policy and the retraining trigger."""

    window_days: float = Field(7, gt=0, description="the current window ends at --end")
    sample_rows: int = Field(
        20_000, ge=1_001, description="seeded sample of each side handed to Evidently"
    )
    seed: int = 7
    drift: DriftPolicy = DriftPolicy()
    performance: PerformancePolicy = PerformancePolicy()
    persistence: int = Field(
        2, ge=1, description="drift must hold over this many consecutive windows to trigger"
    )
    min_retrain_interval_hours: float = Field(
        24, ge=0, description="no retraining sooner than this after the last one"
    )
