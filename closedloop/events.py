"""Network events: the shared schema of the stream the simulator writes and serving consumes.

The schema bounds what an event may carry, so that no record can overflow what reads it:
numbers are finite, texts have a length limit, ``occurred_at`` lies between :data:`EARLIEST`
and :data:`LATEST`. Validated with a processing clock (``context={"now": ...}``, as the event
intake does), an event may not lie more than :data:`FUTURE_TOLERANCE` after that clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(minutes=5)
"""How far after the processing clock an event may say it happened: clock skew between the
network elements and the intake, never a schedule."""

Id = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(max_length=4_000)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


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

    event_id: Id = Field(description="unique id; a re-sent event keeps its id")
    event_type: EventType
    occurred_at: AwareDatetime = Field(description="when it happened, UTC")
    cell_id: Id = Field(description="cell the event concerns")
    severity: Severity
    customer_id: Id | None = Field(None, description="customer, for customer-level events")
    alarm_id: Id | None = Field(None, description="links an alarm's onsets to its clear")
    description: Text | None = Field(None, description="probable cause or what was seen")
    metric: Id | None = Field(None, description="the KPI that crossed its threshold")
    value: Finite | None = Field(None, description="the KPI's value")
    threshold: Finite | None = Field(None, description="the threshold it crossed")

    @field_validator("occurred_at")
    @classmethod
    def _sane_time(cls, moment: datetime, info: ValidationInfo) -> datetime:
        try:
            utc = moment.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range once converted to UTC") from None
        if not EARLIEST <= utc < LATEST:
            raise ValueError(f"must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
        now = (info.context or {}).get("now")
        if now is not None and utc > now + FUTURE_TOLERANCE:
            raise ValueError(
                f"{utc.isoformat()} is more than {FUTURE_TOLERANCE} after the processing "
                f"clock ({now.isoformat()})"
            )
        return moment
