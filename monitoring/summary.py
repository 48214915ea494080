"""The typed summary of one monitoring run, written as ``summary.json`` next to its reports."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from closedloop.alerts import AlertKind, ModelAlert
from closedloop.settings import Settings

if TYPE_CHECKING:
    import pandas as pd


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class ColumnDrift(_Frozen):
    column: str
    kind: str = Field("level", description="the feature's kind (features.repo.Kind), by name")
    method: str
    threshold: float
    score: float | None = Field(None, description="the test's distance; None: not compared")
    drifted: bool
    rows: tuple[int, int] = Field(
        (0, 0), description="complete values compared: reference, current"
    )
    note: str | None = Field(None, description="why it was not compared, or how")

    @property
    def compared(self) -> bool:
        return self.score is not None


class DriftResult(_Frozen):
    columns: list[ColumnDrift]
    drifted_share: float = Field(description="share of the compared features that drifted")
    drift_share: float = Field(description="the policy's share at which the window drifts")
    severe: list[str] = Field(
        default_factory=list, description="features far enough past their threshold to drift it"
    )
    drifted: bool
    prediction: ColumnDrift | None = Field(None, description="drift of the predicted probability")
    classes: list[ColumnDrift] = Field(
        default_factory=list, description="multi-class: drift of each class's probability"
    )

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def skipped_columns(self) -> list[str]:
        return [c.column for c in self.columns if not c.compared]


class QualityResult(_Frozen):
    """Data quality of the current window beside the reference."""

    rows: int
    reference_rows: int
    missing_share: dict[str, float] = Field(description="per column, current window")
    reference_missing_share: dict[str, float]
    stale_share: float | None = Field(None, description="rows with stale or missing inputs")


class Performance(_Frozen):
    """The champion on the matured window (labels known), against the floor set by its first
    judged matured window (its test figures are kept for reference)."""

    rows: int
    positives: int = Field(description="positive labels; multi-class: the rarest class's rows")
    classes: list[str] = Field(default_factory=list, description="a multi-class champion's")
    metrics: dict[str, float] = Field(default_factory=dict)
    champion_test: dict[str, float] = Field(default_factory=dict)
    metric: str
    floor: float | None = None
    baseline_until: datetime | None = Field(
        None, description="the latest row of the matured window the floor was set from"
    )
    below_floor: bool | None = Field(None, description="None: too few matured labels to judge")
    matured_until: datetime | None = Field(None, description="the latest matured row scored")


class Trigger(_Frozen):
    """Whether this run asks for retraining, and why."""

    retrain: bool
    reasons: list[str]
    drift_streak: int = Field(description="consecutive drifted windows, this one included")
    held: bool = Field(False, description="the evidence is there but retraining must wait")


class RetrainOutcome(_Frozen):
    retrained: bool
    failed: bool = Field(False, description="training was tried and raised an error")
    version: str | None = None
    promoted: bool = False
    reasons: list[str] = Field(default_factory=list, description="the gate's or why not")
    metrics: dict[str, float] = Field(default_factory=dict)


class MonitorSummary(_Frozen):
    """Everything one ``closedloop monitor`` run found and did."""

    run: str
    model: str
    champion_version: str
    feature_service: str
    created_at: datetime
    reference_window: str
    window_start: datetime
    window_end: datetime
    drift: DriftResult
    quality: QualityResult
    performance: Performance | None
    trigger: Trigger
    retrain: RetrainOutcome | None = None
    reports: dict[str, str] = Field(default_factory=dict, description="report name -> HTML file")


def runs_in(folder: Path) -> list[MonitorSummary]:
    """Every monitoring run kept in ``folder`` (one sub-folder per run), oldest first."""
    paths = sorted(folder.glob("*/summary.json")) if folder.is_dir() else []
    return [MonitorSummary.model_validate_json(p.read_text()) for p in paths]


def owner_alert(summary: MonitorSummary, owner: str) -> ModelAlert | None:
    """What the model's owner must hear of this run: a retraining triggered, failed or held;
    None when the run asked for nothing."""
    trigger, outcome = summary.trigger, summary.retrain
    if outcome is not None and outcome.failed:
        kind = AlertKind.FAILED
    elif trigger.retrain:
        kind = AlertKind.TRIGGERED
    elif trigger.held:
        kind = AlertKind.HELD
    else:
        return None
    return ModelAlert(
        model=summary.model,
        version=summary.champion_version,
        run=summary.run,
        kind=kind,
        owner=owner,
        at=summary.window_end,
        reasons=[*trigger.reasons, *(outcome.reasons if outcome else [])],
        report=summary.reports.get("drift"),
    )


def latest_runs(settings: Settings) -> dict[str, MonitorSummary]:
    """Each model's latest monitoring run in this home; a model never monitored is left out."""
    from closedloop.models import SPECS

    found = {name: runs_in(settings.paths.monitoring(name)) for name in SPECS}
    return {name: runs[-1] for name, runs in found.items() if runs}


def drift_by_feature(drift: DriftResult) -> pd.DataFrame:
    """One row per feature: its kind, the test and threshold applied, the test's score and
    verdict, and why it was not compared; drifted features first, then by score."""
    import pandas as pd

    rows = [
        (c.column, c.kind, c.method, c.threshold, c.score, c.drifted, c.note or "")
        for c in drift.columns
    ]
    table = pd.DataFrame(rows, columns=DRIFT_COLUMNS)
    ranked = table.sort_values(["drifted", "score"], ascending=False, na_position="last")
    return ranked.reset_index(drop=True)


DRIFT_COLUMNS = ["feature", "kind", "test", "threshold", "score", "drifted", "note"]
