"""Event intake: each record validated on its own against bounded dates and numbers and the
processing clock; a bad one is recorded as rejected with its reason, once, and the rest of its
batch commits."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from actionkit import T0, customer, event

from actions.intake import Record, admit
from actions.processor import Directory
from actions.queries import RejectedRow
from closedloop.events import FUTURE_TOLERANCE, EventType, NetworkEvent

INVENTORY = Directory.of([customer(1)])  # cell_00001, the events' cell, and cus_0000001


def raw(**fields) -> dict:
    return event(EventType.KPI_DEGRADATION, alarm_id=None).model_dump(mode="json") | fields


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"occurred_at": "0001-01-01T00:00:00Z"}, "occurred_at: Value error, must lie between"),
        ({"occurred_at": "9999-12-31T23:00:00-12:00"}, "out of range once converted to UTC"),
        ({"value": float("nan")}, "value: Input should be a finite number"),
        ({"threshold": float("inf")}, "threshold: Input should be a finite number"),
        ({"event_type": "meteor_strike"}, "event_type: Input should be"),
        ({"event_id": "x" * 201}, "event_id: String should have at most 200 characters"),
        (
            {"occurred_at": (T0 + FUTURE_TOLERANCE + timedelta(seconds=1)).isoformat()},
            "after the processing clock",
        ),
    ],
)
def test_a_bad_record_is_rejected_with_its_reason(fields, problem):
    fields = {"event_id": "bad-1"} | fields
    for record in (raw(**fields), json.dumps(raw(**fields))):  # parsed, or a line of text
        rejected = admit(Record(record, "src", 4), T0, INVENTORY)
        assert isinstance(rejected, RejectedRow), rejected
        assert problem in rejected.reason
        assert rejected.event_id == fields["event_id"][:200]
        assert (rejected.source, rejected.line, rejected.received_at) == ("src", 4, T0.isoformat())


def test_an_event_within_the_tolerance_is_admitted_and_not_json_is_rejected():
    soon = raw(occurred_at=(T0 + FUTURE_TOLERANCE).isoformat(), value=-1e308)
    assert isinstance(admit(Record(soon, "src", 1), T0, INVENTORY), NetworkEvent)
    broken = admit(Record("{not json", "src", 2), T0, INVENTORY)
    assert broken.event_id is None and "Invalid JSON" in broken.reason
    assert broken.raw == "{not json"
    assert admit(Record("{not json", "src", 2), T0, INVENTORY).key == broken.key
    assert admit(Record("{not json", "src", 3), T0, INVENTORY).key != broken.key


def test_the_rest_of_a_batch_commits_and_a_rerun_adds_nothing(make_processor):
    processor, _, _ = make_processor([customer(1), customer(2)])
    good = [raw(event_id="ok-1"), raw(event_id="ok-2", customer_id="cus_0000001")]
    records = [
        Record(good[0], "POST /events", 1),
        Record(raw(event_id="bad", occurred_at="0001-01-01T00:00:00Z"), "POST /events", 2),
        Record("nope", "POST /events", 3),
        Record(good[1], "POST /events", 4),
    ]
    outcomes = processor.take(records)
    assert [o.event_id for o in outcomes] == ["ok-1", "bad", None, "ok-2"]
    assert [o.outcome for o in outcomes] == ["new", "rejected", "rejected", "new"]
    assert outcomes[1].reason.startswith("occurred_at:") and outcomes[0].reason is None
    rows = processor.ledger.rejected_events()
    assert [(r["event_id"], r["line"]) for r in rows] == [("bad", 2), (None, 3)]

    again = processor.take(records)
    assert [o.outcome for o in again] == ["duplicate", "rejected", "rejected", "duplicate"]
    assert processor.ledger.rejected_events() == rows
    (known,) = processor.ledger.read().run("SELECT COUNT(*) FROM events").fetchone()
    assert known == 2
