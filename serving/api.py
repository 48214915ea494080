"""The service's request and response models: its published contract (OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from closedloop.scores import Score

MAX_BATCH = 1_000  # ids or rows in one request
MAX_REASONS = 20


class RequestError(Exception):
    """Input the service cannot score, with an HTTP status and a machine-readable code."""

    def __init__(self, status: int, code: str, message: str, detail: object = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail

    def body(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message, "detail": self.detail}}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    explain: int = Field(
        3, ge=0, le=MAX_REASONS, description="how many top reasons to return per score"
    )


class CustomerRequest(_Request):
    customer_ids: list[str] = Field(
        min_length=1, max_length=MAX_BATCH, description="customers to score"
    )


class CellRequest(_Request):
    cell_ids: list[str] = Field(min_length=1, max_length=MAX_BATCH, description="cells to score")


class WhatIfRequest(_Request):
    rows: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="feature values by name (absent: missing); an id column names the row",
    )


class ScoreResponse(BaseModel):
    request_id: str = Field(description="id of this request in the prediction log")
    model: str = Field(description="registered model name")
    model_version: str = Field(description="registered model version that scored")
    feature_service: str = Field(description="Feast feature service of the inputs")
    scores: list[Score]
    unknown_ids: list[str] = Field(
        default_factory=list, description="ids with no features in the online store"
    )


class ModelHealth(BaseModel):
    version: str | None = Field(description="version being served, if any")
    feature_service: str | None
    source: str | None = Field(
        description="registry, or disk cache when the registry's champion cannot be served"
    )
    loaded_at: datetime | None
    checked_at: datetime | None = Field(description="last time the registry was asked")
    registry_error: str | None = Field(description="why the registry could not be reached")
    reason: str | None = Field(
        None, description="why the registry's champion is not what is served (None when it is)"
    )
    quarantined: list[str] = Field(
        default_factory=list,
        description="cached copies moved aside to HOME/serving/models/<name>/quarantine/, "
        "each with its reason",
    )


class Health(BaseModel):
    status: str = Field(description="ok, degraded (serving but something is wrong) or starting")
    models: dict[str, ModelHealth]
    feature_services: list[str] = Field(description="services the online store serves")
    problems: list[str]
    predictions_logged: int = Field(description="rows this worker has written to the log")


class EventsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[JsonValue] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="network events (NetworkEvent), in the order they happened; each is "
        "validated on its own, a bad one rejected with its reason while the others go on",
    )


class ActionDecision(BaseModel):
    key: str = Field(description="idempotency key: (incident, target, action, policy version)")
    action: str
    target: str = Field(description="cell or customer id")
    rule: str
    priority: int = Field(description="1 (most urgent) to 4, by value at risk")
    value_at_risk: float = Field(description="probability × value, USD")
    status: str = Field(description="pending, awaiting_approval, suppressed (then dispatched)")
    guard: str | None = Field(description="the guard that suppressed it")
    reason: str | None
    runbook: str


class EventOutcome(BaseModel):
    event_id: str | None = Field(description="the event's id (a rejected record may have none)")
    status: str = Field(description="accepted, duplicate or rejected")
    reason: str | None = Field(None, description="why a rejected record was refused")
    outcome: str = Field(
        description="new, duplicate, repeated_alarm, conflicting_alarm, grouped, resolved, "
        "unmatched_clear, rejected, or queued (cluster profile: appended to the event stream, "
        "decided by a consumer)"
    )
    incident: str | None = Field(description="outage or event the actions answer")
    affected_customers: int
    decisions: list[ActionDecision] = Field(description="decisions this event created")


class EventsResponse(BaseModel):
    outcomes: list[EventOutcome]
    queued: dict[str, int] = Field(
        description="decisions of this request committed for delivery, by action type; the "
        "dispatcher holding the ledger's lease delivers them"
    )
    accepted: list[str] = Field(
        default_factory=list,
        description="cluster profile: ids of the events appended to the event stream, decided "
        "by 'closedloop consume' (outcome queued)",
    )
