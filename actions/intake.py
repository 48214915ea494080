"""Event intake: each record (a file's line, a request's item) validated on its own against
:class:`~closedloop.events.NetworkEvent` with the processing clock, then against the inventory
(a cell or customer it does not know is refused); a record that fails is a
:class:`~actions.queries.RejectedRow` with its reason, and the others go on."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from pydantic import ValidationError

from actions.queries import RejectedRow
from closedloop.events import NetworkEvent

RAW_LIMIT = 16_000  # characters of a rejected record kept in the ledger


@dataclass(frozen=True)
class Record:
    """One event as received: JSON text, or a request's already parsed JSON value."""

    raw: str | object
    source: str  # the file, or the HTTP route
    line: int  # line of the file, or position in the request's batch (from 1)


class Inventory(Protocol):
    def unknown(self, event: NetworkEvent) -> str | None:
        """Why the event names a cell or customer that does not exist, or None."""
        ...


def reason_of(error: ValidationError) -> str:
    """``field: message`` of each problem, joined."""
    return "; ".join(
        (".".join(str(p) for p in e["loc"]) + ": " if e["loc"] else "") + e["msg"]
        for e in error.errors()
    )


def _text(record: Record) -> str:
    if isinstance(record.raw, str):
        return record.raw
    return json.dumps(record.raw, default=str)


def _event_id(record: Record) -> str | None:
    value = record.raw
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    found = value.get("event_id") if isinstance(value, dict) else None
    return found[:200] if isinstance(found, str) else None


def admit(record: Record, now: datetime, inventory: Inventory) -> NetworkEvent | RejectedRow:
    """The record's event, or why it was refused (received at ``now``)."""
    context = {"now": now}
    try:
        if isinstance(record.raw, str):
            event = NetworkEvent.model_validate_json(record.raw, context=context)
        else:
            event = NetworkEvent.model_validate(record.raw, context=context)
    except ValidationError as error:
        return _rejected(record, now, reason_of(error))
    unknown = inventory.unknown(event)
    return event if unknown is None else _rejected(record, now, unknown)


def _rejected(record: Record, now: datetime, reason: str) -> RejectedRow:
    text = _text(record)
    key = hashlib.sha256(f"{record.source}\n{record.line}\n{text}".encode()).hexdigest()[:32]
    return RejectedRow(
        key=key,
        event_id=_event_id(record),
        raw=text[:RAW_LIMIT],
        reason=reason,
        source=record.source,
        line=record.line,
        received_at=now.astimezone(UTC).isoformat(),
    )
