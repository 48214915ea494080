"""The policy's control group: a random share of the customers who qualify for a message,
credit or offer is held out, recorded as such and never sent; ``actions outcomes`` compares
who left among the treated and the held out."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pytest
from actionkit import T0, Clock, FixedScores, customer, event
from typer.testing import CliRunner

from actions import audit
from actions.adapters import OutboxAdapter
from actions.backends import open_ledger
from actions.decide import drawn, idempotency_key
from actions.dispatch import Dispatcher
from actions.ledger import Status
from actions.outcomes import followed, realised_effects
from actions.policy import CONTACT_ACTIONS, ActionType, Holdout
from actions.processor import Directory, Processor
from closedloop.cli import app
from closedloop.settings import Settings
from features.canonical import CHURN_LABELS
from features.offline import OfflineStore

CUSTOMERS = [customer(n) for n in range(200)]


def test_the_draw_is_fixed_by_the_key_and_near_its_share():
    keys = [
        idempotency_key(f"outage-{n}", f"cus_{n:07d}", ActionType.CUSTOMER_MESSAGE, "1")
        for n in range(10_000)
    ]
    share = sum(drawn(k, 0.2) for k in keys) / len(keys)
    assert share == pytest.approx(0.2, abs=0.01)
    assert [drawn(k, 0.2) for k in keys[:50]] == [drawn(k, 0.2) for k in keys[:50]]


@pytest.fixture
def home(tmp_path, policy):
    """A home whose ledger took one outage for 200 customers under a 30 % control group, with
    what was not held out delivered."""
    settings = Settings(home=tmp_path / "home", audit_key="test-audit-key-0123456789")
    held = policy.model_copy(update={"holdout": Holdout(share=0.3)})
    ledger = open_ledger(settings)
    clock = Clock()
    Processor(ledger, held, Directory.of(CUSTOMERS), FixedScores(), clock).process(event())
    outbox = OutboxAdapter(tmp_path / "outbox")
    Dispatcher(ledger, dict.fromkeys(ActionType, outbox), 1, 0.01, clock).drain()
    yield settings, ledger
    ledger.close()


def test_held_out_customers_are_recorded_never_sent_and_audited(home, tmp_path):
    _, ledger = home
    rows = ledger.read().rows("SELECT action, customer_id, status, reason FROM decisions")
    messages = [r for r in rows if r["action"] == ActionType.CUSTOMER_MESSAGE]
    held = [r for r in messages if r["status"] == Status.HELD_OUT]
    assert 0.2 < len(held) / len(messages) < 0.4
    assert {r["reason"] for r in held} == {"30% control group"}
    assert all(r["status"] != Status.HELD_OUT for r in rows if r["customer_id"] is None)
    sent = (tmp_path / "outbox" / "customer_message.jsonl").read_text().splitlines()
    assert len(sent) == len(messages) - len(held)
    assert {json.loads(s)["payload"]["customerId"] for s in sent}.isdisjoint(
        {r["customer_id"] for r in held}
    )
    assert audit.verify(ledger).intact


def test_effects_compare_the_groups_over_matured_horizons():
    day = T0.isoformat()
    decisions = pd.DataFrame(
        {
            "action": ["customer_message"] * 8 + ["bill_credit"],
            "customer_id": [f"c{n}" for n in range(9)],
            "status": ["dispatched"] * 4 + ["held_out"] * 4 + ["dispatched"],
            "decided_at": [day] * 8 + [(T0 + timedelta(days=20)).isoformat()],
        }
    )
    start = T0.date()
    labels = pd.DataFrame(
        {
            "customer_id": ["c0", "c1", "c4", "c5", "c8"],
            "churned": [True, True, True, True, True],
            "churn_date": [start + timedelta(days=3), start + timedelta(days=40),
                           start + timedelta(days=1), start + timedelta(days=29), start],
        }
    )  # fmt: skip
    outcomes = followed(decisions, labels, 30, start + timedelta(days=35))
    assert set(outcomes["action"]) == {"customer_message"}  # the credit's horizon is open
    (effect,) = realised_effects(outcomes, "dispatched", "held_out")
    assert (effect.treated, effect.treated_left, effect.held_out, effect.held_out_left) == (
        4, 1, 4, 2,
    )  # fmt: skip
    assert effect.effect == pytest.approx(0.25)
    assert effect.low < effect.effect < effect.high


def test_the_outcomes_command_reads_the_ledger_and_the_churn_labels(home):
    settings, ledger = home
    held = ledger.read().rows(
        "SELECT customer_id FROM decisions WHERE status = ? AND action = ?",
        (Status.HELD_OUT, ActionType.CUSTOMER_MESSAGE),
    )
    leavers = [r["customer_id"] for r in held][:10]
    labels = pa.table(
        {
            "customer_id": leavers,
            "churned": [True] * len(leavers),
            "churn_date": [T0.date() + timedelta(days=5)] * len(leavers),
            "category": [None] * len(leavers),
        },
        schema=CHURN_LABELS.schema,
    )
    OfflineStore(settings.home).write(CHURN_LABELS, "test", labels)
    as_of = ["--as-of", (T0 + timedelta(days=31)).isoformat()]
    result = CliRunner().invoke(
        app, ["--home", str(settings.home), "actions", "outcomes", "--json", *as_of],
        env={"CLOSEDLOOP_AUDIT_KEY": "test-audit-key-0123456789"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["as_of"] == str((T0 + timedelta(days=31)).date())
    effects = {e["action"]: e for e in found["effects"]}
    message = effects["customer_message"]
    assert message["held_out_left"] == len(leavers) and message["treated_left"] == 0
    assert message["effect"] == pytest.approx(len(leavers) / message["held_out"])
    assert set(effects) <= {a.value for a in CONTACT_ACTIONS}
