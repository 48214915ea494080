"""The key store on a real SQLite ledger and the approvals' access rules: keys shown once and
stored hashed, revoked and expired keys refused, key changes in the audit trail; four eyes,
the exception limit, and an expired approval never executed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from access_kit import principal
from actionkit import FixedScores, anchor, customer, event

from actions import audit
from actions.approvals import ApprovalError, expire, settle
from actions.keys import KeyStore, KeyStoreError
from actions.ledger import Ledger, Status
from closedloop.access import InvalidKeyError, Role, local_admin

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path):
    opened = Ledger.sqlite(tmp_path / "ledger.db", anchor(tmp_path))
    yield opened
    opened.close()


def test_a_key_is_stored_hashed_used_revoked_and_audited(ledger, tmp_path):
    store = KeyStore(ledger)
    made = store.create("nms-east", Role.EVENT_SOURCE, NOW + timedelta(days=30), local_admin(), NOW)
    raw = (tmp_path / "ledger.db").read_bytes() + (tmp_path / "ledger.db-wal").read_bytes()
    assert made.token.encode() not in raw and made.token.split("_")[2].encode() not in raw
    used = store.authenticate(made.token, NOW + timedelta(minutes=5))
    assert (used.id, used.name, used.role) == (made.key_id, "nms-east", Role.EVENT_SOURCE)
    (row,) = store.list()
    assert row.last_used_at == (NOW + timedelta(minutes=5)).isoformat()
    assert row.state(NOW) == "active" and row.created_by == "local-admin"

    store.revoke(made.key_id, local_admin(), NOW + timedelta(hours=1))
    with pytest.raises(InvalidKeyError, match="revoked"):
        store.authenticate(made.token, NOW + timedelta(hours=2))
    with pytest.raises(KeyStoreError, match="was revoked"):
        store.revoke(made.key_id, local_admin(), NOW)
    with pytest.raises(KeyStoreError, match="no API key"):
        store.revoke("000000000000", local_admin(), NOW)
    trail = [json.loads(r["payload"]) for r in audit.query(ledger, action=f"key:{made.key_id}")]
    assert [(t["verb"], t["by"], t["role"]) for t in trail] == [
        ("created", "local-admin", "event_source"),
        ("revoked", "local-admin", "event_source"),
    ]
    assert audit.verify(ledger).intact


def test_an_expired_key_is_refused(ledger):
    store = KeyStore(ledger)
    made = store.create("short", Role.VIEWER, NOW + timedelta(hours=1), local_admin(), NOW)
    store.authenticate(made.token, NOW)
    with pytest.raises(InvalidKeyError, match="expired"):
        store.authenticate(made.token, NOW + timedelta(hours=1))
    assert store.get(made.key_id).state(NOW + timedelta(hours=2)) == "expired"


RICH = [customer(n, mrr=2_000, contract_type="one_year", sla_tier="gold") for n in (1, 2)]


def waiting(processor, action: str) -> list[dict]:
    rows = processor.ledger.decisions(status=Status.AWAITING_APPROVAL, action=action)
    assert rows, f"no {action} waiting"
    return rows


def test_four_eyes_and_the_exception_limit(make_processor, policy):
    processor, dispatcher, clock = make_processor(RICH, FixedScores(dict.fromkeys(
        (c.customer_id for c in RICH), 0.9)))  # fmt: skip
    processor.process_many([event()], by="nms-east (1a2b3c4d5e6f)")
    ledger, limit = processor.ledger, policy.exception_above
    offer = waiting(processor, "retention_offer")[0]  # 0.9 × 12 × 2,000 = 21,600 > the limit
    credit = waiting(processor, "bill_credit")[0]  # 200 USD: above 100, under the limit
    assert offer["requested_by"] == credit["requested_by"] == "nms-east (1a2b3c4d5e6f)"
    assert credit["impact"] <= limit < offer["impact"]

    olga = principal("operator", "olga")
    with pytest.raises(ApprovalError, match="exception limit"):
        settle(ledger, offer["key"], True, olga, "", clock(), limit)
    with pytest.raises(ApprovalError, match="role viewer may not settle"):
        settle(ledger, credit["key"], True, principal("viewer", "vic"), "", clock(), limit)
    nms = principal("approver", "nms-east", "1a2b3c4d5e6f")  # the sender, holding an approver key
    with pytest.raises(ApprovalError, match="requested this action"):
        settle(ledger, offer["key"], True, nms, "", clock(), limit)
    assert settle(ledger, credit["key"], True, olga, "ok", clock(), limit) == Status.PENDING
    assert settle(ledger, offer["key"], True, principal("approver", "ana"), "", clock(), limit)
    trail = [json.loads(r["payload"]) for r in audit.query(ledger, action=offer["key"])]
    assert trail[-1] == {"verdict": "approved", "by": "ana (0a1b2c3d4e5f)", "note": ""}
    assert dispatcher.drain()[Status.DISPATCHED] >= 2


def test_an_expired_approval_is_recorded_as_expired_and_never_executed(make_processor, tmp_path):
    processor, dispatcher, clock = make_processor(RICH, FixedScores(dict.fromkeys(
        (c.customer_id for c in RICH), 0.9)))  # fmt: skip
    processor.process(event())
    late = waiting(processor, "retention_offer")
    clock.now += timedelta(hours=5)  # the default policy's approvals wait 4 hours
    assert expire(processor.ledger, clock()) == len(processor.ledger.decisions(
        status=Status.EXPIRED, limit=1000))  # fmt: skip
    ana = principal("approver", "ana")
    with pytest.raises(ApprovalError, match="is expired"):
        settle(processor.ledger, late[0]["key"], True, ana, "too late", clock())
    dispatcher.drain()
    assert processor.ledger.decision(late[0]["key"])["status"] == Status.EXPIRED
    sent = [
        json.loads(line)["idempotency_key"]
        for path in (tmp_path / "outbox").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert late[0]["key"] not in sent
    trail = [json.loads(r["payload"]) for r in audit.query(processor.ledger, action=late[0]["key"])]
    assert trail[-1] == {"verdict": "expired", "by": None, "note": "approval time ran out"}
