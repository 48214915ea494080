"""The same ledger schema, processor, status updates and retries on PostgreSQL (cluster
profile), in a throwaway schema."""

from __future__ import annotations

import uuid

import pytest
from access_kit import principal
from actionkit import AUDIT_KEY, Clock, FixedScores, customer, event

from actions import audit
from actions.adapters import OutboxAdapter
from actions.approvals import retry
from actions.backends import open_ledger
from actions.dispatch import Dispatcher
from actions.ledger import Ledger, Status
from actions.policy import ActionType
from actions.processor import Directory, Processor
from closedloop.events import EventType
from closedloop.settings import Settings

DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def ledger(tmp_path):
    psycopg = pytest.importorskip("psycopg")
    schema = f"test_actions_{uuid.uuid4().hex[:10]}"
    opened = open_ledger(
        Settings(home=tmp_path, profile="cluster", postgres_dsn=DSN, ledger_schema=schema,
                 audit_key=AUDIT_KEY)
    )  # fmt: skip
    yield opened
    opened.close()
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_processor_on_postgresql_is_idempotent_and_audited(ledger: Ledger, policy, tmp_path):
    assert ledger.postgres
    people = [customer(1, sla_tier="gold", mrr=900, contract_type="one_year"), customer(2)]
    clock = Clock()
    processor = Processor(
        ledger, policy, Directory.of(people), FixedScores({"cus_0000001": 0.8}), clock
    )
    dispatcher = Dispatcher(ledger, dict.fromkeys(ActionType, OutboxAdapter(tmp_path)), 1, 0, clock)
    onset = event(alarm_id="pg-a")
    first = processor.process(onset)
    assert first.outcome == "new" and first.decisions
    assert processor.process(onset).outcome == "duplicate"
    assert processor.process(event(alarm_id="pg-b", minutes=1)).outcome == "grouped"
    sent = dispatcher.drain()
    assert sent[Status.DISPATCHED] == len(ledger.decisions(status=Status.DISPATCHED))
    assert dispatcher.drain() == {}
    assert ledger.decisions(status=Status.AWAITING_APPROVAL)[0]["target"] == "cus_0000001"
    processor.process(event(EventType.ALARM_CLEAR, alarm_id="pg-a", minutes=20))
    done = processor.process(event(EventType.ALARM_CLEAR, alarm_id="pg-b", minutes=30))
    assert done.outcome == "resolved"
    assert ledger.decisions(status=Status.CANCELLED)
    assert dispatcher.drain() == {Status.DISPATCHED: 1}  # the ticket's "resolved" update
    (ticket,) = ledger.decisions(action="trouble_ticket")
    assert ledger.delivery_status(f"{ticket['key']}:resolved") == Status.DISPATCHED
    with ledger.write() as tx:
        tx.run("UPDATE decisions SET status = ? WHERE key = ?", (Status.DEAD_LETTER, ticket["key"]))
    ana = principal("operator", "ana")
    assert retry(ledger, None, ana, "receiver back", clock()) == [ticket["key"]]
    assert dispatcher.drain() == {Status.DISPATCHED: 1}
    verdict = audit.verify(ledger)
    assert verdict.intact and verdict.rows > len(first.decisions)
    with ledger.write() as tx:
        tx.run("UPDATE audit SET at = ? WHERE seq = ?", ("2020-01-01T00:00:00+00:00", 3))
    assert audit.verify(ledger).broken_at == 3
