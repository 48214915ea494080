"""Which policy is in force: recorded with a number, its content digest and who put it in force,
in the hash-chained audit; a change refused without a principal allowed to make it; a version
label naming one content only."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from access_kit import principal
from actionkit import anchor

from actions import audit
from actions.ledger import Ledger
from actions.policy import PolicyError, policy_digest
from actions.policy_record import history, in_force, policy_in_force, put_in_force
from closedloop.access import AccessDeniedError

AT = datetime(2026, 12, 1, 12, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path):
    opened = Ledger.sqlite(tmp_path / "ledger.db", anchor(tmp_path))
    yield opened
    opened.close()


def changed(policy, version: str, ttl: float = 5):
    return policy.model_copy(update={"version": version, "approval_ttl_minutes": ttl})


def test_the_first_policy_is_recorded_and_the_same_one_again_adds_nothing(ledger, policy):
    first = put_in_force(ledger, policy, AT)
    assert (first.number, first.version, first.put_by) == (1, policy.version, None)
    assert first.digest == policy_digest(policy) and in_force(ledger) == first
    assert put_in_force(ledger, policy.model_copy(), AT) == first  # same content
    assert policy_in_force(ledger) == policy
    rows = ledger.read().rows("SELECT kind, key, payload FROM audit")
    assert [(r["kind"], r["key"]) for r in rows] == [("policy", "policy:1")]
    assert json.loads(rows[0]["payload"])["digest"] == first.digest


def test_only_a_principal_allowed_to_changes_the_policy_in_force_audited(ledger, policy):
    put_in_force(ledger, policy, AT)
    new = changed(policy, "v-next")
    with pytest.raises(AccessDeniedError, match="is not the one in force, policy #1"):
        put_in_force(ledger, new, AT)  # a service worker: no principal
    for role in ("viewer", "operator", "approver", "data_scientist", "model_owner"):
        with pytest.raises(AccessDeniedError, match=f"role {role} may not set_policy"):
            put_in_force(ledger, new, AT, lambda role=role: principal(role, "eve"))
    assert in_force(ledger).number == 1
    admin = principal("admin", "ana")
    second = put_in_force(ledger, new, AT, lambda: admin)
    assert (second.number, second.version, second.put_by) == (2, "v-next", admin.label)
    back = put_in_force(ledger, policy, AT, lambda: admin)  # back to the first: a change too
    assert [r.number for r in history(ledger)] == [1, 2, 3] and back.digest == policy_digest(policy)
    trail = [json.loads(r["payload"]) for r in audit.query(ledger) if r["kind"] == "policy"]
    assert [(p["number"], p["by"], (p["previous"] or {}).get("number")) for p in trail] == [
        (1, None, None), (2, admin.label, 1), (3, admin.label, 2)
    ]  # fmt: skip
    assert audit.verify(ledger).intact


def test_a_version_label_names_one_content_only(ledger, policy):
    put_in_force(ledger, policy, AT)
    same_label = changed(policy, policy.version)
    with pytest.raises(PolicyError, match=f"{policy.version!r} was policy #1 with another content"):
        put_in_force(ledger, same_label, AT, lambda: principal("admin"))
    assert len(history(ledger)) == 1
