"""A model's call on its owner: a retraining that was triggered, failed or held.

Monitoring raises it; the action layer turns it into a ticket for the team that owns the model,
through the same policy, ledger and audit as every other action.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class AlertKind(StrEnum):
    TRIGGERED = "triggered"  # the evidence asked for a retraining (retrained, or switched off)
    FAILED = "failed"  # the retraining was tried and failed
    HELD = "held"  # the evidence is there, but the retraining waits (e.g. for labels)


class ModelAlert(BaseModel):
    """What a model's owner must hear of one monitoring run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    version: str = Field(description="the champion version the run watched")
    run: str = Field(description="the monitoring run: one alert per run at most")
    kind: AlertKind
    owner: str = Field(description="the team that owns the model (its spec)")
    at: AwareDatetime = Field(description="the end of the run's window")
    reasons: list[str] = Field(default_factory=list)
    report: str | None = Field(None, description="the run's drift report (HTML)")

    @property
    def incident(self) -> str:
        """The alert's id in the ledger: what its actions answer."""
        return f"monitor:{self.model}:{self.run}"

    @property
    def headline(self) -> str:
        return f"{self.model} v{self.version}: retraining {self.kind.value} (run {self.run})"
