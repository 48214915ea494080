"""Network events: the shared schema of the stream the simulator writes and serving consumes."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class EventType(StrEnum):
    ALARM_ONSET = "alarm_onset"
    ALARM_CLEAR = "alarm_clear"
    KPI_DEGRADATION = "kpi_degradation"
    USAGE_SPIKE = "usage_spike"
    REPEATED_FAILURE = "repeated_failure"


class Severity(StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"


class NetworkEvent(BaseModel):
    """One event of the network stream (a line of JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(description="unique id; a re-sent event keeps its id")
    event_type: EventType
    occurred_at: AwareDatetime = Field(description="when it happened, UTC")
    cell_id: str = Field(description="cell the event concerns")
    severity: Severity
    customer_id: str | None = Field(None, description="customer, for customer-level events")
    alarm_id: str | None = Field(None, description="links an alarm's onsets to its clear")
    description: str | None = Field(None, description="probable cause or what was seen")
    metric: str | None = Field(None, description="the KPI that crossed its threshold")
    value: float | None = Field(None, description="the KPI's value")
    threshold: float | None = Field(None, description="the threshold it crossed")
