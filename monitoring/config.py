"""Monitoring parameters: the ``monitor`` section of ``params.yaml`` (read at the CLI edge)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Distance = Literal["wasserstein", "jensenshannon", "psi", "hellinger", "kl_div"]
"""Evidently's distance tests: a column drifts when the distance reaches the threshold."""


class ColumnTest(_Strict):
    """One Evidently distance test: a column drifts when its distance reaches the threshold."""

    method: Distance
    threshold: float = Field(gt=0)


class KindTests(_Strict):
    """The default test of each feature kind (``features.repo.Kind``)."""

    level: ColumnTest = Field(
        ColumnTest(method="wasserstein", threshold=0.1),
        description="measured levels: Wasserstein distance in reference standard deviations",
    )
    sparse: ColumnTest = Field(
        ColumnTest(method="jensenshannon", threshold=0.1),
        description="mostly one value: Jensen-Shannon on the histogram, blind to a tiny spread",
    )
    category: ColumnTest = Field(
        ColumnTest(method="jensenshannon", threshold=0.1), description="categories and flags"
    )
    clock: ColumnTest = Field(
        ColumnTest(method="wasserstein", threshold=0.1),
        description="the smaller distance of the reference as it was and aged to the window",
    )


class DriftPolicy(_Strict):
    """When the inputs count as drifted: a test per feature (by kind, or named), over the rows
    whose trailing windows are full, and the share of compared features that drift."""

    kinds: KindTests = KindTests()
    features: dict[str, ColumnTest] = Field(
        default_factory=dict, description="a model owner's test for a named feature"
    )
    drift_share: float = Field(
        0.3, gt=0, le=1, description="the window drifts when this share of compared features drifts"
    )
    severe: float = Field(
        1.75,
        gt=1,
        description="... or when one feature's distance reaches this multiple of its threshold",
    )
    prediction: ColumnTest = Field(
        ColumnTest(method="wasserstein", threshold=0.15),
        description="the test of the predicted probability (calm churn windows: 0.07-0.10)",
    )
    min_rows: int = Field(
        200, ge=1, description="fewer complete values than this on a side: not compared"
    )

    def test(self, feature: str, kind: str) -> ColumnTest:
        """The named feature's own test, else its kind's default."""
        return self.features.get(feature) or getattr(self.kinds, kind)


class PerformancePolicy(_Strict):
    """How good the champion must stay on the matured window."""

    metric: str = Field("pr_auc", pattern="^(pr_auc|roc_auc)$")
    class_metric: str = Field(
        "macro_f1",
        pattern="^(macro_f1|accuracy|log_loss_gain)$",
        description="a multi-class champion's metric (min_positives: rows of its rarest class)",
    )
    min_ratio: float = Field(
        0.8,
        gt=0,
        le=1,
        description="floor: this share of the lower of the champion's test metric and its metric "
        "on its first judged matured window",
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
    matured_days: float = Field(
        3,
        ge=0,
        description="retrain only once labels are known for this many days after drift began",
    )
    min_retrain_interval_hours: float = Field(
        24, ge=0, description="no retraining sooner than this after the last one"
    )
